"""The dispatcher in this process: running, faults, recovery, introspection."""
import datetime
import sys
import time
import types

import pytest

import zc.asynchronous.configure
import zc.asynchronous.dispatcher
import zc.asynchronous.queue
from zc.asynchronous import interfaces
from zc.asynchronous.job import Job
from zc.asynchronous.testing import (
    wait_for_deactivation, wait_for_poll, wait_for_result, wait_for_start)

import dispatched
from support.processes import wait_until

UUID = __import__('uuid').UUID('d10f43dc-ffdf-11dc-abd4-0017f2c49bdd')


@pytest.fixture
def dispatcher(database):
    started = zc.asynchronous.configure.start(
        database, poll_interval=30, uuid=UUID)
    wait_for_poll(started)
    yield started
    started.stop()
    zc.asynchronous.dispatcher.clear()


def put(session, *args, **kwargs):
    """Put a job as an application would: retrying conflicts."""
    conn, tm, queue = session
    for attempt in tm.attempts(10):
        with attempt:
            job = queue.put(Job(*args, **kwargs))
    return job


def test_a_put_job_runs_and_its_result_is_stored(dispatcher, session):
    job = put(session, dispatched.add, 40, 2)
    assert wait_for_result(job) == 42
    assert job.status == interfaces.COMPLETED
    assert job.active_start <= job.active_end
    assert len(session[2]) == 0
    # The job ended in its agent's completed collection.
    agent = session[2].dispatchers[UUID]['main']
    assert job in list(agent.completed)


def test_a_new_job_starts_long_before_the_poll_interval(dispatcher, session):
    # The poll interval is 30 s: only the invalidation wake-up explains
    # a start within a few seconds.
    put_at = time.time()
    job = put(session, dispatched.started_at)
    started = wait_for_result(job, 10)
    assert started - put_at < 5


def test_a_failing_job_keeps_a_failure_and_the_dispatcher_goes_on(
        dispatcher, session):
    job = put(session, dispatched.fail)
    failure = wait_for_result(job)
    assert isinstance(failure, zc.twist.Failure)
    assert 'this job fails' in failure.getTraceback()
    assert wait_for_result(put(session, dispatched.add, 1, 1)) == 2
    info = dispatcher.getJobInfo(*zc.asynchronous.dispatcher.getId(job))
    assert info['failed'] and 'RuntimeError' in info['result']


def test_a_callable_that_cannot_be_imported_fails_clearly(
        database, session):
    conn, tm, queue = session
    module = types.ModuleType('vanishing')
    exec('def work():\n    return 1\n', module.__dict__)
    sys.modules['vanishing'] = module
    try:
        job = queue.put(Job(module.work))
        tm.commit()
    finally:
        del sys.modules['vanishing']
    # The dispatcher's connections load the job without its module.
    dispatcher = zc.asynchronous.configure.start(
        database, poll_interval=30, uuid=UUID)
    try:
        failure = wait_for_result(job)
        assert isinstance(failure.value, ImportError), failure
        assert 'vanishing.work' in str(failure.value)
        assert wait_for_result(put(session, dispatched.add, 2, 2)) == 4
    finally:
        dispatcher.stop()


def test_an_unpicklable_result_becomes_a_failure(dispatcher, session):
    job = put(session, dispatched.unpicklable)
    failure = wait_for_result(job)
    assert isinstance(failure, zc.twist.Failure)
    assert 'pickle' in failure.getErrorMessage()
    assert wait_for_result(put(session, dispatched.add, 3, 3)) == 6


def test_a_job_knows_its_dispatcher_and_agent(dispatcher, session):
    assert wait_for_result(put(session, dispatched.whoami)) == (
        True, True, 'main')


def test_live_annotations_are_seen_by_others_at_once(dispatcher, session):
    value, seen_locally, read_back = wait_for_result(
        put(session, dispatched.report_progress))
    assert (value, seen_locally, read_back) == ('halfway', False, 'halfway')


def test_introspection(dispatcher, session):
    jobs = [put(session, dispatched.add, n, n) for n in range(5)]
    for job in jobs:
        wait_for_result(job)
    # A worker records its bookkeeping just after the job's last commit.
    wait_until(lambda: dispatcher.getStatistics()['successful'] == 5, 10,
               'the history never showed five successes')
    stats = dispatcher.getStatistics()
    assert stats['started'] == 5 == stats['successful']
    assert stats['failed'] == 0
    status = dispatcher.getStatusInfo()
    assert status['status'] == dispatcher.RUNNING
    assert status['uuid'] == UUID
    assert dispatcher.getActiveJobIds() == []
    event = dispatched.events.setdefault('hold', __import__(
        'threading').Event())
    held = put(session, dispatched.wait_for_event, 'hold')
    wait_for_start(held)
    # ACTIVE may be committed (by the claim, for an idle thread) a moment
    # before the thread holds the job.
    wait_until(lambda: dispatcher.getActiveJobIds() == [
        zc.asynchronous.dispatcher.getId(held)], 10,
        'the worker never showed the held job')
    event.set()
    assert wait_for_result(held) == 'hold'
    assert dispatcher.getPollInfo().key == dispatcher.polls[0].key
    assert len(dispatcher.polls) <= dispatcher.polls.maxlen


def test_stopping_deactivates_and_is_harmless_twice(database, session):
    dispatcher = zc.asynchronous.configure.start(
        database, poll_interval=30, uuid=UUID)
    try:
        wait_for_poll(dispatcher)
        session[1].begin()
        da = session[2].dispatchers[UUID]
        assert da.activated
    finally:
        dispatcher.stop()
    wait_for_deactivation(dispatcher)
    dispatcher.stop()
    session[1].begin()
    assert not da.activated
    assert zc.asynchronous.dispatcher.get(UUID) is None
    # Jobs put now wait: nothing runs them.
    job = put(session, dispatched.add, 1, 2)
    time.sleep(0.3)
    session[1].begin()
    assert job.status == interfaces.PENDING


def test_one_uuid_one_dispatcher(dispatcher, database):
    with pytest.raises(ValueError, match='already registered'):
        zc.asynchronous.dispatcher.Dispatcher(database, uuid=UUID)


def test_a_restarted_dispatcher_cleans_up_its_previous_life(
        database, session):
    conn, tm, queue = session
    # The previous life: activated, claimed two jobs, started one, died.
    da = queue.dispatchers.register(UUID)
    from zc.asynchronous.agent import Agent
    da['main'] = Agent()
    da.activate()
    tm.commit()
    claimed = queue.put(Job(dispatched.add, 5, 5))
    running = queue.put(Job(dispatched.add, 6, 6))
    tm.commit()
    assert da['main'].claimJob() is claimed
    assert da['main'].claimJob() is running
    running._status = interfaces.ACTIVE
    long_ago = datetime.datetime.now(datetime.timezone.utc) - (
        datetime.timedelta(hours=1))
    da.activated = long_ago
    da.last_ping.value = long_ago
    tm.commit()
    assert da.dead

    dispatcher = zc.asynchronous.configure.start(
        database, poll_interval=30, uuid=UUID)
    try:
        assert wait_for_result(claimed) == 10           # put back and run
        failure = wait_for_result(running)              # failed, not rerun
        assert isinstance(failure.value, interfaces.AbortedError)
    finally:
        dispatcher.stop()


@pytest.mark.parametrize('size, prefetch', [(3, 0), (1, 3)])
def test_under_load_every_job_is_called_exactly_once(
        database, session, size, prefetch, caplog):
    # Workers complete jobs while the poll claims more: if the two wrote
    # the same objects, conflicts would make jobs run their call again.
    # With prefetch, a worker also starts its next job in the commit that
    # completes the last one.
    dispatcher = zc.asynchronous.configure.start(
        database, poll_interval=30, uuid=UUID, agent_size=size,
        prefetch=prefetch)
    dispatched.calls.clear()
    conn, tm, queue = session
    for attempt in tm.attempts(10):
        with attempt:
            jobs = [queue.put(Job(dispatched.count_call, n))
                    for n in range(300)]
    for job in jobs:
        wait_for_result(job, 30)
    assert dispatched.calls == {n: 1 for n in range(300)}
    agent = queue.dispatchers[UUID]['main']

    def all_recorded():
        tm.begin()
        return len(agent.completed) == 300 and len(agent) == 0
    # The poll moves completed jobs into the agent's record soon after.
    wait_until(all_recorded, 10, 'the agent never recorded every job')
    assert all(job.active_start <= job.active_end for job in jobs)
    if prefetch:
        # Most jobs were started by the commit that completed the one
        # before them.
        assert dispatcher.getStatistics()['handed off'] > 150
    dispatcher.stop()
    # No job was handed to a thread twice.
    assert not [r for r in caplog.records
                if 'already completed' in r.getMessage()]


def test_prefetched_jobs_wait_in_the_pool_and_go_back_on_stop(
        database, session):
    conn, tm, queue = session
    event = dispatched.events.setdefault('prefetch', __import__(
        'threading').Event())
    event.clear()
    dispatcher = zc.asynchronous.configure.start(
        database, poll_interval=30, uuid=UUID, agent_size=1, prefetch=2)
    try:
        for attempt in tm.attempts(10):
            with attempt:
                blocker = queue.put(Job(dispatched.wait_for_event,
                                        'prefetch', 30))
        wait_for_start(blocker)
        for attempt in tm.attempts(10):
            with attempt:
                waiting = [queue.put(Job(dispatched.add, n, 1))
                           for n in range(3)]
        agent = queue.dispatchers[UUID]['main']

        def prefetched():
            tm.begin()
            return len(agent) == 3
        wait_until(prefetched, 10, 'the agent never prefetched two jobs')
        assert [job.status for job in waiting].count(
            interfaces.ASSIGNED) == 2
        stopper = __import__('threading').Timer(0.5, event.set)
        stopper.start()
        dispatcher.stop()          # lets the running job finish
        stopper.join()
    finally:
        event.set()
        dispatcher.stop()
    tm.begin()
    assert blocker.result == 'prefetch'
    # The two claimed but unstarted jobs went back to the queue.
    assert [job.status for job in waiting] == [interfaces.PENDING] * 3
    assert len(queue) == 3


def test_draining_a_pool_keeps_the_jobs_already_marked_active():
    # On stop, jobs no thread took go back to the queue (through the
    # clean-up), but one whose ACTIVE status the claim already committed
    # has started: it stays, to be run.
    pool = zc.asynchronous.dispatcher.AgentThreadPool(
        types.SimpleNamespace(), '', 'main', size=0)
    waiting = (b'\0' * 7 + b'\1', 'unnamed', {})
    started = (b'\0' * 7 + b'\2', 'unnamed', {'active committed': True})
    for item in (waiting, None, started):
        pool.put(item)
    assert pool.drain() == 1
    assert pool.pending() == [started]
    assert pool.idle() == 0


@pytest.mark.parametrize('prefetch, size, low', [
    (16, 1, 1),     # one thread: ask for more when one job is left
    (16, 3, 3),     # a job left for each thread
    (4, 3, 2),      # at most half the prefetch
    (0, 2, 0),      # no prefetch: ask once nothing waits
])
def test_a_pool_asks_for_more_jobs_at_its_low_water_mark(prefetch, size, low):
    pool = zc.asynchronous.dispatcher.AgentThreadPool(
        types.SimpleNamespace(), '', 'main', size=0)
    pool._size = size   # no threads started
    pool.prefetch = prefetch
    assert pool.low_water() == low


# -- found in review: each of these failed before its fix ----------------

def test_a_conflict_in_the_first_poll_still_joins_the_queue(
        database, session):
    # The poll that registers and activates the dispatcher conflicts
    # (another process claims at the same moment) and is retried: the
    # retry must join the queue again, agents and all.
    from twisted.internet.selectreactor import SelectReactor
    conn, tm, queue = session
    for attempt in tm.attempts(10):
        with attempt:
            queue.put(Job(dispatched.add, 1, 1))
            queue.put(Job(dispatched.add, 2, 2))
    dispatcher = zc.asynchronous.dispatcher.Dispatcher(
        database, reactor=SelectReactor(), uuid=UUID)
    dispatcher.activate()          # never runs the reactor: polls by hand
    real = dispatcher._poll_once
    attempts = []

    def poll_once(info):
        res = real(info)
        if not attempts:            # a concurrent claim makes it conflict
            tm.begin()
            queue.claim()
            tm.commit()
        attempts.append(1)
        return res
    dispatcher._poll_once = poll_once
    try:
        dispatcher.poll()
        assert len(attempts) == 2
        tm.begin()
        da = queue.dispatchers[UUID]
        assert da.activated and list(da) == ['main']
        assert len(queue) == 0      # the retry claimed the other job
    finally:
        for pools in dispatcher.queues.values():
            for pool in pools.values():
                pool.stop()
        dispatcher.conn.close()
        zc.asynchronous.dispatcher.clear()


def test_a_job_outliving_the_stop_timeout_is_not_called_twice(
        database, session):
    # stop() gives up on a long job: the clean-up fails it, and the
    # worker's commit then conflicts.  The job must not be called again.
    dispatched.calls.clear()
    conn, tm, queue = session
    dispatcher = zc.asynchronous.configure.start(
        database, poll_interval=30, uuid=UUID, agent_size=1)
    dispatcher.stop_timeout = 0.3
    for attempt in tm.attempts(10):
        with attempt:
            job = queue.put(Job(dispatched.counted_sleep, 'long', 1.5))
    wait_for_start(job)
    dispatcher.stop()
    for pool in dispatcher.dead_pools:
        for thread in pool.threads:
            thread.join(10)
    assert dispatched.calls == {'long': 1}
    tm.begin()
    assert job.status == interfaces.ACTIVE     # left to its failer
    (failer,) = list(queue)
    assert failer.callable == job.fail
    info = dispatcher.getJobInfo(*zc.asynchronous.dispatcher.getId(job))
    assert info['reassigned']


def test_busy_threads_are_not_counted_idle(database, session):
    # Every thread of a pool is busy: new jobs are prefetched, not marked
    # ACTIVE as if a thread were about to run them.
    conn, tm, queue = session
    release = dispatched.events.setdefault('busy', __import__(
        'threading').Event())
    release.clear()
    dispatcher = zc.asynchronous.configure.start(
        database, poll_interval=30, uuid=UUID, agent_size=3, prefetch=2)
    try:
        for attempt in tm.attempts(10):
            with attempt:
                busy = [queue.put(Job(dispatched.wait_for_event, 'busy', 30))
                        for _ in range(3)]
        for job in busy:
            wait_for_start(job)
        wait_until(lambda: len(dispatcher.getActiveJobIds()) == 3, 10,
                   'three threads never showed their jobs')
        names = {t.name for p in dispatcher.queues[''].values()
                 for t in p.threads}
        assert len(names) == 3
        for attempt in tm.attempts(10):
            with attempt:
                late = [queue.put(Job(dispatched.add, n, 1))
                        for n in range(2)]
        agent = queue.dispatchers[UUID]['main']

        def prefetched():
            tm.begin()
            return len(agent) == 5
        wait_until(prefetched, 10, 'the late jobs were never prefetched')
        assert [job.status for job in late] == [interfaces.ASSIGNED] * 2
        assert [p.idle() for p in dispatcher.queues[''].values()] == [0]
        release.set()
        for job in late:
            assert wait_for_result(job, 10) == job.args[0] + 1
    finally:
        release.set()
        dispatcher.stop()


def test_a_stopping_worker_runs_a_handed_job_already_marked_active():
    # A job the claim marked ACTIVE, taken by another thread's hand-off
    # whose own mark failed, has started: stopping must not drop it.
    pool = zc.asynchronous.dispatcher.AgentThreadPool(
        types.SimpleNamespace(_stopping=True), '', 'main', size=0)
    handoff = zc.asynchronous.dispatcher._Handoff(pool)
    started = (b'\0' * 7 + b'\2', 'unnamed', {'active committed': True})
    handoff.item, handoff.taken = started, True
    assert handoff.take() == (started, True)
    unstarted = (b'\0' * 7 + b'\3', 'unnamed', {})
    handoff.item, handoff.taken = unstarted, True
    assert handoff.take() == (None, False)   # left for the clean-up


def test_a_claim_that_committed_without_a_handover_is_run(
        dispatcher, session):
    # A poll's commit that raised (a ZEO disconnect) although it took
    # effect leaves a job ASSIGNED to this dispatcher's agent, known to no
    # thread.  A later poll notices it and hands it out.
    conn, tm, queue = session
    tm.begin()
    agent = queue.dispatchers[UUID]['main']
    dispatcher._wake_pending = True      # keep this put from waking it
    try:
        for attempt in tm.attempts(10):
            with attempt:
                job = queue.put(Job(dispatched.add, 20, 22))
                assert agent.claimJob() is job   # claimed behind its back
    finally:
        dispatcher._wake_pending = False
    assert job.status == interfaces.ASSIGNED
    dispatcher.reactor.callFromThread(dispatcher._poll_now)
    assert wait_for_result(job) == 42


def test_a_poll_prefetches_what_its_claims_and_workers_load(
        database, session):
    """On a ZEO client each load is a round trip: a poll asks for the jobs
    it is about to claim, then for their callbacks queues (what the worker
    loads next), in batches.  (FileStorage cannot prefetch: here it is
    given a prefetch that records what it is asked.)"""
    asked = []
    database.storage.prefetch = lambda oids, tid: asked.append(list(oids))
    conn, tm, queue = session
    jobs = [queue.put(Job(dispatched.add, n, 1)) for n in range(5)]
    tm.commit()
    started = zc.asynchronous.configure.start(
        database, poll_interval=30, uuid=UUID, agent_size=1, prefetch=4)
    try:
        for n, job in enumerate(jobs):
            assert wait_for_result(job) == n + 1
    finally:
        started.stop()
    oids = [job._p_oid for job in jobs]
    assert oids in asked                                   # the claims
    assert [job.callbacks._p_oid for job in jobs] in asked  # the workers


def test_no_prefetch_work_on_storages_that_cannot(database, session,
                                                  monkeypatch):
    asked = []
    monkeypatch.setattr(zc.asynchronous.queue.Queue, 'prefetch',
                        lambda self, count: asked.append(count))
    conn, tm, queue = session
    job = queue.put(Job(dispatched.add, 1, 1))
    tm.commit()
    started = zc.asynchronous.configure.start(
        database, poll_interval=30, uuid=UUID, agent_size=1, prefetch=4)
    try:
        assert wait_for_result(job) == 2
    finally:
        started.stop()
    assert asked == []


@pytest.mark.filterwarnings(
    'ignore::pytest.PytestUnhandledThreadExceptionWarning')
def test_a_worker_thread_killed_by_an_explosive_error_is_replaced(
        database, session, caplog):
    """SystemExit from a job ends its worker thread (explosive errors are
    re-raised, not stored).  The next poll starts a new thread, so the
    jobs claimed after it still run; the job that exploded stays ACTIVE,
    as after a crash, for the next activation's clean-up."""
    started = zc.asynchronous.configure.start(
        database, poll_interval=30, uuid=UUID, agent_size=1, prefetch=1)
    try:
        wait_for_poll(started)
        boom = put(session, dispatched.explode)
        pool = started.queues['']['main']
        wait_until(lambda: not pool.alive(), 10, 'the worker never died')
        job = put(session, dispatched.add, 1, 1)
        assert wait_for_result(job) == 2
        session[1].begin()
        assert boom.status == interfaces.ACTIVE
        assert 'died running job' in caplog.text
    finally:
        started.stop()
