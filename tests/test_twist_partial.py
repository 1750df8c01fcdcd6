"""zc.twist.Partial and get_connection, with a fake reactor."""
import logging

import persistent
import pytest
import transaction
import twisted.python.failure
import ZODB
import ZODB.POSException
from twisted.internet import defer

import zc.twist


class Counter(persistent.Persistent):
    value = 0

    def add(self, amount=1):
        self.value += amount
        return self.value


class FakeReactor:
    """Records callLater calls; run them one by one with run_next."""

    def __init__(self):
        self.delays = []
        self.pending = []

    def callLater(self, delay, func, *args, **kwargs):
        self.delays.append(delay)
        self.pending.append((func, args, kwargs))

    def run_next(self):
        func, args, kwargs = self.pending.pop(0)
        func(*args, **kwargs)

    def run_all(self, limit=100):
        steps = 0
        while self.pending:
            assert steps < limit, 'reactor did not settle'
            self.run_next()
            steps += 1
        return steps


def outcome(deferred):
    results = []
    deferred.addBoth(results.append)
    return results


@pytest.fixture
def db():
    database = ZODB.DB(None)
    tm = transaction.TransactionManager()
    conn = database.open(transaction_manager=tm)
    conn.root()['counter'] = Counter()
    tm.commit()
    conn.close()
    yield database
    database.close()


@pytest.fixture
def conn(db):
    tm = transaction.TransactionManager()
    connection = db.open(transaction_manager=tm)
    yield connection
    tm.abort()
    connection.close()


def stored_value(db):
    tm = transaction.TransactionManager()
    c = db.open(transaction_manager=tm)
    try:
        return c.root()['counter'].value
    finally:
        tm.abort()
        c.close()


def assert_pool_released(db, held=1):
    """Only the ``held`` connections (the test's own) are still open."""
    assert zc.twist.availableConnectionCount(db) == db.getPoolSize() - held


class Flaky:
    """Raise ``error`` the first ``times`` calls, then add 1 to the counter."""

    def __init__(self, error, times):
        self.error = error
        self.times = times
        self.calls = 0

    def __call__(self, counter):
        self.calls += 1
        counter.value += 1000       # rolled back by every failed attempt
        if self.calls <= self.times:
            raise self.error()
        counter.value -= 1000
        return counter.add(1)


# -- no persistent parts ------------------------------------------------------

def test_plain_call_returns_the_result():
    partial = zc.twist.Partial(divmod, 17)
    result = partial(5)
    assert result == (3, 2)
    assert not isinstance(result, defer.Deferred)
    assert partial.args == [17, 5]      # call-time arguments are kept


def test_plain_call_with_keywords_and_errors():
    assert zc.twist.Partial(sorted, reverse=True)([1, 3, 2]) == [3, 2, 1]
    with pytest.raises(ZeroDivisionError):
        zc.twist.Partial(divmod, 1, 0)()


def test_unsaved_persistent_object_is_called_directly():
    counter = Counter()
    assert zc.twist.Partial(counter.add, 2)() == 2
    assert counter.value == 2


# -- persistent parts ---------------------------------------------------------

def test_persistent_call_runs_in_its_own_transaction(db, conn):
    counter = conn.root()['counter']
    seen = []

    def where(c, amount):
        seen.append((c._p_jar, c._p_jar.transaction_manager))
        return c.add(amount)

    partial = zc.twist.Partial(where, counter, 4)
    d = partial()
    assert isinstance(d, defer.Deferred)
    assert outcome(d) == [4]
    assert partial.attempt_count == 1
    assert partial.transaction_error_count == 0
    [(jar, tm)] = seen
    assert jar is not conn
    assert tm is not conn.transaction_manager
    assert tm is not transaction.manager
    assert stored_value(db) == 4
    assert counter.value == 0           # our snapshot is untouched
    assert_pool_released(db)


def test_persistent_method_and_keyword_arguments(db, conn):
    counter = conn.root()['counter']
    assert outcome(zc.twist.Partial(counter.add, amount=3)()) == [3]
    assert outcome(zc.twist.Partial(counter.add)(amount=2)) == [5]
    assert stored_value(db) == 5


@pytest.mark.parametrize('conflicts', [0, 1, 4])
def test_conflicts_are_retried(db, conn, conflicts):
    flaky = Flaky(ZODB.POSException.ConflictError, conflicts)
    partial = zc.twist.Partial(flaky, conn.root()['counter'])
    assert outcome(partial()) == [1]
    assert partial.attempt_count == conflicts + 1
    assert partial.transaction_error_count == conflicts
    assert stored_value(db) == 1
    assert_pool_released(db)


@pytest.mark.parametrize('conflicts', [5, 6, 50])
def test_conflicts_give_up_after_five(db, conn, conflicts):
    flaky = Flaky(ZODB.POSException.ConflictError, conflicts)
    partial = zc.twist.Partial(flaky, conn.root()['counter'])
    [failure] = outcome(partial())
    assert type(failure) is zc.twist.Failure
    assert failure.check(ZODB.POSException.ConflictError)
    assert failure.tb is None
    assert failure.value.__traceback__ is None
    assert partial.attempt_count == 5
    assert partial.transaction_error_count == 5
    assert flaky.calls == 5
    assert stored_value(db) == 0
    assert_pool_released(db)


def test_max_transaction_errors_is_per_instance(db, conn):
    flaky = Flaky(ZODB.POSException.ConflictError, 10)
    partial = zc.twist.Partial(flaky, conn.root()['counter'])
    partial.max_transaction_errors = 2
    [failure] = outcome(partial())
    assert isinstance(failure, zc.twist.Failure)
    assert partial.attempt_count == 2
    assert zc.twist.Partial.max_transaction_errors == 5


def test_max_transaction_errors_none_retries_forever(db, conn):
    flaky = Flaky(ZODB.POSException.ConflictError, 12)
    partial = zc.twist.Partial(flaky, conn.root()['counter'])
    partial.max_transaction_errors = None
    assert outcome(partial()) == [1]
    assert partial.attempt_count == 13


def test_other_transaction_errors_are_retried(db, conn):
    flaky = Flaky(ZODB.POSException.ReadConflictError, 2)
    partial = zc.twist.Partial(flaky, conn.root()['counter'])
    assert outcome(partial()) == [1]
    assert partial.attempt_count == 3


def test_real_conflict_from_a_second_connection(db, conn):
    rivals = []

    def contested(counter):
        counter.value += 1
        if len(rivals) < 2:
            tm = transaction.TransactionManager()
            rival = db.open(transaction_manager=tm)
            rival.root()['counter'].value += 10
            tm.commit()
            rival.close()
            rivals.append(True)
        return counter.value

    partial = zc.twist.Partial(contested, conn.root()['counter'])
    assert outcome(partial()) == [21]
    assert partial.attempt_count == 3
    assert partial.transaction_error_count == 2
    assert stored_value(db) == 21


# -- ClientDisconnected -------------------------------------------------------

def test_client_disconnected_is_a_transaction_error():
    # This is why Partial must check it before TransactionError.
    assert issubclass(zc.twist.ClientDisconnected, zc.twist.TransactionError)


def test_client_disconnected_backs_off(db, conn):
    flaky = Flaky(zc.twist.ClientDisconnected, 14)
    reactor = FakeReactor()
    partial = zc.twist.Partial(flaky, conn.root()['counter'])
    assert partial.setReactor(reactor) is partial
    results = outcome(partial())
    assert results == []
    assert reactor.delays == [5]
    assert_pool_released(db)                    # closed while waiting
    reactor.run_all()
    assert reactor.delays == [5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55,
                              60, 60, 60]
    assert results == [1]
    assert partial.attempt_count == 15
    assert partial.transaction_error_count == 0
    assert stored_value(db) == 1
    assert_pool_released(db)


def test_client_disconnected_backoff_is_configurable(db, conn):
    flaky = Flaky(zc.twist.ClientDisconnected, 5)
    reactor = FakeReactor()
    partial = zc.twist.Partial(flaky, conn.root()['counter'])
    partial.initial_backoff = 1
    partial.backoff_increment = 2
    partial.max_backoff = 4
    results = outcome(partial.setReactor(reactor)())
    reactor.run_all()
    assert reactor.delays == [1, 3, 4, 4, 4]
    assert results == [1]


def test_client_disconnected_never_gives_up(db, conn):
    # More disconnections than max_transaction_errors: still retried.
    flaky = Flaky(zc.twist.ClientDisconnected, 8)
    reactor = FakeReactor()
    partial = zc.twist.Partial(flaky, conn.root()['counter'])
    results = outcome(partial.setReactor(reactor)())
    reactor.run_all()
    assert results == [1]
    assert partial.attempt_count == 9


def test_client_disconnected_then_conflict(db, conn):
    calls = []

    def call(counter):
        calls.append(True)
        if len(calls) == 1:
            raise zc.twist.ClientDisconnected()
        if len(calls) == 2:
            raise ZODB.POSException.ConflictError()
        return counter.add(1)

    reactor = FakeReactor()
    partial = zc.twist.Partial(call, conn.root()['counter'])
    results = outcome(partial.setReactor(reactor)())
    reactor.run_all()
    assert results == [1]
    assert reactor.delays == [5]
    assert partial.attempt_count == 3
    assert partial.transaction_error_count == 1


# -- explosive errors ---------------------------------------------------------

@pytest.mark.parametrize('error', [
    SystemExit('stop'),
    KeyboardInterrupt(),
    ZODB.POSException.POSKeyError(b'\0' * 8),
    ZODB.POSException.StorageError('disk on fire'),
])
def test_explosive_errors_abort_and_reraise(db, conn, error):
    def explode(counter):
        counter.value = -1
        raise error

    partial = zc.twist.Partial(explode, conn.root()['counter'])
    with pytest.raises(type(error)) as info:
        partial()
    assert info.value is error
    assert partial.attempt_count == 1
    assert stored_value(db) == 0
    assert_pool_released(db)


def test_explosive_error_list():
    assert type(zc.twist.EXPLOSIVE_ERRORS) is tuple
    assert zc.twist.is_explosive(SystemExit())
    assert zc.twist.is_explosive(ZODB.POSException.POSKeyError(b'\0' * 8))
    assert not zc.twist.is_explosive(ZODB.POSException.ConflictError())
    assert not zc.twist.is_explosive(zc.twist.ClientDisconnected())
    assert not zc.twist.is_explosive(ValueError())


def test_explosive_error_after_waiting_for_the_pool(caplog):
    small = ZODB.DB(None, pool_size=1)
    try:
        tm = transaction.TransactionManager()
        holder = small.open(transaction_manager=tm)
        holder.root()['counter'] = Counter()
        tm.commit()

        def explode(counter):
            counter.value = -1
            raise SystemExit('late')

        reactor = FakeReactor()
        partial = zc.twist.Partial(explode, holder.root()['counter'])
        results = outcome(partial.setReactor(reactor)())
        assert results == []
        holder.close()
        with caplog.at_level(logging.CRITICAL, logger='zc.twist'):
            reactor.run_next()
        # Out of the caller's reach: logged, and the deferred errbacks.
        [failure] = results
        assert isinstance(failure, zc.twist.Failure)
        assert failure.check(SystemExit)
        assert any(r.levelno == logging.CRITICAL for r in caplog.records)
        check = small.open(transaction_manager=transaction.TransactionManager())
        assert check.root()['counter'].value == 0
        check.close()
    finally:
        small.close()


# -- other errors and results -------------------------------------------------

def test_other_errors_abort_and_errback(db, conn):
    def broken(counter):
        counter.value = -1
        raise ValueError('no good')

    partial = zc.twist.Partial(broken, conn.root()['counter'])
    [failure] = outcome(partial())
    assert type(failure) is zc.twist.Failure
    assert failure.check(ValueError)
    assert failure.tb is None
    assert failure.value.__traceback__ is None
    assert ', in broken' in failure.getTraceback()
    assert partial.attempt_count == 1
    assert stored_value(db) == 0
    assert_pool_released(db)


def test_returned_failure_errbacks_sanitized(db, conn):
    def gives_up(counter):
        counter.value += 1
        try:
            raise KeyError('missing')
        except KeyError:
            return twisted.python.failure.Failure()

    [failure] = outcome(zc.twist.Partial(gives_up, conn.root()['counter'])())
    assert type(failure) is zc.twist.Failure
    assert failure.check(KeyError)
    assert failure.tb is None
    assert failure.value.__traceback__ is None
    assert stored_value(db) == 1        # the transaction was committed
    assert_pool_released(db)


def test_returned_deferred_chains_callback(db, conn):
    pending = defer.Deferred()
    results = outcome(
        zc.twist.Partial(lambda c: pending, conn.root()['counter'])())
    assert results == []
    pending.callback('done')
    assert results == ['done']


def test_returned_deferred_chains_errback_sanitized(db, conn):
    pending = defer.Deferred()
    results = outcome(
        zc.twist.Partial(lambda c: pending, conn.root()['counter'])())
    try:
        raise RuntimeError('later')
    except RuntimeError:
        pending.errback(twisted.python.failure.Failure())
    [failure] = results
    assert type(failure) is zc.twist.Failure
    assert failure.check(RuntimeError)
    assert failure.tb is None


def test_returned_fired_deferred(db, conn):
    results = outcome(zc.twist.Partial(
        lambda c: defer.succeed(7), conn.root()['counter'])())
    assert results == [7]


# -- reactor ------------------------------------------------------------------

def test_set_and_get_reactor():
    reactor = FakeReactor()
    partial = zc.twist.Partial(len)
    assert partial.setReactor(reactor) is partial
    assert partial.getReactor() is reactor


# -- get_connection -----------------------------------------------------------

@pytest.fixture
def small():
    database = ZODB.DB(None, pool_size=2)
    yield database
    database.close()


def open_with_own_tm(database):
    return database.open(transaction_manager=transaction.TransactionManager())


def test_available_connection_count(small):
    assert zc.twist.availableConnectionCount(small) == 2
    a = open_with_own_tm(small)
    assert zc.twist.availableConnectionCount(small) == 1
    b = open_with_own_tm(small)
    assert zc.twist.availableConnectionCount(small) == 0
    a.close()
    assert zc.twist.availableConnectionCount(small) == 1
    b.close()
    assert zc.twist.availableConnectionCount(small) == 2


def test_get_connection_at_once(small):
    reactor = FakeReactor()
    [c1] = outcome(zc.twist.get_connection(small, reactor=reactor))
    [c2] = outcome(zc.twist.get_connection(small, reactor=reactor))
    assert reactor.delays == []
    assert c1 is not c2
    assert isinstance(c1.transaction_manager, transaction.TransactionManager)
    assert c1.transaction_manager is not transaction.manager
    assert c1.transaction_manager is not c2.transaction_manager
    c1.close()
    c2.close()


def test_get_connection_waits_for_a_free_connection(small):
    a = open_with_own_tm(small)
    b = open_with_own_tm(small)
    reactor = FakeReactor()
    d = defer.Deferred()
    assert zc.twist.get_connection(small, d, reactor=reactor) is d
    results = outcome(d)
    assert results == []
    reactor.run_next()
    reactor.run_next()
    assert results == []
    assert len(reactor.delays) == 3
    assert 0.0625 <= reactor.delays[0] < 0.0625 + 0.05
    for before, after in zip(reactor.delays, reactor.delays[1:]):
        assert 0.0625 <= after - before < 0.0625 + 0.05
    a.close()
    reactor.run_next()
    [conn] = results
    assert conn.transaction_manager is not b.transaction_manager
    assert zc.twist.availableConnectionCount(small) == 0
    assert len(reactor.delays) == 3
    conn.close()
    b.close()


def test_get_connection_opens_one_anyway_after_half_a_second(small, caplog):
    a = open_with_own_tm(small)
    b = open_with_own_tm(small)
    reactor = FakeReactor()
    results = outcome(zc.twist.get_connection(small, reactor=reactor))
    with caplog.at_level(logging.ERROR, logger='ZODB.DB'):
        steps = reactor.run_all()
    [conn] = results
    # Each step adds between 1/16 s and 1/16 + 1/20 s to the backoff.
    assert 5 <= len(reactor.delays) <= 8
    assert steps == len(reactor.delays)
    assert reactor.delays[-1] >= 0.5
    assert reactor.delays[-2] < 0.5
    assert zc.twist.availableConnectionCount(small) == -1
    for c in (conn, a, b):
        c.close()


def test_partial_waits_for_the_pool():
    small = ZODB.DB(None, pool_size=1)
    try:
        tm = transaction.TransactionManager()
        holder = small.open(transaction_manager=tm)
        holder.root()['counter'] = Counter()
        tm.commit()
        reactor = FakeReactor()
        partial = zc.twist.Partial(holder.root()['counter'].add, 3)
        results = outcome(partial.setReactor(reactor)())
        assert results == []
        assert partial.attempt_count == 0
        assert len(reactor.delays) == 1
        holder.close()
        reactor.run_next()
        assert results == [3]
        assert partial.attempt_count == 1
        assert zc.twist.availableConnectionCount(small) == 1
    finally:
        small.close()

