"""Races on one database: several connections, in threads or interleaved.

Puts must never lose a job, claims must never hand one job to two agents,
and quotas must stay strict.  The deterministic tests interleave two
connections by hand, so they show exactly which writes conflict-resolve
and which conflict; the threaded ones hammer the queue for real.

Conflict resolution needs a storage that does it: FileStorage (and ZEO)
do, MappingStorage does not (every concurrent write to one object
conflicts there, and the retries carry the threaded tests).  So the tests
that show resolution use FileStorage, and the one that shows its absence
uses MappingStorage.
"""
import datetime
import itertools
import operator
import threading
import time
import uuid

import pytest
import pytz
import transaction
import ZODB.POSException

from zc.asynchronous import interfaces, utils
from zc.asynchronous.agent import Agent
from zc.asynchronous.job import Job
from zc.asynchronous.queue import Queue, Queues

UUID1 = uuid.UUID('d10f43dc-ffdf-11dc-abd4-0017f2c49bdd')
UUID2 = uuid.UUID('e10f43dc-ffdf-11dc-abd4-0017f2c49bdd')
JOIN_TIMEOUT = 60
MAX_ATTEMPTS = 500


@pytest.fixture(params=['mapping', 'file'])
def anydb(request):
    return request.getfixturevalue('db' if request.param == 'mapping'
                                   else 'filedb')


def open_conn(db):
    return db.open(transaction_manager=transaction.TransactionManager())


def get_queue(conn):
    return conn.root()[interfaces.KEY]['']


def install(db, dispatchers=()):
    conn = open_conn(db)
    root = conn.root()
    root[interfaces.KEY] = Queues()
    root[interfaces.KEY][''] = queue = Queue()
    for uid in dispatchers:
        da = queue.dispatchers.register(uid)
        da['main'] = Agent(size=100000)
        da.activate()
    conn.transaction_manager.commit()
    conn.close()


def retry(tm, call, counter=None):
    """Run ``call`` and commit, retrying conflicts; return call's result."""
    for attempt in range(MAX_ATTEMPTS):
        try:
            res = call()
            tm.commit()
            return res
        except ZODB.POSException.ConflictError:
            tm.abort()
            if counter is not None:
                counter.append(1)
    raise AssertionError('no commit after %d attempts' % MAX_ATTEMPTS)


def run_threads(targets):
    errors = []

    def wrap(target):
        def run():
            try:
                target()
            except BaseException as e:  # reported below
                errors.append(e)
        return run
    threads = [threading.Thread(target=wrap(t), daemon=True)
               for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_TIMEOUT)
    assert not [t for t in threads if t.is_alive()], 'threads hung'
    assert not errors, errors


# -- interleaved by hand -----------------------------------------------------

class TestInterleaved:

    def test_concurrent_puts_resolve(self, filedb):
        db = filedb
        install(db)
        c1, c2 = open_conn(db), open_conn(db)
        q1, q2 = get_queue(c1), get_queue(c2)
        j1 = q1.put(Job(operator.add, 1, 1))
        j2 = q2.put(Job(operator.add, 2, 2))
        c1.transaction_manager.commit()
        c2.transaction_manager.commit()  # resolved, no ConflictError
        c3 = open_conn(db)
        q3 = get_queue(c3)
        assert len(q3) == 2
        assert sorted(j.args[0] for j in q3) == [1, 2]
        assert {j._p_oid for j in q3} == {j1._p_oid, j2._p_oid}
        for c in (c1, c2, c3):
            c.close()

    def test_concurrent_held_puts_resolve(self, filedb):
        db = filedb
        install(db)
        c1, c2 = open_conn(db), open_conn(db)
        later = utils.now() + datetime.timedelta(hours=1)
        get_queue(c1).put(Job(operator.add, 1), begin_after=later)
        get_queue(c2).put(Job(operator.add, 2), begin_after=later)
        c1.transaction_manager.commit()
        c2.transaction_manager.commit()
        c3 = open_conn(db)
        assert len(get_queue(c3)) == 2 and len(get_queue(c3)._held) == 2
        for c in (c1, c2, c3):
            c.close()

    def test_mapping_storage_does_not_resolve(self, db):
        install(db)
        c1, c2 = open_conn(db), open_conn(db)
        get_queue(c1).put(Job(operator.add, 1))
        get_queue(c2).put(Job(operator.add, 2))
        c1.transaction_manager.commit()
        with pytest.raises(ZODB.POSException.ConflictError):
            c2.transaction_manager.commit()
        c2.transaction_manager.abort()
        retry(c2.transaction_manager,
              lambda: get_queue(c2).put(Job(operator.add, 2)))
        assert len(get_queue(c2)) == 2
        for c in (c1, c2):
            c.close()

    def test_same_job_claimed_twice_conflicts(self, anydb):
        db = anydb
        install(db, [UUID1, UUID2])
        c0 = open_conn(db)
        job = get_queue(c0).put(Job(operator.add, 1, 2))
        get_queue(c0).put(Job(operator.add, 3, 4))
        c0.transaction_manager.commit()
        c1, c2 = open_conn(db), open_conn(db)
        a1 = get_queue(c1).dispatchers[UUID1]['main']
        a2 = get_queue(c2).dispatchers[UUID2]['main']
        first = a1.claimJob()
        second = a2.claimJob()
        assert first._p_oid == second._p_oid == job._p_oid
        c1.transaction_manager.commit()
        with pytest.raises(ZODB.POSException.ConflictError):
            c2.transaction_manager.commit()
        c2.transaction_manager.abort()
        # retried, the second agent gets the other job
        other = a2.claimJob()
        c2.transaction_manager.commit()
        assert other.args[0] == 3
        c0.transaction_manager.begin()
        q = get_queue(c0)
        assert len(q) == 0
        assert [j._p_oid for j in q.dispatchers[UUID1]['main']] == [
            job._p_oid]
        for c in (c0, c1, c2):
            c.close()

    def test_different_jobs_claimed_resolve(self, filedb):
        db = filedb
        install(db, [UUID1, UUID2])
        c0 = open_conn(db)
        get_queue(c0).put(Job(operator.add, 'a'))
        get_queue(c0).put(Job(operator.add, 'b'))
        c0.transaction_manager.commit()
        c1, c2 = open_conn(db), open_conn(db)
        a = get_queue(c1).dispatchers[UUID1]['main']
        b = get_queue(c2).dispatchers[UUID2]['main']
        a.filter = lambda job: job.args[0] == 'a'
        b.filter = lambda job: job.args[0] == 'b'
        assert a.claimJob().args[0] == 'a'
        assert b.claimJob().args[0] == 'b'
        a.filter = b.filter = None
        c1.transaction_manager.commit()
        c2.transaction_manager.commit()
        c0.transaction_manager.begin()
        assert len(get_queue(c0)) == 0
        for c in (c0, c1, c2):
            c.close()

    def test_quota_is_strict_across_connections(self, filedb):
        db = filedb
        install(db, [UUID1, UUID2])
        c0 = open_conn(db)
        q0 = get_queue(c0)
        q0.quotas.create('catalog', 1)
        for name in ('a', 'b'):
            job = Job(operator.add, name)
            job.quota_names = ('catalog',)
            q0.put(job)
        c0.transaction_manager.commit()
        c1, c2 = open_conn(db), open_conn(db)
        a = get_queue(c1).dispatchers[UUID1]['main']
        b = get_queue(c2).dispatchers[UUID2]['main']
        a.filter = lambda job: job.args[0] == 'a'
        b.filter = lambda job: job.args[0] == 'b'
        assert a.claimJob() is not None
        assert b.claimJob() is not None  # each saw a free slot
        a.filter = b.filter = None
        c1.transaction_manager.commit()
        # the queue's buckets would merge; the quota must not
        with pytest.raises(ZODB.POSException.ConflictError):
            c2.transaction_manager.commit()
        c2.transaction_manager.abort()
        assert b.claimJob() is None  # the slot is taken
        c0.transaction_manager.begin()
        assert len(get_queue(c0)) == 1
        assert len(get_queue(c0).quotas['catalog']) == 1
        for c in (c0, c1, c2):
            c.close()

    def test_concurrent_pings_keep_the_latest(self, filedb, monkeypatch):
        db = filedb
        install(db, [UUID1])
        t0 = datetime.datetime(2020, 1, 1, tzinfo=pytz.UTC)
        c1, c2 = open_conn(db), open_conn(db)
        d1 = get_queue(c1).dispatchers
        d2 = get_queue(c2).dispatchers
        d1[UUID1].activated, d2[UUID1].activated  # load both
        monkeypatch.setattr(utils, 'now', lambda: t0 + datetime.timedelta(
            seconds=40))
        d2.ping(UUID1)
        monkeypatch.setattr(utils, 'now', lambda: t0)
        d1.ping(UUID1)
        c2.transaction_manager.commit()
        c1.transaction_manager.commit()  # resolved by zope.minmax
        c3 = open_conn(db)
        assert get_queue(c3).dispatchers[UUID1].last_ping.value == (
            t0 + datetime.timedelta(seconds=40))
        for c in (c1, c2, c3):
            c.close()


# -- threads -----------------------------------------------------------------

def test_four_threads_put_1000_jobs(anydb):
    install(anydb)
    barrier = threading.Barrier(4, timeout=JOIN_TIMEOUT)
    conflicts = []

    def putter(n):
        def run():
            conn = open_conn(anydb)
            tm = conn.transaction_manager
            try:
                queue = get_queue(conn)
                barrier.wait()
                for i in range(250):
                    retry(tm, lambda i=i: queue.put(Job(operator.add, n, i)),
                          conflicts)
            finally:
                tm.abort()
                conn.close()
        return run

    start = time.monotonic()
    run_threads([putter(n) for n in range(4)])
    elapsed = time.monotonic() - start
    conn = open_conn(anydb)
    queue = get_queue(conn)
    jobs = list(queue)
    assert len(queue) == 1000 and len(jobs) == 1000
    assert len(queue._queue) == 1000
    assert sorted(tuple(j.args) for j in jobs) == sorted(
        (n, i) for n in range(4) for i in range(250))
    assert len({j._p_oid for j in jobs}) == 1000
    # the threads really overlapped: their jobs interleave in the queue
    origins = [j.args[0] for j in jobs]
    assert sum(1 for a, b in itertools.pairwise(origins) if a != b) > 3
    # each thread's jobs are still in its put order
    for n in range(4):
        assert [j.args[1] for j in jobs if j.args[0] == n] == list(
            range(250))
    conn.close()
    print('4x250 puts: %.2fs, %d conflicts retried' % (
        elapsed, len(conflicts)))


def test_two_agents_claim_each_job_once(anydb):
    install(anydb, [UUID1, UUID2])
    conn = open_conn(anydb)
    queue = get_queue(conn)
    for i in range(500):
        queue.put(Job(operator.add, i))
    conn.transaction_manager.commit()
    all_oids = {j._p_oid for j in queue}
    conn.close()
    barrier = threading.Barrier(2, timeout=JOIN_TIMEOUT)
    claimed = {UUID1: [], UUID2: []}
    conflicts = []

    def claimer(uid):
        def run():
            conn = open_conn(anydb)
            tm = conn.transaction_manager
            try:
                agent = get_queue(conn).dispatchers[uid]['main']
                barrier.wait()
                while True:
                    job = retry(tm, agent.claimJob, conflicts)
                    if job is None:
                        tm.begin()
                        if not len(get_queue(conn)):
                            break
                        continue
                    claimed[uid].append(job._p_oid)
            finally:
                tm.abort()
                conn.close()
        return run

    run_threads([claimer(UUID1), claimer(UUID2)])
    one, two = set(claimed[UUID1]), set(claimed[UUID2])
    assert len(one) == len(claimed[UUID1])  # no agent got a job twice
    assert not one & two  # no job went to both
    assert one | two == all_oids  # every job was claimed
    conn = open_conn(anydb)
    queue = get_queue(conn)
    assert len(queue) == 0 and list(queue) == []
    for uid in (UUID1, UUID2):
        agent = queue.dispatchers[uid]['main']
        assert [j._p_oid for j in agent] == claimed[uid]
        for job in agent:
            assert job.parent is agent
            assert job.status == interfaces.ASSIGNED
    conn.close()
    print('claims: %d and %d, %d conflicts retried' % (
        len(one), len(two), len(conflicts)))


def test_puts_and_claims_at_once(db):
    install(db, [UUID1, UUID2])
    done_putting = threading.Event()
    claimed = []
    put = []

    def putter(n):
        def run():
            conn = open_conn(db)
            tm = conn.transaction_manager
            try:
                queue = get_queue(conn)
                for i in range(150):
                    job = retry(tm, lambda i=i: queue.put(
                        Job(operator.add, n, i)))
                    put.append(job._p_oid)
            finally:
                tm.abort()
                conn.close()
        return run

    def claimer(uid):
        def run():
            conn = open_conn(db)
            tm = conn.transaction_manager
            deadline = time.monotonic() + JOIN_TIMEOUT
            try:
                agent = get_queue(conn).dispatchers[uid]['main']
                while time.monotonic() < deadline:
                    job = retry(tm, agent.claimJob)
                    if job is not None:
                        claimed.append(job._p_oid)
                        continue
                    if done_putting.is_set():
                        tm.begin()
                        if not len(get_queue(conn)):
                            break
            finally:
                tm.abort()
                conn.close()
        return run

    putters = [putter(0), putter(1)]

    def putters_then_flag():
        run_threads(putters)
        done_putting.set()
    run_threads([putters_then_flag, claimer(UUID1), claimer(UUID2)])
    assert len(put) == 300
    assert sorted(claimed) == sorted(put)
    assert len(set(claimed)) == 300
