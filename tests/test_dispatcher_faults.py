"""Commits that raise although they took effect, and other odd corners.

ZEO raises ClientDisconnected when the connection drops after the server
committed but before its answer arrived: the commit took effect, the
client does not know it.  These tests make a commit take effect and then
raise, at each commit a dispatcher makes, and check that no job is lost,
stuck or called twice.
"""
import threading
import time
import uuid

import pytest
from twisted.internet.selectreactor import SelectReactor

import zc.asynchronous.configure
import zc.asynchronous.dispatcher
import zc.asynchronous.job
import zc.twist
from zc.asynchronous import interfaces
from zc.asynchronous.job import Job
from zc.asynchronous.testing import wait_for_result

import dispatched
from support.processes import wait_until

UUID = uuid.UUID('d10f43dc-ffdf-11dc-abd4-0017f2c49bdd')


def put(tm, queue, *calls):
    for attempt in tm.attempts(10):
        with attempt:
            jobs = [queue.put(Job(*call)) for call in calls]
    return jobs


def commit_then_disconnect(tm):
    """Make ``tm``'s next commit take effect, then raise ClientDisconnected.
    """
    real = tm.commit

    def commit():
        tm.commit = real
        real()
        raise zc.twist.ClientDisconnected('the answer to tpc_finish was lost')
    tm.commit = commit


@pytest.fixture
def manual(database):
    """A dispatcher whose reactor never runs: the test polls by hand."""
    made = []

    def make(**options):
        dispatcher = zc.asynchronous.dispatcher.Dispatcher(
            database, reactor=SelectReactor(), uuid=UUID, **options)
        dispatcher.activate()
        made.append(dispatcher)
        return dispatcher
    yield make
    for dispatcher in made:
        for pools in dispatcher.queues.values():
            for pool in pools.values():
                pool.stop()
                for thread in pool.threads:
                    thread.join(5)
        dispatcher.conn.close()
        dispatcher.activated = False


def test_a_claim_marked_active_whose_commit_raised_still_runs(
        manual, session):
    conn, tm, queue = session
    dispatcher = manual(agents={'main': 2})
    dispatcher.poll()                       # joins; two idle threads
    wait_until(lambda: all(t.is_alive() for p in dispatcher.queues[''].values()
                           for t in p.threads), 5, 'no threads')
    (job,) = put(tm, queue, (dispatched.add, 1, 2))
    commit_then_disconnect(dispatcher.conn.transaction_manager)
    dispatcher.poll()                       # claims + ACTIVE, then raises
    tm.begin()
    assert job.status == interfaces.ACTIVE  # it took effect
    dispatcher.poll()                       # notices and hands it out
    assert wait_for_result(job) == 3


def test_a_join_whose_commit_raised_is_adopted(manual, session, caplog):
    conn, tm, queue = session
    dispatcher = manual(agents={'main': 1})
    (job,) = put(tm, queue, (dispatched.add, 1, 2))
    commit_then_disconnect(dispatcher.conn.transaction_manager)
    dispatcher.poll()                       # joins and claims, then raises
    dispatcher.poll()
    assert wait_for_result(job) == 3
    assert not [r for r in caplog.records
                if 'already activated' in r.getMessage()]


def test_a_final_commit_that_raised_loses_no_job(
        database, session, monkeypatch):
    # Job A's last commit (which also starts the prefetched job B) takes
    # effect and raises: A is recorded as completed, B is called once.
    conn, tm, queue = session
    real_handle = Job._handle_result
    flag = threading.local()
    state = {}

    def handle(self, res, tm):
        if self.args and self.args[0] == 'A' and not state:
            state['done'] = flag.on = True
        try:
            real_handle(self, res, tm)
        finally:
            flag.on = False
    monkeypatch.setattr(Job, '_handle_result', handle)
    storage = database.storage
    real_finish = storage.tpc_finish

    def tpc_finish(*args, **kwargs):
        res = real_finish(*args, **kwargs)
        if getattr(flag, 'on', False):
            raise zc.twist.ClientDisconnected('the answer was lost')
        return res
    monkeypatch.setattr(storage, 'tpc_finish', tpc_finish)
    dispatched.calls.clear()
    dispatcher = zc.asynchronous.configure.start(
        database, poll_interval=30, uuid=UUID, agent_size=1, prefetch=2)
    try:
        a, b = put(tm, queue, (dispatched.wait_for_event, 'A', 0.5),
                   (dispatched.count_call, 'B'))
        assert wait_for_result(a) == 'A'
        assert wait_for_result(b) == 'B'
        assert dispatched.calls == {'B': 1}
        agent = queue.dispatchers[UUID]['main']

        def recorded():
            tm.begin()
            return len(agent) == 0 and len(agent.completed) == 2
        dispatcher.reactor.callFromThread(dispatcher._poll_now)
        wait_until(recorded, 10, 'the agent kept a completed job')
    finally:
        dispatcher.stop()


def test_an_agent_of_size_zero_claims_nothing(database, session):
    conn, tm, queue = session
    dispatcher = zc.asynchronous.configure.start(
        database, poll_interval=30, uuid=UUID, agent_size=0, prefetch=2)
    try:
        jobs = put(tm, queue, *[(dispatched.add, n, 1) for n in range(3)])
        dispatcher.reactor.callFromThread(dispatcher._poll_now)
        time.sleep(0.3)
        tm.begin()
        assert [job.status for job in jobs] == [interfaces.PENDING] * 3
    finally:
        dispatcher.stop()


def test_a_job_that_cannot_start_is_not_handed_out_again_and_again(
        manual, session, monkeypatch, caplog):
    conn, tm, queue = session
    attempts = []
    real = zc.asynchronous.dispatcher.Dispatcher._call_job

    def call_job(self, job, tm, started=False):
        if job.args and job.args[0] == 'poison':
            attempts.append(1)
            raise RuntimeError('cannot even start')
        return real(self, job, tm, started)
    monkeypatch.setattr(zc.asynchronous.dispatcher.Dispatcher, '_call_job',
                        call_job)
    # Claims leave jobs ASSIGNED (no thread counts as idle), so the poison
    # job stays ASSIGNED when its start fails.
    monkeypatch.setattr(zc.asynchronous.dispatcher.AgentThreadPool, 'idle',
                        lambda self: 0)
    dispatcher = manual(agents={'main': 1})
    (poison,) = put(tm, queue, (dispatched.counted_sleep, 'poison', 0))
    dispatcher.poll()
    wait_until(lambda: attempts, 5, 'the job was never tried')
    wait_until(lambda: not dispatcher._handed, 5, 'the worker never gave up')
    for _ in range(3):                          # more polls, more chances
        dispatcher.poll()
        time.sleep(0.1)
    assert attempts == [1]
    tm.begin()
    assert poison.status == interfaces.ASSIGNED  # for a restart to retry
    assert [r for r in caplog.records if 'left alone' in r.getMessage()]
