"""Dispatchers in real processes, sharing a database through ZEO.

A ZEO server and two dispatcher processes are started on 127.0.0.1; this
process puts the jobs and reads the side effects back.  Every process is
killed by its pid at the end, whatever happens.
"""
import time

import pytest
import transaction
import ZEO.ClientStorage
import ZODB

import zc.asynchronous.configure
from zc.asynchronous import interfaces
from zc.asynchronous.job import Job
from zc.asynchronous.queue import getDefaultQueue
from zc.asynchronous.testing import wait_for_result

from support import jobfuncs
from support.processes import Processes, wait_until


@pytest.fixture
def procs(tmp_path):
    processes = Processes(tmp_path)
    yield processes
    processes.stop_all()


@pytest.fixture
def client(procs, configured):
    addr = procs.start_zeo()
    db = ZODB.DB(ZEO.ClientStorage.ClientStorage(addr, wait_timeout=20))
    zc.asynchronous.configure.install_queues(db)
    tm = transaction.TransactionManager()
    conn = db.open(transaction_manager=tm)
    conn.root()['runs'] = jobfuncs.make_runs_tree()
    tm.commit()
    yield addr, db, conn, tm
    tm.abort()
    conn.close()
    db.close()


def _sync(tm):
    tm.begin()


def put(tm, queue, *calls):
    """Put ``Job(*call)`` for each call in one transaction, as an
    application would: retrying the conflicts a concurrent claim causes."""
    for attempt in tm.attempts(10):
        with attempt:
            jobs = [queue.put(Job(*call)) for call in calls]
    return jobs


def test_500_jobs_from_a_third_process_each_run_exactly_once(procs, client):
    addr, db, conn, tm = client
    first = procs.start_dispatcher(addr, 'one')
    second = procs.start_dispatcher(addr, 'two')
    queue = getDefaultQueue(conn)
    jobs = []
    for start in range(0, 500, 50):
        jobs.extend(put(tm, queue, *[(jobfuncs.record, n)
                                     for n in range(start, start + 50)]))

    runs = conn.root()['runs']

    def all_ran():
        _sync(tm)
        return len(runs) == 500
    wait_until(all_ran, 90, 'not every job ran')
    for job in jobs:
        assert wait_for_result(job, 30) == job.args[0]
    assert sorted(runs.keys()) == list(range(500))
    assert all(len(uuids) == 1 for uuids in runs.values())
    # Both processes did some of the work.
    workers = {uuids[0] for uuids in runs.values()}
    assert workers == {first.uuid, second.uuid}
    assert len(queue) == 0


def test_a_killed_dispatchers_job_is_failed_and_the_rest_finish(
        procs, client):
    addr, db, conn, tm = client
    victim = procs.start_dispatcher(addr, 'victim')
    queue = getDefaultQueue(conn)
    for attempt in tm.attempts(10):
        with attempt:
            long_job = queue.put(Job(jobfuncs.long_running, 120))
            long_job.addCallbacks(failure=Job(jobfuncs.note_failure))

    def started():
        _sync(tm)
        return long_job.annotations.get('started')
    assert wait_until(started, 30, 'long job never started') == victim.uuid
    assert long_job.status == interfaces.ACTIVE

    survivor = procs.start_dispatcher(addr, 'survivor')
    rest = put(tm, queue, *[(jobfuncs.record, n) for n in range(20)])
    procs.kill(victim)           # SIGKILL: no chance to clean up
    killed_at = time.monotonic()

    result = wait_for_result(long_job, 60)
    assert isinstance(result.value, interfaces.AbortedError)
    assert 'AbortedError' in conn.root()['failure seen']
    for job in rest:
        wait_for_result(job, 60)
    _sync(tm)
    runs = conn.root()['runs']
    assert sorted(runs.keys()) == list(range(20))
    assert {uuids for uuids in runs.values()} == {(survivor.uuid,)}
    # Detection took about the death interval, not the 120 s of the job.
    assert time.monotonic() - killed_at < 60
    da = queue.dispatchers[__import__('uuid').UUID(victim.uuid)]
    assert not da.activated


def test_a_zeo_disconnect_pauses_the_dispatcher_until_the_server_is_back(
        procs, client):
    addr, db, conn, tm = client
    worker = procs.start_dispatcher(addr, 'worker')
    queue = getDefaultQueue(conn)
    (first,) = put(tm, queue, (jobfuncs.record, 1))
    assert wait_for_result(first, 30) == 1

    procs.kill(procs.zeo)                    # the server goes away
    time.sleep(1)
    assert worker.poll() is None             # the dispatcher lives on
    procs.start_zeo(port=addr[1])            # and comes back on its port
    wait_until(lambda: db.storage.is_connected(), 30, 'client never came back')
    (second,) = put(tm, queue, (jobfuncs.record, 2))
    assert wait_for_result(second, 60) == 2
    assert worker.poll() is None


def test_every_put_wakes_the_dispatcher_in_time(client):
    """A commit wakes the dispatcher as soon as its invalidation arrives,
    while ZEO's I/O thread is still telling the other connections.  A poll
    that synced at that moment saw the database without the new job, and
    the job then waited for the next commit or poll_interval (here 60 s):
    about one put in five did.  Now the poll waits (briefly) until its
    view includes the commit that woke it."""
    import uuid
    addr, db, conn, tm = client
    other = ZODB.DB(ZEO.ClientStorage.ClientStorage(addr, wait_timeout=20))
    dispatcher = zc.asynchronous.configure.start(
        other, poll_interval=60, agent_size=1, uuid=uuid.uuid4())
    try:
        from zc.asynchronous import testing
        testing.wait_for_poll(dispatcher, seconds=20)
        queue = getDefaultQueue(conn)
        for n in range(25):
            job, = put(tm, queue, (jobfuncs.record, n))
            assert wait_for_result(job, seconds=10) == n
    finally:
        dispatcher.stop()
        other.close()
