"""Calling something on persistent objects from the reactor.

``Partial(call, *args, **kwargs)`` is like ``functools.partial``, except
that persistent objects (and their methods) among ``call`` and the
arguments are kept as references, not as the objects of the connection
they came from.  Calling the partial opens a connection of its own, with a
transaction manager of its own, loads the objects there, makes the call
and commits.  Conflicts are retried; the result arrives through a Deferred.
"""
import itertools
import logging

import twisted.python.failure
from twisted.internet import defer

from zc.twist.pool import get_connection
from zc.twist.errors import ClientDisconnected, TransactionError, is_explosive
from zc.twist.failure import Failure, sanitize
from zc.twist.reference import DeferredReferenceToPersistent, Reference

logger = logging.getLogger('zc.twist')


def _resolve(value, conn):
    if isinstance(value, DeferredReferenceToPersistent):
        return value(conn)
    return value


class Partial:
    """A call, with arguments, to be made later in a transaction of its own.

    With no persistent object among the call and its arguments, calling the
    partial simply calls through and returns the result.  Otherwise the
    call returns a Deferred and runs in a new connection of the database
    the first persistent part belongs to: begin, load the objects, call,
    commit.  Then:

    * a ``TransactionError`` (a conflict, say) aborts and tries again on a
      new connection, until ``transaction_error_count`` reaches
      ``max_transaction_errors`` (None: try forever); the Deferred then
      errbacks with a sanitized Failure;
    * ZEO's ``ClientDisconnected`` aborts and tries again later, with the
      reactor's ``callLater``, after ``initial_backoff`` seconds, then
      ``backoff_increment`` more each time, at most ``max_backoff``; forever;
    * an explosive error (``zc.twist.EXPLOSIVE_ERRORS``) aborts and is
      re-raised;
    * any other exception aborts and errbacks with a sanitized Failure;
    * on success a returned Failure errbacks (sanitized), a returned
      Deferred is chained, anything else is the callback's result.

    The callee should not return persistent objects of its connection: the
    connection is closed before the result is delivered.
    """

    attempt_count = 0
    transaction_error_count = 0
    max_transaction_errors = 5
    initial_backoff = 5
    backoff_increment = 5
    max_backoff = 60

    _reactor = None

    def __init__(self, call, *args, **kwargs):
        self.call = Reference(call)
        self.args = [Reference(a) for a in args]
        self.kwargs = {k: Reference(v) for k, v in kwargs.items()}

    def __repr__(self):
        return '<%s.%s %r args=%r kwargs=%r>' % (
            type(self).__module__, type(self).__qualname__,
            self.call, self.args, self.kwargs)

    # -- reactor -----------------------------------------------------------

    def setReactor(self, reactor):
        """Use ``reactor`` (for ``callLater``) instead of the global one.

        Returns the partial, so ``Partial(f, ob).setReactor(r)`` chains.
        """
        self._reactor = reactor
        return self

    def getReactor(self):
        """The reactor set with ``setReactor``, else Twisted's global one.

        The global reactor is imported here, on first need, never when
        zc.twist is imported (that import would install it).
        """
        if self._reactor is None:
            from twisted.internet import reactor
            return reactor
        return self._reactor

    # -- calling -----------------------------------------------------------

    def _database(self):
        for value in itertools.chain(
                (self.call,), self.args, self.kwargs.values()):
            if isinstance(value, DeferredReferenceToPersistent):
                return value.db
        return None

    def _resolve(self, conn):
        call = _resolve(self.call, conn)
        args = [_resolve(a, conn) for a in self.args]
        kwargs = {k: _resolve(v, conn) for k, v in self.kwargs.items()}
        return call, args, kwargs

    def __call__(self, *args, **kwargs):
        """Make the call; extra arguments are added to the stored ones.

        Like the original zc.twist, the extra arguments are kept: they
        extend ``self.args`` and update ``self.kwargs``.
        """
        self.args.extend(Reference(a) for a in args)
        self.kwargs.update((k, Reference(v)) for k, v in kwargs.items())
        db = self._database()
        if db is None:
            call, args, kwargs = self._resolve(None)
            return call(*args, **kwargs)
        deferred = defer.Deferred()
        self._connect(db, deferred, None)
        return deferred

    def _connect(self, db, deferred, backoff):
        """Get a connection and make an attempt in it.

        When the connection is available at once, the attempt runs right
        here, so an explosive error propagates to whoever called (the
        caller of the partial, or the reactor for a scheduled retry).  When
        the pool is full the attempt runs later from the Deferred of
        ``get_connection``, which would swallow the exception; the error is
        then logged and ``deferred`` errbacks with it.
        """
        waiting = []
        ready = []

        def got(conn):
            if waiting:
                self._call(conn, deferred, backoff)
            else:
                ready.append(conn)

        def lost(failure):
            logger.critical(
                'explosive error in %r outside the caller\'s reach',
                self, exc_info=(failure.type, failure.value,
                                failure.getTracebackObject()))
            if not deferred.called:
                deferred.errback(sanitize(failure))

        # The global reactor is needed only when the pool is full; leave
        # its import to get_connection then.
        d = get_connection(db, reactor=self._reactor)
        d.addCallback(got)
        d.addErrback(lost)
        waiting.append(True)
        if ready:
            self._call(ready[0], deferred, backoff)

    def _call(self, conn, deferred, backoff=None):
        """One attempt: begin, resolve, call, commit, in ``conn``."""
        self.attempt_count += 1
        tm = conn.transaction_manager
        try:
            tm.begin()
            call, args, kwargs = self._resolve(conn)
            result = call(*args, **kwargs)
            tm.commit()
        except ClientDisconnected:
            # Check before TransactionError: ZEO's ClientDisconnected is
            # one too, but waiting is what helps here, not retrying at once.
            _abort_and_close(tm, conn)
            if backoff is None:
                backoff = self.initial_backoff
            else:
                backoff = backoff + self.backoff_increment
            if self.max_backoff is not None:
                backoff = min(backoff, self.max_backoff)
            logger.warning('%r: ZEO client disconnected; retrying in %s s',
                           self, backoff)
            self.getReactor().callLater(
                backoff, self._connect, conn.db(), deferred, backoff)
        except TransactionError:
            failure = Failure()
            _abort_and_close(tm, conn)
            self.transaction_error_count += 1
            limit = self.max_transaction_errors
            if limit is not None and self.transaction_error_count >= limit:
                logger.warning('%r: giving up after %d transaction errors',
                               self, self.transaction_error_count)
                deferred.errback(failure)
            else:
                logger.debug('%r: transaction error %d; retrying', self,
                             self.transaction_error_count)
                self._connect(conn.db(), deferred, backoff)
        except BaseException as exc:
            if is_explosive(exc) or not isinstance(exc, Exception):
                _abort_and_close(tm, conn)
                raise
            failure = Failure()
            _abort_and_close(tm, conn)
            deferred.errback(failure)
        else:
            conn.close()
            if isinstance(result, twisted.python.failure.Failure):
                deferred.errback(sanitize(result))
            elif isinstance(result, defer.Deferred):
                result.addCallbacks(
                    deferred.callback,
                    lambda f: deferred.errback(sanitize(f)))
            else:
                deferred.callback(result)


def _abort_and_close(tm, conn):
    try:
        tm.abort()
    finally:
        conn.close()
