"""Which exceptions are retried, and which must never be swallowed."""
import ZODB.POSException
import transaction.interfaces

try:
    from ZEO.Exceptions import ClientDisconnected
except ImportError:  # ZEO is an optional extra
    class ClientDisconnected(ZODB.POSException.StorageError,
                             transaction.interfaces.TransientError):
        """Stand-in for ZEO's ClientDisconnected when ZEO is not installed."""

#: Retried by a Partial and by a Job: conflicts and other transaction errors.
TransactionError = transaction.interfaces.TransactionError

#: Errors that abort and re-raise instead of becoming a Failure.  Storage
#: errors are POSErrors; catch TransactionError (and ClientDisconnected,
#: which is both) *before* this tuple, since ConflictError is a POSError
#: too.
EXPLOSIVE_ERRORS = (SystemExit, KeyboardInterrupt,
                    ZODB.POSException.POSError)


def is_explosive(exc):
    """True for the errors a job or Partial must re-raise, never store."""
    return (isinstance(exc, EXPLOSIVE_ERRORS)
            and not isinstance(exc, TransactionError))
