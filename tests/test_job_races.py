"""Jobs and concurrent transactions: callbacks added from another connection.

Two connections of one database, each with its own transaction manager,
stand for two worker threads.  T1 (a thread of its own) runs the job; T2
(the test's thread) adds a callback.  The interleavings are forced with
events, never with sleeps, and every wait is bounded, so a broken job
makes a test fail instead of hang.

The rules under test (the race notes of zc.async 1.0):

* race 1: a callback added while the job runs its callbacks is run by T1;
* race 2: a callback committed just before T1 commits COMPLETED is still
  run: ``addCallback`` marks the job changed, so T1's commit conflicts,
  and T1 looks again;
* race 3: if T1 commits COMPLETED first, T2's commit conflicts; T2 retries,
  sees COMPLETED and the callback runs at once, in T2;
* a COMPLETED job stays COMPLETED.
"""
import operator
import threading

import pytest
import transaction
import ZODB.POSException

from zc.asynchronous import interfaces
from zc.asynchronous.interfaces import (
    ACTIVE, CALLBACKS, COMPLETED, NEW, BadStatusError)
from zc.asynchronous.job import Job

#: The bound on every wait, in seconds.
TIMEOUT = 10

#: Events and records shared with the callables below (which must be
#: module-level functions so that the jobs holding them pickle).
HOOKS = {}


@pytest.fixture(autouse=True)
def hooks():
    HOOKS.clear()
    HOOKS.update(
        in_callback=threading.Event(), go_on=threading.Event(),
        t1_completing=threading.Event(), t2_committed=threading.Event(),
        calls=[])
    yield HOOKS
    # Never leave a worker blocked, whatever happened.
    for value in HOOKS.values():
        if isinstance(value, threading.Event):
            value.set()
    HOOKS.clear()


def wait(event):
    assert event.wait(TIMEOUT), 'timed out waiting for the other thread'


def blocking_callback(result):
    """A callback that holds T1 in CALLBACKS until the test says go on."""
    HOOKS['in_callback'].set()
    wait(HOOKS['go_on'])
    return ('first', result)


def record(result):
    """A callback that says which thread ran it."""
    HOOKS['calls'].append(result)
    return (threading.current_thread().name, result)


def counted_add(a, b):
    HOOKS['calls'].append(('call', a, b))
    return a + b


class Worker(threading.Thread):
    """T1: call ``job`` in a thread of its own, keep what happened."""

    def __init__(self, job, *args):
        super().__init__(name='T1', daemon=True)
        self.job = job
        self.args = args
        self.error = None
        self.returned = None

    def run(self):
        try:
            self.returned = self.job(*self.args)
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def finish(self):
        self.join(TIMEOUT)
        assert not self.is_alive(), 'T1 did not finish'
        if self.error is not None:
            raise self.error
        return self.returned


class BeforeCommit:
    """A synchronizer that runs ``hook`` before the first commit for which
    ``condition()`` is true (in the committing thread)."""

    def __init__(self, condition, hook):
        self.condition = condition
        self.hook = hook
        self.fired = 0

    def beforeCompletion(self, txn):
        if not self.fired and self.condition():
            self.fired += 1
            self.hook()

    def afterCompletion(self, txn):
        pass

    def newTransaction(self, txn):
        pass


def open_conn(db):
    return db.open(transaction_manager=transaction.TransactionManager())


@pytest.fixture
def two(db):
    """Two connections (T1's and T2's), closed at the end."""
    conns = [open_conn(db), open_conn(db)]
    yield conns
    for conn in conns:
        conn.transaction_manager.abort()
        conn.close()


def stored_job(conn, job):
    conn.root()['job'] = job
    conn.transaction_manager.commit()
    return job


def in_t2(conn):
    """T2's copy of the job, as last committed."""
    conn.transaction_manager.begin()
    return conn.root()['job']


def test_race1_callback_added_during_callbacks_runs(two):
    c1, c2 = two
    job = stored_job(c1, Job(operator.add, 2, 3))
    first = job.addCallback(blocking_callback)
    c1.transaction_manager.commit()

    t1 = Worker(job)
    t1.start()
    wait(HOOKS['in_callback'])          # T1 is running ``first``

    job2 = in_t2(c2)
    assert job2.status == CALLBACKS
    assert job2.result == 5
    second = job2.addCallback(record)
    c2.transaction_manager.commit()     # no conflict: T1 wrote nothing yet
    HOOKS['go_on'].set()
    t1.finish()

    assert job.status == COMPLETED
    assert first.result == ('first', 5)
    assert len(job.callbacks) == 2
    assert job.callbacks[1].result == ('T1', 5)   # T1 ran T2's callback
    in_t2(c2)
    assert job2.status == COMPLETED
    assert second.status == COMPLETED
    assert second.result == ('T1', 5)


@pytest.mark.parametrize('with_first_callback', [True, False],
                         ids=['in-callbacks', 'no-callbacks'])
def test_race2_callback_committed_just_before_completed(
        two, with_first_callback):
    c1, c2 = two
    job = stored_job(c1, Job(counted_add, 2, 3))
    if with_first_callback:
        job.addCallback(Job(operator.mul, 10))
        c1.transaction_manager.commit()

    def t2_adds_and_commits():
        # Runs in T1, inside T1's commit of COMPLETED, before any data
        # reaches the storage: let T2 add and commit its callback now.
        HOOKS['t1_completing'].set()
        wait(HOOKS['t2_committed'])

    synch = BeforeCommit(lambda: job.status == COMPLETED, t2_adds_and_commits)
    c1.transaction_manager.registerSynch(synch)
    t1 = Worker(job)
    t1.start()
    wait(HOOKS['t1_completing'])

    job2 = in_t2(c2)
    assert job2.status == (CALLBACKS if with_first_callback else ACTIVE)
    second = job2.addCallback(record)
    c2.transaction_manager.commit()     # T2 commits first: no conflict
    HOOKS['t2_committed'].set()
    t1.finish()
    c1.transaction_manager.unregisterSynch(synch)

    assert synch.fired == 1
    assert job.status == COMPLETED
    assert job.result == 5
    in_t2(c2)
    assert job2.status == COMPLETED
    assert second.status == COMPLETED
    # T1's commit conflicted; T1 looked at the callbacks again and ran it.
    assert second.result == ('T1', 5)
    assert HOOKS['calls'].count(5) == 1
    calls = [c for c in HOOKS['calls'] if c != 5]
    if with_first_callback:
        # Only the callbacks' completion conflicted: one call.
        assert calls == [('call', 2, 3)]
        assert job.callbacks[0].result == 50
    else:
        # Result and COMPLETED are one commit; its conflict is a
        # transaction error of the call, which is made again.
        assert calls == [('call', 2, 3), ('call', 2, 3)]


@pytest.mark.parametrize('with_first_callback', [True, False],
                         ids=['in-callbacks', 'no-callbacks'])
def test_race3_completed_first_adder_conflicts_and_retries(
        two, with_first_callback):
    c1, c2 = two
    job = stored_job(c1, Job(operator.add, 2, 3))
    if with_first_callback:
        job.addCallback(Job(operator.mul, 10))
        c1.transaction_manager.commit()

    job2 = in_t2(c2)
    assert job2.status == NEW
    job2.addCallback(record)            # added, not committed yet

    t1 = Worker(job)
    t1.start()
    assert t1.finish() == 5             # T1 commits COMPLETED meanwhile
    assert job.status == COMPLETED

    with pytest.raises(ZODB.POSException.ConflictError) as info:
        c2.transaction_manager.commit()
    assert 'zc.asynchronous.job.Job' in str(info.value)

    # What a careful adder does: abort, add again, until it commits.
    attempts = 1
    c2.transaction_manager.abort()
    for attempts in range(2, 6):
        try:
            assert job2.status == COMPLETED     # the abort synced
            callback = job2.addCallback(record)
            c2.transaction_manager.commit()
        except ZODB.POSException.ConflictError:
            c2.transaction_manager.abort()
        else:
            break
    assert attempts == 2
    # It ran at once, in T2, and committed itself.
    assert callback.status == COMPLETED
    assert callback.result == (threading.current_thread().name, 5)
    assert job2.status == COMPLETED
    assert HOOKS['calls'] == [5]
    c1.transaction_manager.begin()
    assert job.status == COMPLETED
    assert job.callbacks[len(job.callbacks) - 1].result == callback.result


def test_callback_added_while_active_runs(two):
    """T2 adds a callback while T1 is inside the call: T1's completion
    conflicts, the call is made again (a transaction error), and this
    time T1 sees the callback."""
    c1, c2 = two
    job = stored_job(c1, Job(blocking_callback, 'x'))
    t1 = Worker(job)
    t1.start()
    wait(HOOKS['in_callback'])          # T1 is inside the call

    job2 = in_t2(c2)
    assert job2.status == ACTIVE
    callback = job2.addCallback(record)
    c2.transaction_manager.commit()
    HOOKS['go_on'].set()
    assert t1.finish() == ('first', 'x')

    in_t2(c2)
    assert job2.status == COMPLETED
    assert callback.result == ('T1', ('first', 'x'))


def test_status_never_leaves_completed(two):
    c1, c2 = two
    job = stored_job(c1, Job(operator.add, 2, 3))
    t1 = Worker(job)
    t1.start()
    t1.finish()
    job2 = in_t2(c2)
    assert job2.status == COMPLETED

    # Nothing that can be asked of a completed job changes its status.
    with pytest.raises(BadStatusError):
        job2()
    with pytest.raises(BadStatusError):
        job2.fail()
    with pytest.raises(BadStatusError):
        job2.resumeCallbacks()
    with pytest.raises(BadStatusError):
        job2.callable = operator.sub
    c2.transaction_manager.abort()

    failing = job2.addCallback(Job(operator.truediv, 1, 0))
    chained = job2.addCallbacks(record)
    assert interfaces.IFailure.providedBy(failing.result)
    assert chained.result == (threading.current_thread().name, 5)

    # T1 adds one too, from its own thread and connection.
    def t1_adds():
        job.addCallback(record)
    t1 = threading.Thread(target=t1_adds, name='T1')
    c1.transaction_manager.begin()
    t1.start()
    t1.join(TIMEOUT)
    assert not t1.is_alive()

    for conn, ob in ((c1, job), (c2, job2)):
        conn.transaction_manager.begin()
        assert ob.status == COMPLETED
        assert ob.result == 5
        assert len(ob.callbacks) == 3
        assert all(cb.status == COMPLETED for cb in ob.callbacks)
    assert job.callbacks[2].result == ('T1', 5)


def test_concurrent_adders_on_completed_job_merge(filedb):
    """Callbacks added to a COMPLETED job touch only the callbacks queue,
    whose conflicts zc.queue resolves (FileStorage resolves conflicts;
    MappingStorage does not).  Both callbacks run, neither adder fails,
    and the job stays COMPLETED."""
    c1, c2 = open_conn(filedb), open_conn(filedb)
    try:
        job = stored_job(c1, Job(operator.add, 2, 3))
        job()
        job2 = in_t2(c2)
        c1.transaction_manager.begin()
        assert job.status == job2.status == COMPLETED

        t1 = threading.Thread(target=lambda: job.addCallback(record),
                              name='T1')
        t1.start()
        t1.join(TIMEOUT)
        assert not t1.is_alive()
        # T2 has not synced: its queue is the one before T1's addition.
        assert len(job2.callbacks) == 0
        job2.addCallback(record)
        for conn, ob in ((c1, job), (c2, job2)):
            conn.transaction_manager.begin()
            assert ob.status == COMPLETED
            assert sorted(cb.result for cb in ob.callbacks) == sorted([
                (threading.current_thread().name, 5), ('T1', 5)])
    finally:
        for conn in (c1, c2):
            conn.transaction_manager.abort()
            conn.close()
