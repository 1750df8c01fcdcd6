"""Unit tests of zc.asynchronous.job.Job beyond the tutorial.

Conflict retries, explosive errors, the abort rules, odd callables, bad
input, reprs, transaction managers, Deferreds and nested jobs.  The
callables are module-level so that the jobs holding them pickle.
"""
import datetime
import operator
import threading
import time

import BTrees.OOBTree
import persistent
import persistent.list
import pytest
import pytz
import transaction
import twisted.internet.defer
import twisted.python.failure
import ZODB.MappingStorage
import ZODB.POSException
import ZODB.utils
import zope.interface
import zope.interface.verify

import zc.twist
from zc.asynchronous import interfaces, local, utils
from zc.asynchronous.interfaces import (
    ACTIVE, ASSIGNED, CALLBACKS, COMPLETED, NEW, PENDING, AbortedError,
    BadStatusError)
from zc.asynchronous.job import Job

#: Calls seen by the callables below, outside any transaction (an aborted
#: attempt must still be counted).
CALLS = []


@pytest.fixture(autouse=True)
def _calls():
    del CALLS[:]
    yield
    del CALLS[:]


class Counter(persistent.Persistent):
    value = 0

    def increase(self, by=1):
        self.value += by
        return self.value


class PersistentCallable(persistent.Persistent):
    def __call__(self, a, b):
        return ('called', a, b)


@zope.interface.implementer(interfaces.IQueue)
class StubQueue:
    pass


@zope.interface.implementer(interfaces.IDispatcherAgents)
class StubDispatcherAgents:
    parent = None


@zope.interface.implementer(interfaces.IAgent)
class StubAgent:
    parent = None

    def jobCompleted(self, job):
        job.key = utils.dt_to_long(utils.now())


class SelfJob(Job):
    """A job whose callable is one of its own methods."""

    def __init__(self, *args, **kwargs):
        super().__init__(self.run, *args, **kwargs)

    def run(self, *args, extra=0):
        return (self.status, args, extra)


class BadRepr:
    def __repr__(self):
        raise RuntimeError('no repr for you')


class CallableWithBadRepr(BadRepr):
    def __call__(self):
        return 1


def store(conn, name, ob):
    conn.root()[name] = ob
    conn.transaction_manager.commit()
    return ob


@pytest.fixture
def other(db):
    """A second connection with its own transaction manager."""
    conn = db.open(transaction_manager=transaction.TransactionManager())
    yield conn
    conn.transaction_manager.abort()
    conn.close()


def reload(conn, name):
    conn.transaction_manager.begin()
    return conn.root()[name]


# -- callables -----------------------------------------------------------

def flaky(log, failures):
    """Write, then raise ConflictError ``failures`` times; then succeed."""
    CALLS.append(len(CALLS))
    log.append(len(CALLS))
    if len(CALLS) <= failures:
        raise ZODB.POSException.ConflictError()
    return 'done after %d' % len(CALLS)


def conflicting_increase(counter):
    """Increase ``counter``; on the first attempt another connection
    changes it first, so this attempt's commit conflicts."""
    CALLS.append(counter.value)
    if len(CALLS) == 1:
        db = local.getJob()._p_jar.db()
        conn = db.open(transaction_manager=transaction.TransactionManager())
        try:
            conn.get(counter._p_oid).value += 100
            conn.transaction_manager.commit()
        finally:
            conn.close()
    counter.value += 1
    return counter.value


EXPLOSIVES = {
    'SystemExit': lambda: SystemExit(3),
    'KeyboardInterrupt': lambda: KeyboardInterrupt(),
    'POSKeyError': lambda: ZODB.POSException.POSKeyError(b'\0' * 8),
    'StorageError': lambda: ZODB.POSException.StorageError('disk on fire'),
}


def write_then_explode(counter, name):
    counter.value += 1
    raise EXPLOSIVES[name]()


def write_then_raise(counter):
    counter.value += 1
    raise RuntimeError('raised')


def write_then_return_failure(counter, plain=False):
    counter.value += 1
    try:
        raise RuntimeError('returned')
    except RuntimeError:
        if plain:
            return twisted.python.failure.Failure()
        return zc.twist.Failure()


def current_job():
    # Not the job itself: a job that returns itself would wait on itself.
    return [local.getJob()]


def status_seen_elsewhere():
    """The job's status as another connection sees it during the call."""
    job = local.getJob()
    conn = job._p_jar.db().open(
        transaction_manager=transaction.TransactionManager())
    try:
        return conn.get(job._p_oid).status
    finally:
        conn.close()


def collect(*args, **kwargs):
    return (args, sorted(kwargs.items()))


def return_it(value):
    return value


def record(result):
    CALLS.append(result)
    return result


def multiply(a, b):
    return a * b


# -- calling and committing ----------------------------------------------

def test_interface_and_read_only_attributes(conn):
    job = store(conn, 'job', Job(multiply, 2, 3))
    assert zope.interface.verify.verifyObject(interfaces.IJob, job)
    with pytest.raises(AttributeError):
        job.status = COMPLETED
    with pytest.raises(AttributeError):
        job.result = 1
    assert job.status == NEW and job.result is None


def test_active_is_committed_before_the_call(conn):
    job = store(conn, 'job', Job(status_seen_elsewhere))
    before = utils.now()
    assert job() == ACTIVE
    assert job.status == COMPLETED
    assert before <= job.active_start <= job.active_end <= utils.now()


def test_arguments_are_merged_not_mutated(conn):
    job = store(conn, 'job', Job(collect, 1, 2, a='stored', b='stored'))
    assert job(3, b='call', c='call') == (
        (1, 2, 3), [('a', 'stored'), ('b', 'call'), ('c', 'call')])
    assert list(job.args) == [1, 2]
    assert dict(job.kwargs) == {'a': 'stored', 'b': 'stored'}


def test_local_job_is_set_only_during_the_call(conn):
    job = store(conn, 'job', Job(current_job))
    assert local.getJob() is None
    assert job() == [job]
    assert local.getJob() is None


def test_bind_passes_the_job_first(conn):
    job = store(conn, 'job', Job.bind(collect, 'x'))
    assert job('y') == ((job, 'x', 'y'), [])


# -- conflict retries ----------------------------------------------------

@pytest.mark.parametrize('failures', range(5))
def test_conflict_error_retries_the_call(conn, failures):
    log = store(conn, 'log', persistent.list.PersistentList())
    job = store(conn, 'job', Job(flaky, log, failures))
    assert job() == 'done after %d' % (failures + 1)
    assert len(CALLS) == failures + 1
    assert job.status == COMPLETED
    assert job.result == 'done after %d' % (failures + 1)
    # The writes of the attempts that conflicted were aborted.
    assert list(log) == [failures + 1]


def test_conflict_error_five_times_gives_a_failure(conn, other):
    log = store(conn, 'log', persistent.list.PersistentList())
    job = store(conn, 'job', Job(flaky, log, 99))
    res = job()
    assert len(CALLS) == 5
    assert isinstance(res, zc.twist.Failure)
    assert res.check(ZODB.POSException.ConflictError)
    assert job.status == COMPLETED
    assert list(log) == []
    job2 = reload(other, 'job')
    assert job2.status == COMPLETED
    assert job2.result.check(ZODB.POSException.ConflictError)


def test_real_commit_conflict_retries_the_call(conn, other):
    counter = store(conn, 'counter', Counter())
    job = store(conn, 'job', Job(conflicting_increase, counter))
    assert job() == 101
    # First attempt saw 0 and conflicted; the second saw the other
    # connection's 100.
    assert CALLS == [0, 100]
    assert reload(other, 'counter').value == 101


# -- explosive errors and the abort rules --------------------------------

@pytest.mark.parametrize('name', sorted(EXPLOSIVES))
def test_explosive_errors_abort_and_propagate(conn, other, name):
    counter = store(conn, 'counter', Counter())
    job = store(conn, 'job', Job(write_then_explode, counter, name))
    exc_type = type(EXPLOSIVES[name]())
    with pytest.raises(exc_type):
        job()
    assert len(CALLS) == 0
    # Aborted: the write is gone from memory too, and nothing is pending.
    assert counter.value == 0
    assert not counter._p_changed
    # The job is left ACTIVE, as a dead worker would leave it.
    assert job.status == ACTIVE
    assert job.result is None
    job2 = reload(other, 'job')
    assert job2.status == ACTIVE
    assert reload(other, 'counter').value == 0


def test_raised_exception_aborts_the_calls_writes(conn, other):
    counter = store(conn, 'counter', Counter())
    job = store(conn, 'job', Job(write_then_raise, counter))
    res = job()
    assert isinstance(res, zc.twist.Failure)
    assert res.check(RuntimeError)
    assert counter.value == 0
    assert reload(other, 'counter').value == 0
    job2 = reload(other, 'job')
    assert job2.status == COMPLETED
    assert str(job2.result.value) == 'raised'


@pytest.mark.parametrize('plain', [False, True], ids=['zc.twist', 'twisted'])
def test_returned_failure_keeps_the_calls_writes(conn, other, plain):
    counter = store(conn, 'counter', Counter())
    job = store(conn, 'job', Job(write_then_return_failure, counter, plain))
    job()
    assert reload(other, 'counter').value == 1
    job2 = reload(other, 'job')
    # Whatever was returned, a sanitized zc.twist.Failure is stored.
    assert type(job.result) is zc.twist.Failure
    assert type(job2.result) is zc.twist.Failure
    assert job.result.tb is None
    assert job.result.value.__traceback__ is None
    assert 'write_then_return_failure' in job2.result.getTraceback()


def test_unpicklable_result_becomes_a_failure(conn, other):
    job = store(conn, 'job', Job(threading.Lock))
    res = job()
    assert isinstance(res, zc.twist.Failure)
    assert res.check(TypeError)
    assert job.status == COMPLETED
    assert reload(other, 'job').result.check(TypeError)


# -- odd callables -------------------------------------------------------

def test_builtin_function_is_kept_whole(conn, other):
    job = Job(time.time)
    assert job._callable_root is time.time
    assert job._callable_name is None
    store(conn, 'job', job)
    assert '``time.time()``' in repr(job)
    job2 = reload(other, 'job')
    assert job2.callable is time.time
    assert isinstance(job2(), float)


def test_operator_function(conn):
    job = store(conn, 'job', Job(operator.mul, 6, 7))
    assert '``_operator.mul(6, 7)``' in repr(job)
    assert job() == 42


def test_builtin_method_of_a_plain_object(conn, other):
    job = store(conn, 'job', Job('{}-{}'.format, 1, 2))
    assert job._callable_root == '{}-{}'
    assert job._callable_name == 'format'
    assert reload(other, 'job')() == '1-2'


def test_method_wrapper_of_a_stored_tree(conn, other):
    tree = store(conn, 'tree', BTrees.OOBTree.OOBTree())
    setter = tree.__setitem__
    assert isinstance(setter, zc.twist.METHOD_WRAPPER_TYPE)
    job = store(conn, 'job', Job(setter, 'key', 'value'))
    assert job._callable_root is tree
    assert job._callable_name == '__setitem__'
    assert repr(job).endswith(":__setitem__('key', 'value')``>")
    job2 = reload(other, 'job')
    assert job2.callable.__self__ is other.root()['tree']
    assert job2() is None
    conn.transaction_manager.begin()
    assert dict(tree) == {'key': 'value'}


def test_method_of_a_persistent_object(conn, other):
    counter = store(conn, 'counter', Counter())
    job = store(conn, 'job', Job(counter.increase, 5))
    assert job._callable_root is counter
    assert job._callable_name == 'increase'
    job2 = reload(other, 'job')
    counter2 = other.root()['counter']
    assert job2.callable.__self__ is counter2
    assert job2() == 5
    assert counter2.value == 5
    conn.transaction_manager.begin()
    assert counter.value == 5


def test_persistent_callable(conn):
    ob = store(conn, 'ob', PersistentCallable())
    job = store(conn, 'job', Job(ob, 1, b=2))
    assert job._callable_root is ob and job._callable_name is None
    assert job() == ('called', 1, 2)


def test_job_bound_to_its_own_method(conn, other):
    job = SelfJob('a', 'b')
    # Its callable is itself: it must not become its own parent.
    assert job._callable_root is job
    assert job.parent is None
    assert job.status == NEW
    assert job.queue is None and job.agent is None
    store(conn, 'job', job)
    assert repr(job).endswith(":run('a', 'b')``>")
    assert repr(job).count('SelfJob (oid') == 2
    job2 = reload(other, 'job')
    assert job2.callable.__self__ is job2
    assert job2('c', extra=10) == (ACTIVE, ('a', 'b', 'c'), 10)
    assert job2.status == COMPLETED


def test_job_wrapping_a_method_of_an_orphan_becomes_its_parent(conn):
    orphan = Job(multiply, 2, 3)
    wrapper = Job(orphan.resumeCallbacks)
    assert orphan.parent is wrapper
    # A job that already has a parent keeps it.
    queue = StubQueue()
    adopted = Job(multiply, 1, 1)
    adopted.parent = queue
    Job(adopted.fail)
    assert adopted.parent is queue


# -- callbacks -----------------------------------------------------------

def test_addCallbacks_with_nothing_returns_the_job(conn):
    job = store(conn, 'job', Job(multiply, 2, 3))
    assert job.addCallbacks() is job
    assert len(job.callbacks) == 0


def test_missing_side_passes_the_result_through(conn):
    job = store(conn, 'job', Job(multiply, 2, 3))
    passed = job.addCallbacks(failure=record)
    handled = Job(multiply, 2, None)
    store(conn, 'handled', handled)
    kept = handled.addCallbacks(success=record)
    conn.transaction_manager.commit()
    job()
    handled()
    assert passed.result == 6
    assert interfaces.IFailure.providedBy(kept.result)
    assert kept.result is handled.result
    assert CALLS == []


def test_addCallback_gets_failures_too(conn):
    job = store(conn, 'job', Job(multiply, 2, None))
    callback = job.addCallback(record)
    conn.transaction_manager.commit()
    job()
    assert CALLS == [job.result]
    assert callback.result.check(TypeError)


def test_failing_callback_leaves_the_job_alone(conn):
    job = store(conn, 'job', Job(multiply, 0, 3))
    bad = job.addCallback(Job(operator.truediv, 1))
    good = job.addCallback(record)
    conn.transaction_manager.commit()
    assert job() == 0
    assert bad.result.check(ZeroDivisionError)
    assert bad.status == COMPLETED
    assert good.result == 0
    assert job.result == 0 and job.status == COMPLETED


def test_callbacks_on_a_completed_job_run_at_once(conn, other):
    job = store(conn, 'job', Job(multiply, 2, 3))
    job()
    chained = job.addCallbacks(Job(multiply, 10)).addCallbacks(record)
    assert chained.result == 60
    assert CALLS == [60]
    # Committed by the callbacks themselves.
    job2 = reload(other, 'job')
    assert job2.status == COMPLETED
    assert job2.callbacks[0].result == 60


def test_chained_job_callbacks(conn):
    job = store(conn, 'job', Job(multiply, 5, 3))
    inner = Job(multiply, 4)
    intermediate = job.addCallbacks(inner)
    assert inner.parent is intermediate and intermediate.parent is job
    inner.addCallbacks(record)
    conn.transaction_manager.commit()
    job()
    assert CALLS == [60]
    assert intermediate.result == 60


def test_safety_callback_fails_an_active_argument_job(conn):
    job = store(conn, 'job', Job(multiply, 5, 3))
    success = Job(multiply, 4)
    intermediate = job.addCallbacks(success)
    assert len(intermediate.callbacks) == 1
    conn.transaction_manager.commit()
    # As if a worker died while ``intermediate`` ran ``success``.
    job._status = CALLBACKS
    intermediate._status = ACTIVE
    success._status = ACTIVE
    conn.transaction_manager.commit()
    intermediate.fail()
    assert intermediate.result.check(AbortedError)
    assert success.status == COMPLETED
    assert success.result.check(AbortedError)


def test_fail_runs_the_callbacks(conn):
    job = store(conn, 'job', Job(multiply, 5, 3))
    callback = job.addCallback(record)
    conn.transaction_manager.commit()
    assert job.fail(RuntimeError('stop')) is None
    assert job.status == COMPLETED
    assert callback.result is job.result
    assert job.result.check(RuntimeError)
    assert 'RuntimeError: stop' in job.result.getTraceback()


def test_fail_on_pending_and_assigned(conn):
    for parent in (StubQueue(), StubAgent()):
        job = Job(multiply, 5, 3)
        job.parent = parent
        assert job.status in (PENDING, ASSIGNED)
        store(conn, 'job', job)
        job.fail()
        assert job.result.check(AbortedError)
        assert job.status == COMPLETED


def test_resumeCallbacks(conn):
    job = store(conn, 'job', Job(multiply, 5, 2))
    done = job.addCallback(Job(multiply, 2))
    active = job.addCallback(Job(multiply, 3))
    pending = job.addCallback(Job(multiply, 4))
    conn.transaction_manager.commit()
    job._result = 10
    job._status = CALLBACKS
    done._status = COMPLETED
    done._result = 'untouched'
    active._status = ACTIVE
    conn.transaction_manager.commit()
    assert job.resumeCallbacks() is None
    assert job.status == COMPLETED
    assert done.result == 'untouched'
    assert active.result.check(AbortedError)
    assert pending.result == 40


# -- parent, queue and agent ---------------------------------------------

def test_queue_agent_and_statuses_through_parents(conn):
    queue = StubQueue()
    agents = StubDispatcherAgents()
    agents.parent = queue
    agent = StubAgent()
    agent.parent = agents
    job = Job(multiply, 6, 7)
    callback = job.addCallback(Job(record))
    assert job.queue is None and job.agent is None
    job.parent = queue
    assert job.status == PENDING
    assert callback.status == PENDING
    assert job.queue is queue and job.agent is None
    job.parent = agent
    assert job.status == ASSIGNED and callback.status == ASSIGNED
    assert job.agent is agent and callback.agent is agent
    assert job.queue is queue and callback.queue is queue
    store(conn, 'job', job)
    assert job.initial_callbacks_end is None
    before = utils.now().replace(microsecond=0)
    assert job() == 42
    assert job.status == COMPLETED
    assert job.key is not None
    assert job.initial_callbacks_end >= before
    assert job.initial_callbacks_end.tzinfo is not None


def test_parent_cycle_does_not_loop():
    a, b = Job(multiply, 1, 1), Job(multiply, 1, 1)
    a.parent, b.parent = b, a
    assert a.status == NEW
    assert a.queue is None and a.agent is None
    a.parent = a
    assert a.status == NEW and a.queue is None


# -- bad input -----------------------------------------------------------

def test_calling_twice(conn):
    job = store(conn, 'job', Job(multiply, 2, 3))
    job()
    with pytest.raises(BadStatusError,
                       match='^can only call a job with NEW or ASSIGNED '
                             'status$'):
        job()
    assert job.result == 6


def test_calling_a_pending_job(conn):
    job = Job(multiply, 2, 3)
    job.parent = StubQueue()
    store(conn, 'job', job)
    with pytest.raises(BadStatusError):
        job()
    assert job.status == PENDING


def test_calling_an_unstored_job():
    job = Job(multiply, 2, 3)
    with pytest.raises(ValueError, match='no database connection'):
        job()
    assert job.status == NEW


@pytest.mark.parametrize('status', [CALLBACKS, COMPLETED])
def test_fail_on_callbacks_or_completed(conn, status):
    job = store(conn, 'job', Job(multiply, 2, 3))
    job._status = status
    job._result = 6
    with pytest.raises(
            BadStatusError,
            match='^can only call fail on a job with NEW, PENDING, ASSIGNED, '
                  'or ACTIVE status$'):
        job.fail()
    assert job.result == 6


@pytest.mark.parametrize('status', [ACTIVE, CALLBACKS, COMPLETED])
def test_setting_callable_after_new(conn, status):
    job = store(conn, 'job', Job(multiply, 2, 3))
    job._status = status
    with pytest.raises(
            BadStatusError,
            match='^can only set callable when a job has NEW, PENDING, or '
                  'ASSIGNED status$'):
        job.callable = operator.add
    assert job.callable is multiply


def test_setting_callable_while_new(conn):
    counter = store(conn, 'counter', Counter())
    job = Job(multiply, 2)
    job.callable = counter.increase
    assert job.callable == counter.increase
    with pytest.raises(TypeError):
        job.callable = 'not callable'
    assert job.callable == counter.increase


def test_job_without_callable():
    with pytest.raises(TypeError, match='callable'):
        Job()
    with pytest.raises(TypeError, match='^a job needs a callable, not 42$'):
        Job(42)
    with pytest.raises(TypeError, match='callable'):
        Job('multiply', 2)


class NoOffset(datetime.tzinfo):
    """A tzinfo that does not know its offset: datetimes with it are naive."""

    def utcoffset(self, dt):
        return None

    def dst(self, dt):
        return None

    def tzname(self, dt):
        return None


def test_begin_after():
    job = Job(multiply, 2, 3)
    assert job.begin_after is None
    with pytest.raises(ValueError, match='^cannot use timezone-naive values$'):
        job.begin_after = datetime.datetime(2030, 1, 1)
    with pytest.raises(ValueError, match='^cannot use timezone-naive values$'):
        job.begin_after = datetime.datetime(2030, 1, 1, tzinfo=NoOffset())
    assert job.begin_after is None
    with pytest.raises(TypeError):
        job.begin_after = datetime.date(2030, 1, 1)
    eastern = pytz.timezone('US/Eastern')
    job.begin_after = eastern.localize(datetime.datetime(2030, 1, 1, 7))
    assert job.begin_after == datetime.datetime(2030, 1, 1, 12,
                                                tzinfo=pytz.UTC)
    assert job.begin_after.tzinfo is pytz.UTC
    job.begin_after = None
    assert job.begin_after is None
    job.parent = StubQueue()
    with pytest.raises(BadStatusError,
                       match='^can only set begin_after when a job has NEW '
                             'status$'):
        job.begin_after = utils.now()


def test_begin_by():
    job = Job(multiply, 2, 3)
    assert job.begin_by is None
    with pytest.raises(ValueError, match='^negative values are not allowed$'):
        job.begin_by = datetime.timedelta(seconds=-1)
    assert job.begin_by is None
    job.begin_by = datetime.timedelta(0)
    job.begin_by = datetime.timedelta(hours=1)
    assert job.begin_by == datetime.timedelta(hours=1)
    with pytest.raises(TypeError):
        job.begin_by = 3600
    job.parent = StubQueue()        # PENDING is still fine
    job.begin_by = None
    assert job.begin_by is None
    job.parent = StubAgent()
    with pytest.raises(BadStatusError,
                       match='^can only set begin_by when a job has NEW or '
                             'PENDING status$'):
        job.begin_by = datetime.timedelta(hours=1)


def test_quota_names():
    job = Job(multiply, 2, 3)
    assert job.quota_names == ()
    job.quota_names = ['content catalog', 'mail']
    assert job.quota_names == ('content catalog', 'mail')
    job.quota_names = (name for name in ['gen'])
    assert job.quota_names == ('gen',)
    with pytest.raises(TypeError, match='^provide an iterable of names$'):
        job.quota_names = 'content catalog'
    with pytest.raises(TypeError, match='^provide an iterable of names$'):
        job.quota_names = b'content catalog'
    assert job.quota_names == ('gen',)
    job._status = COMPLETED
    with pytest.raises(BadStatusError):
        job.quota_names = ()


# -- repr ----------------------------------------------------------------

def test_repr_before_and_after_storing(conn):
    counter = Counter()
    job = Job(counter.increase, by=2)
    assert repr(job) == (
        '<zc.asynchronous.job.Job (oid ?, db ?) '
        '``%s.Counter (oid ?, db ?) :increase(by=2)``>' % __name__)
    store(conn, 'job', job)
    assert repr(job) == (
        "<zc.asynchronous.job.Job (oid %d, db 'unnamed') "
        "``%s.Counter (oid %d, db 'unnamed') :increase(by=2)``>"
        % (ZODB.utils.u64(job._p_oid), __name__,
           ZODB.utils.u64(counter._p_oid)))


def test_repr_never_raises():
    job = Job(multiply, BadRepr())
    text = repr(job)
    assert isinstance(text, str) and 'Job' in text
    job = Job(multiply, 1, b=BadRepr())
    assert 'Job' in repr(job)
    job = Job(CallableWithBadRepr())
    assert 'Job' in repr(job)


def test_repr_never_loops(conn):
    job = Job(collect)
    job.args.append(job)
    job.args.append([job])
    job.kwargs['me'] = {'again': job}
    text = repr(job)
    assert text.startswith('<zc.asynchronous.job.Job (oid ?, db ?) '
                           '``%s.collect(zc.asynchronous.job.Job '
                           '(oid ?, db ?), [' % __name__)
    assert len(text) < 2000
    store(conn, 'job', job)
    assert len(repr(job)) < 2000


# -- transaction managers ------------------------------------------------

class Spy:
    """A synchronizer that records every transaction it hears about."""

    def __init__(self):
        self.seen = []

    def beforeCompletion(self, txn):
        self.seen.append(('before', txn))

    def afterCompletion(self, txn):
        self.seen.append(('after', txn))

    def newTransaction(self, txn):
        self.seen.append(('new', txn))


def test_job_uses_its_connections_transaction_manager(conn, other):
    counter = store(conn, 'counter', Counter())
    job = store(conn, 'job', Job(counter.increase))
    callback = job.addCallback(Job(multiply, 10))
    conn.transaction_manager.commit()
    spy = Spy()
    transaction.manager.registerSynch(spy)
    try:
        assert job() == 1
        assert callback.result == 10
        job2 = store(conn, 'job2', Job(multiply, 1, None))
        job2()
        job2.addCallback(record)
        job3 = store(conn, 'job3', Job(multiply, 1, 1))
        job3.fail()
    finally:
        transaction.manager.unregisterSynch(spy)
    assert spy.seen == []
    assert reload(other, 'counter').value == 1
    assert reload(other, 'job').status == COMPLETED
    assert other.root()['job'].callbacks[0].result == 10


def test_stored_job_runs_without_registered_adapters():
    # No configure.base() here: the registry is empty.
    db = ZODB.MappingStorage.DB()
    try:
        conn = db.open(transaction_manager=transaction.TransactionManager())
        job = store(conn, 'job', Job(multiply, 6, 7))
        assert job() == 42
        callback = job.addCallback(record)
        assert callback.result == 42
        conn.transaction_manager.abort()
        assert job.status == COMPLETED
        assert len(job.callbacks) == 1
        conn.close()
    finally:
        db.close()


# -- jobs and Deferreds that the call returns ----------------------------

def test_job_returning_a_job_returning_a_job(conn, other):
    innermost = store(conn, 'c', Job(multiply, 6, 7))
    middle = store(conn, 'b', Job(return_it, innermost))
    outer = store(conn, 'a', Job(return_it, middle))
    assert outer() is middle
    assert outer.status == ACTIVE and outer.result is None
    assert middle() is innermost
    assert middle.status == ACTIVE and outer.status == ACTIVE
    assert innermost() == 42
    for job in (innermost, middle, outer):
        assert job.status == COMPLETED
        assert job.result == 42
    assert reload(other, 'a').result == 42


def test_inner_job_failure_reaches_the_outer_job(conn):
    inner = store(conn, 'inner', Job(multiply, 1, None))
    outer = store(conn, 'outer', Job(return_it, inner))
    callback = outer.addCallback(record)
    conn.transaction_manager.commit()
    outer()
    inner()
    assert outer.status == COMPLETED
    assert outer.result.check(TypeError)
    assert callback.result is outer.result


DEFERREDS = {}


def return_deferred(name):
    return DEFERREDS[name]


@pytest.fixture
def deferreds():
    DEFERREDS.clear()
    yield DEFERREDS
    DEFERREDS.clear()


def test_deferred_that_errbacks_gives_a_stored_failure(conn, other,
                                                       deferreds):
    deferred = deferreds['d'] = twisted.internet.defer.Deferred()
    job = store(conn, 'job', Job(return_deferred, 'd'))
    assert job() is deferred
    assert job.status == ACTIVE
    deferred.errback(RuntimeError('reactor said no'))
    conn.transaction_manager.begin()
    assert job.status == COMPLETED
    assert type(job.result) is zc.twist.Failure
    assert job.result.check(RuntimeError)
    assert 'reactor said no' in job.result.getTraceback()
    job2 = reload(other, 'job')
    assert type(job2.result) is zc.twist.Failure
    assert str(job2.result.value) == 'reactor said no'
    # The Deferred's failure was consumed by the job: nothing unhandled.
    results = []
    deferred.addBoth(results.append)
    assert results == [None]


def return_own_job():
    return local.getJob()


def test_a_job_that_returns_itself_fails_instead_of_waiting(conn):
    job = store(conn, 'job', Job(return_own_job))
    result = job()
    assert job.status == COMPLETED
    assert result.check(BadStatusError)
    assert 'cannot wait on itself' in result.getErrorMessage()


def test_a_deferred_result_that_cannot_be_stored_becomes_a_failure(
        conn, deferreds):
    deferred = deferreds['d'] = twisted.internet.defer.Deferred()
    job = store(conn, 'job', Job(return_deferred, 'd'))
    job()
    deferred.callback(threading.Lock())    # fires with an unpicklable value
    conn.transaction_manager.begin()
    assert job.status == COMPLETED          # not ACTIVE for ever
    assert 'pickle' in job.result.getErrorMessage()


def test_deferred_already_fired(conn, deferreds):
    deferreds['d'] = twisted.internet.defer.succeed(42)
    job = store(conn, 'job', Job(return_deferred, 'd'))
    callback = job.addCallback(record)
    conn.transaction_manager.commit()
    job()
    conn.transaction_manager.begin()
    assert job.status == COMPLETED
    assert job.result == 42
    assert callback.result == 42


def test_job_returning_a_completed_job(conn):
    inner = store(conn, 'inner', Job(multiply, 6, 7))
    inner()
    failed = store(conn, 'failed', Job(multiply, 6, None))
    failed()
    for name, expected in (('inner', 42), ('failed', None)):
        outer = store(conn, 'outer', Job(return_it, conn.root()[name]))
        callback = outer.addCallback(record)
        conn.transaction_manager.commit()
        outer()
        assert outer.status == COMPLETED
        if expected is None:
            assert outer.result.check(TypeError)
        else:
            assert outer.result == expected
        assert callback.result is outer.result


def test_annotations_are_stored(conn, other):
    job = store(conn, 'job', Job(multiply, 6, 7))
    job.annotations['progress'] = 'half'
    conn.transaction_manager.commit()
    assert reload(other, 'job').annotations['progress'] == 'half'
