"""Opening a connection from the reactor without blocking on a full pool."""
import logging
import random

import transaction
from twisted.internet import defer

logger = logging.getLogger('zc.twist')

#: After this much cumulative backoff (seconds) a connection is opened even
#: though the pool is full (ZODB then only warns).
MAX_BACKOFF = 0.5


def availableConnectionCount(db):
    """How many more connections ``db`` can open before its pool is full.

    The pool size less the connections currently in use (opened and not
    yet closed).  Zero or less means the pool is exhausted.
    """
    pool = db.pool
    in_use = len(pool.all) - len(pool.available)
    return db.getPoolSize() - in_use


def _next_backoff(backoff):
    return backoff + 0.0625 + random.random() / 20.0


def get_connection(db, deferred=None, backoff=0, reactor=None):
    """Return a Deferred that fires with a new connection to ``db``.

    The connection has a ``transaction.TransactionManager`` of its own.
    While the pool has no free connection the call is repeated with the
    reactor's ``callLater``, waiting a little longer each time (about 1/16
    of a second more, plus some jitter); once the cumulative backoff
    reaches about half a second a connection is opened anyway.

    ``deferred`` and ``backoff`` are used by the repeated calls; ``reactor``
    defaults to the global Twisted reactor, imported only when needed.
    """
    if deferred is None:
        deferred = defer.Deferred()
    if backoff < MAX_BACKOFF and availableConnectionCount(db) <= 0:
        if reactor is None:
            from twisted.internet import reactor
        backoff = _next_backoff(backoff)
        logger.debug('connection pool of %r is full; waiting %.3f s',
                     db.database_name, backoff)
        reactor.callLater(
            backoff, get_connection, db, deferred, backoff, reactor)
        return deferred
    if backoff >= MAX_BACKOFF and availableConnectionCount(db) <= 0:
        logger.info('connection pool of %r still full after backoff; '
                    'opening a connection anyway', db.database_name)
    conn = db.open(transaction_manager=transaction.TransactionManager())
    deferred.callback(conn)
    return deferred
