"""Queues, Queue, Quotas, Dispatchers and DispatcherAgents (one connection).

The races live in test_queue_concurrency.py and test_queue_zeo.py.
"""
import datetime
import logging
import operator
import os
import subprocess
import sys
import uuid

import persistent
import pytest
import pytz
import zope.component
import zope.interface.verify

from zc.asynchronous import instanceuuid, interfaces
from zc.asynchronous.agent import Agent
from zc.asynchronous.interfaces import (
    ACTIVE, ASSIGNED, CALLBACKS, COMPLETED, NEW, PENDING)
from zc.asynchronous.job import Job
from zc.asynchronous.queue import (
    DispatcherAgents, Queue, Queues, getDefaultQueue)

from conftest import T0  # noqa: E402
UUID1 = uuid.UUID('d10f43dc-ffdf-11dc-abd4-0017f2c49bdd')
UUID2 = uuid.UUID('e10f43dc-ffdf-11dc-abd4-0017f2c49bdd')
UUID3 = uuid.UUID('f10f43dc-ffdf-11dc-abd4-0017f2c49bdd')




def commit(ob):
    ob._p_jar.transaction_manager.commit()


def noop(*args):
    return args


def record(result, log=None):
    if log is not None:
        log.append(result)
    return result


class PersistentCallable(persistent.Persistent):
    def __call__(self):
        return 42


def snapshot(queue):
    """What a failed put must not change."""
    return len(queue), [id(j) for j in queue]


def make_activated(queue, uid=UUID1, size=3):
    da = queue.dispatchers.register(uid)
    da['main'] = Agent(size=size)
    da.activate()
    return da


# -- Queues -----------------------------------------------------------------

class TestQueues:

    def test_only_queues(self, conn):
        qs = conn.root()['zc.async'] = Queues()
        with pytest.raises(ValueError, match='value must be IQueue'):
            qs['x'] = Agent()
        assert len(qs) == 0

    def test_mapping_api_and_detach(self, conn):
        qs = Queues()
        q1, q2, q3 = Queue(), Queue(), Queue()
        qs[''] = q1
        qs['b'] = q2
        assert (q1.name, q1.parent) == ('', qs)
        assert qs.keys() == ['', 'b']
        assert list(qs) == ['', 'b']
        assert qs.values() == [q1, q2]
        assert qs.items() == [('', q1), ('b', q2)]
        assert qs.get('c') is None and qs.get('b') is q2
        assert 'b' in qs and 'c' not in qs and len(qs) == 2
        with pytest.raises(KeyError):
            qs['c']
        qs['b'] = q3  # replacing detaches the old one
        assert (q2.name, q2.parent) == (None, None)
        assert (q3.name, q3.parent) == ('b', qs)
        assert qs.pop('b') is q3
        assert (q3.name, q3.parent) == (None, None)
        assert qs.pop('b', 'default') == 'default'
        with pytest.raises(KeyError):
            qs.pop('b')
        del qs['']
        assert (q1.name, q1.parent) == (None, None)
        assert len(qs) == 0


class TestDefaultQueue:

    def test_adapters(self, queue, conn):
        assert getDefaultQueue(conn) is queue
        job = conn.root()['job'] = Job(noop)
        commit(queue)
        assert getDefaultQueue(job) is queue
        assert interfaces.IQueue(conn) is queue
        assert interfaces.IQueue(job) is queue
        # a queue is its own IQueue
        assert interfaces.IQueue(queue) is queue

    def test_no_adapters_without_configuration(self, conn):
        zope.component.testing.tearDown()
        zope.component.testing.setUp()
        assert interfaces.IQueue(conn, None) is None

    def test_zcml(self, conn):
        import zope.configuration.xmlconfig
        zope.component.testing.tearDown()
        zope.component.testing.setUp()
        import zc.asynchronous
        context = zope.configuration.xmlconfig.file(
            'meta.zcml', package=zope.component)
        zope.configuration.xmlconfig.file(
            'configure.zcml', package=zc.asynchronous, context=context)
        root = conn.root()
        root[interfaces.KEY] = Queues()
        root[interfaces.KEY][''] = queue = Queue()
        root['job'] = job = Job(noop)
        conn.transaction_manager.commit()
        assert interfaces.IQueue(conn) is queue
        assert interfaces.IQueue(job) is queue
        assert interfaces.IJob(noop).callable is noop


# -- put -------------------------------------------------------------------

class TestPut:

    def test_put_a_job(self, queue, clock):
        job = Job(noop)
        assert queue.put(job) is job
        assert job.status == PENDING
        assert job.parent is queue and job.queue is queue
        assert job.begin_after == T0
        assert job.begin_by is None  # 1.5.4's default: no deadline
        assert job._p_jar is queue._p_jar and job._p_oid is not None
        assert len(queue) == 1 and list(queue) == [job] and queue[0] is job
        assert bool(queue)

    def test_put_adapts_callables(self, queue):
        job = queue.put(noop)
        assert interfaces.IJob.providedBy(job) and job.callable is noop
        builtin = queue.put(operator.add)
        assert builtin.callable is operator.add
        pc = queue.put(PersistentCallable())  # wrapped in a Job
        assert isinstance(pc, Job) and isinstance(
            pc.callable, PersistentCallable)
        assert len(queue) == 3
        commit(queue)

    def test_assigner_uuid_always_recorded(self, queue):
        # BUG (1.5.4) fixed: a fresh job used to keep assignerUUID None.
        job = queue.put(Job(noop))
        assert job.assignerUUID == instanceuuid.get_uuid()
        assert job.assignerUUID is not None
        assert os.path.exists(os.environ['ZC_ASYNC_UUID'])

    def test_assigner_uuid_from_utility(self, queue):
        zope.component.provideUtility(UUID2, interfaces.IUUID)
        job = queue.put(Job(noop))
        assert job.assignerUUID == UUID2

    def test_begin_after_converted_to_utc(self, queue, clock):
        eastern = pytz.timezone('US/Eastern')
        when = eastern.localize(datetime.datetime(2006, 8, 10, 9, 0))
        job = queue.put(Job(noop), begin_after=when)
        assert job.begin_after.tzinfo is pytz.UTC
        assert job.begin_after == when
        assert job.begin_after.hour == 13

    def test_begin_by(self, queue):
        job = queue.put(Job(noop), begin_by=datetime.timedelta(minutes=5))
        assert job.begin_by == datetime.timedelta(minutes=5)

    def test_existing_schedule_kept(self, queue, clock):
        job = Job(noop)
        job.begin_after = T0 + datetime.timedelta(hours=1)
        job.begin_by = datetime.timedelta(seconds=10)
        queue.put(job)
        assert job.begin_after == T0 + datetime.timedelta(hours=1)
        assert job.begin_by == datetime.timedelta(seconds=10)

    def test_future_jobs_held_and_ordered(self, queue, clock):
        later = queue.put(Job(noop, 'later'),
                          begin_after=T0 + datetime.timedelta(hours=2))
        soon = queue.put(Job(noop, 'soon'),
                         begin_after=T0 + datetime.timedelta(hours=1))
        now1 = queue.put(Job(noop, 'now1'))
        clock.advance(seconds=1)
        now2 = queue.put(Job(noop, 'now2'))
        # a begin_after in the past goes to the end of the FIFO
        past = queue.put(Job(noop, 'past'),
                         begin_after=T0 - datetime.timedelta(days=1))
        assert list(queue) == [now1, now2, past, soon, later]
        assert len(queue) == 5
        assert [queue[i] for i in range(-5, 5)] == list(queue) * 2
        assert len(queue._held) == 2 and len(queue._queue) == 3

    def test_held_jobs_win_ties(self, queue, clock):
        held = queue.put(Job(noop), begin_after=T0 + datetime.timedelta(1))
        clock.advance(days=1)
        fifo = queue.put(Job(noop))
        assert fifo.begin_after == held.begin_after
        assert list(queue) == [held, fifo]

    def test_getitem_out_of_range(self, queue):
        queue.put(Job(noop))
        for index in (1, -2, 5):
            with pytest.raises(IndexError) as info:
                queue[index]
            assert info.value.args == (index,)


class TestPutBadInput:
    """Each bad put raises a clear error and changes nothing."""

    def check_unchanged(self, queue, before, job=None, job_before=None):
        assert snapshot(queue) == before
        if job is not None:
            assert (job.parent, job.assignerUUID, job.begin_after,
                    job.begin_by) == job_before

    def job_state(self, job):
        return (job.parent, job.assignerUUID, job.begin_after, job.begin_by)

    def test_not_new(self, queue, clock):
        pending = queue.put(Job(noop))
        before = snapshot(queue)
        with pytest.raises(ValueError, match='cannot add already-assigned'):
            queue.put(pending)
        self.check_unchanged(queue, before)
        # assigned (in an agent)
        da = make_activated(queue)
        assigned = da['main'].claimJob()
        assert assigned.status == ASSIGNED
        before = snapshot(queue)
        state = self.job_state(assigned)
        with pytest.raises(ValueError, match='cannot add already-assigned'):
            queue.put(assigned)
        self.check_unchanged(queue, before, assigned, state)
        # completed
        done = Job(noop)
        queue._p_jar.add(done)
        done()
        assert done.status == COMPLETED
        with pytest.raises(ValueError, match='cannot add already-assigned'):
            queue.put(done)
        self.check_unchanged(queue, before)

    def test_callback_refused(self, queue):
        job = queue._p_jar.root()['job'] = Job(noop)
        callback = job.addCallback(Job(record))
        before = snapshot(queue)
        assert callback.status == NEW
        with pytest.raises(ValueError, match='cannot add already-assigned'):
            queue.put(callback)
        self.check_unchanged(queue, before)
        assert callback.parent is job

    def test_naive_datetime(self, queue):
        queue.put(Job(noop))
        before = snapshot(queue)
        job = Job(noop)
        state = self.job_state(job)
        with pytest.raises(ValueError,
                           match='cannot use timezone-naive values'):
            queue.put(job, begin_after=datetime.datetime(2006, 8, 10))
        self.check_unchanged(queue, before, job, state)
        assert job._p_jar is None and job.status == NEW

    def test_negative_begin_by(self, queue, clock):
        queue.put(Job(noop))
        before = snapshot(queue)
        job = Job(noop)
        state = self.job_state(job)
        with pytest.raises(ValueError,
                           match='negative values are not allowed'):
            queue.put(job, begin_after=T0 + datetime.timedelta(hours=1),
                      begin_by=datetime.timedelta(seconds=-1))
        # the begin_after set on the way is rolled back
        self.check_unchanged(queue, before, job, state)
        assert job._p_jar is None

    def test_unknown_quota_name(self, queue):
        queue.quotas.create('known')
        queue.put(Job(noop))
        before = snapshot(queue)
        job = Job(noop)
        job.quota_names = ('known', 'content catalog')
        state = self.job_state(job)
        with pytest.raises(ValueError) as info:
            queue.put(job)
        assert info.value.args == ('unknown quota name', 'content catalog')
        self.check_unchanged(queue, before, job, state)

    def test_not_callable(self, queue):
        queue.put(Job(noop))
        before = snapshot(queue)
        for bad in (42, 'a string', None, persistent.Persistent()):
            with pytest.raises(TypeError, match='callable'):
                queue.put(bad)
            self.check_unchanged(queue, before)

    def test_wrong_types(self, queue):
        before = snapshot(queue)
        with pytest.raises(TypeError):
            queue.put(Job(noop), begin_after='tomorrow')
        with pytest.raises(TypeError):
            queue.put(Job(noop), begin_by=5)
        self.check_unchanged(queue, before)

    def test_queue_not_stored(self):
        queue = Queue()
        job = Job(noop)
        with pytest.raises(ValueError, match='stored in a database'):
            queue.put(job)
        assert len(queue) == 0 and job.parent is None
        assert job.assignerUUID is None


# -- pull, remove, putBack ---------------------------------------------------

class TestTakingOut:

    def test_pull(self, queue, clock):
        jobs = [queue.put(Job(noop, i)) for i in range(3)]
        held = queue.put(Job(noop), begin_after=T0 + datetime.timedelta(1))
        assert queue.pull() is jobs[0]
        assert jobs[0].parent is None and jobs[0].assignerUUID is None
        assert jobs[0].status == NEW
        assert queue.pull(-1) is held
        assert list(queue) == jobs[1:] and len(queue) == 2
        with pytest.raises(IndexError):
            queue.pull(2)
        assert list(queue) == jobs[1:] and len(queue) == 2
        # a pulled job can be put again
        queue.put(jobs[0])
        assert len(queue) == 3

    def test_remove(self, queue, clock):
        jobs = [queue.put(Job(noop, i)) for i in range(3)]
        held = queue.put(Job(noop), begin_after=T0 + datetime.timedelta(1))
        queue.remove(jobs[1])
        queue.remove(held)
        assert list(queue) == [jobs[0], jobs[2]] and len(queue) == 2
        assert jobs[1].parent is None and held.parent is None
        with pytest.raises(LookupError) as info:
            queue.remove(jobs[1])
        assert info.value.args == ('item not in queue', jobs[1])
        assert len(queue) == 2

    def test_put_back_comes_first(self, queue, clock):
        first = queue.put(Job(noop, 1))
        second = queue.put(Job(noop, 2))
        assert queue.claim() is first
        first.parent = None
        queue.putBack(first)
        assert first.status == PENDING and first.parent is queue
        assert list(queue) == [first, second] and len(queue) == 2
        assert queue.claim() is first

    def test_put_back_checks(self, queue, clock):
        before = snapshot(queue)
        with pytest.raises(TypeError):
            queue.putBack(noop)
        with pytest.raises(ValueError, match='begin_after'):
            job = Job(noop)
            queue._p_jar.add(job)
            queue.putBack(job)
        with pytest.raises(ValueError, match='stored in a database'):
            job = Job(noop)
            job.begin_after = T0
            queue.putBack(job)
        pending = queue.put(Job(noop))
        before = snapshot(queue)
        with pytest.raises(ValueError, match='NEW'):
            queue.putBack(pending)
        assert snapshot(queue) == before


# -- claim ---------------------------------------------------------------------

class TestClaim:

    def test_empty(self, queue):
        assert queue.claim() is None
        marker = object()
        assert queue.claim(default=marker) is marker

    def test_in_order(self, queue, clock):
        jobs = [queue.put(Job(noop, i)) for i in range(20)]  # > one bucket
        claimed = [queue.claim() for i in range(20)]
        assert claimed == jobs and len(queue) == 0
        for job in jobs:
            assert job.parent is None
        assert queue.claim() is None

    def test_claims_leave_the_put_counter_alone(self, queue):
        """A claim changes the taken counter, a put the put counter: a
        process that only puts has nothing of the claims' to reload (and
        over ZEO each reload is a round trip)."""
        jobs = [queue.put(Job(noop, i)) for i in range(3)]
        commit(queue)
        put_serial = queue._length._p_serial
        taken_serial = queue._taken._p_serial
        assert queue.claim() is jobs[0]
        commit(queue)
        assert queue._length._p_serial == put_serial
        assert queue._taken._p_serial != taken_serial
        assert len(queue) == 2
        taken_serial = queue._taken._p_serial
        queue.put(Job(noop))
        commit(queue)
        assert queue._taken._p_serial == taken_serial
        assert len(queue) == 3

    def test_queues_made_before_the_taken_counter_still_count(self, queue):
        del queue.__dict__['_taken']   # as a queue stored by 2.0.0.dev0
        queue._p_changed = True
        jobs = [queue.put(Job(noop, i)) for i in range(2)]
        assert len(queue) == 2
        assert queue.claim() is jobs[0] and len(queue) == 1
        queue.remove(jobs[1])
        assert len(queue) == 0 and not queue

    def test_future_jobs_wait(self, queue, clock):
        job = queue.put(Job(noop), begin_after=T0 + datetime.timedelta(
            minutes=1))
        assert queue.claim() is None and len(queue) == 1
        clock.advance(minutes=1)
        assert queue.claim() is job and len(queue) == 0

    def test_future_put_back_job_skipped(self, queue, clock):
        job = queue.put(Job(noop))
        queue.claim()
        job.parent = None
        job.begin_after = T0 + datetime.timedelta(hours=1)
        queue.putBack(job)
        other = queue.put(Job(noop))
        assert queue.claim() is other
        clock.advance(hours=1)
        assert queue.claim() is job

    def test_filter(self, queue):
        a = queue.put(Job(noop, 'a'))
        b = queue.put(Job(noop, 'b'))
        assert queue.claim(lambda job: job.args[0] == 'b') is b
        assert queue.claim(lambda job: False) is None
        assert list(queue) == [a]

    def test_overdue_job_is_failed_not_run(self, queue, clock, caplog):
        calls = []
        job = queue.put(Job(noop), begin_by=datetime.timedelta(seconds=10))
        job.addCallback(Job(record, log=calls))
        da = make_activated(queue)
        commit(queue)
        clock.advance(seconds=11)
        with caplog.at_level(logging.WARNING, 'zc.async.events'):
            res = da['main'].claimJob()
        assert 'missed its begin_by deadline' in caplog.text
        assert res is not job and isinstance(res, Job)
        assert res.callable == job.fail
        assert isinstance(res.args[0], interfaces.TimeoutError)
        assert res.begin_after == clock.when
        assert res.assignerUUID == instanceuuid.get_uuid()
        assert res.parent is da['main'] and res._p_jar is queue._p_jar
        assert res.status == ASSIGNED
        assert len(queue) == 0
        # the 1.2 fix: the original no longer thinks it is in the queue (or
        # in an agent); it hangs from its wrapper and still finds the queue
        assert job.parent is res and job.queue is queue
        commit(queue)
        res()
        assert job.status == COMPLETED
        assert job.result.check(interfaces.TimeoutError)
        assert calls and calls[0] is job.result

    def test_filter_sees_the_fail_wrapper(self, queue, clock):
        job = queue.put(Job(noop), begin_by=datetime.timedelta(seconds=1))
        clock.advance(seconds=2)
        seen = []
        assert queue.claim(lambda j: seen.append(j) or False) is None
        assert seen[0] is not job and seen[0].callable == job.fail
        assert job.parent is queue and len(queue) == 1
        wrapper = queue.claim()
        assert wrapper.callable == job.fail
        # like any claimed job, the wrapper comes out NEW, ready to call
        assert wrapper.parent is None and wrapper.status == NEW
        assert job.parent is wrapper
        commit(queue)
        wrapper()
        assert job.result.check(interfaces.TimeoutError)

    def test_not_overdue_at_the_deadline(self, queue, clock):
        job = queue.put(Job(noop), begin_by=datetime.timedelta(seconds=10))
        clock.advance(seconds=10)
        assert queue.claim() is job


# -- quotas ----------------------------------------------------------------

class TestQuotas:

    def test_create_remove(self, queue):
        quota = queue.quotas.create('db')
        assert quota.size == 1 and quota.name == 'db'
        assert quota.parent is queue.quotas
        assert queue.quotas.parent is queue
        assert queue.quotas['db'] is quota and list(queue.quotas) == ['db']
        with pytest.raises(ValueError, match='already in use'):
            queue.quotas.create('db', 5)
        assert queue.quotas['db'] is quota and quota.size == 1
        big = queue.quotas.create('big', 3)
        assert big.size == 3 and len(queue.quotas) == 2
        assert queue.quotas.remove('db') is quota and quota.parent is None
        with pytest.raises(KeyError):
            queue.quotas.remove('db')
        # no mapping mutators
        for name in ('__setitem__', '__delitem__', 'update', 'pop'):
            assert not hasattr(queue.quotas, name)

    def test_quota_add_errors(self, queue):
        quota = queue.quotas.create('q')
        with pytest.raises(ValueError, match='must be IJob'):
            quota.add(object())
        with pytest.raises(ValueError, match='quota name must be in'):
            quota.add(Job(noop))
        j1, j2 = Job(noop), Job(noop)
        j1.quota_names = j2.quota_names = ('q',)
        quota.add(j1)
        quota.add(j1)  # already there: nothing happens
        assert len(quota) == 1 and quota.filled and j1 in quota
        with pytest.raises(ValueError, match='Quota is filled'):
            quota.add(j2)
        assert list(quota) == [j1] and quota[0] is j1
        assert quota.get(5) is None
        zope.interface.verify.verifyObject(interfaces.IQuota, quota)

    def test_quota_serializes(self, queue, clock):
        queue.quotas.create('q')
        jobs = []
        for i in range(3):
            job = Job(noop, i)
            job.quota_names = ('q',)
            jobs.append(queue.put(job))
        free = queue.put(Job(noop, 'free'))
        da = make_activated(queue)
        agent = da['main']
        assert agent.claimJob() is jobs[0]
        assert agent.claimJob() is free  # jobs[1] waits for the quota
        assert agent.claimJob() is None
        assert list(queue.quotas['q']) == [jobs[0]]
        commit(queue)
        jobs[0]()  # completes and leaves the agent
        assert jobs[0].status == COMPLETED
        assert agent.claimJob() is jobs[1]  # clean() freed the slot
        assert list(queue.quotas['q']) == [jobs[1]]

    def test_clean(self, queue, clock):
        quota = queue.quotas.create('q', 10)
        jobs = {}
        for name in ('assigned', 'active', 'callbacks', 'completed',
                     'rescheduled', 'due', 'claimed'):
            job = Job(noop, name)
            job.quota_names = ('q',)
            queue._p_jar.add(job)
            jobs[name] = job
            quota.add(job)
        agent = Agent()
        jobs['assigned'].parent = agent
        jobs['active']._status = ACTIVE
        jobs['callbacks']._status = CALLBACKS
        jobs['completed']._status = COMPLETED
        queue.put(jobs['rescheduled'],
                  begin_after=T0 + datetime.timedelta(1))
        queue.put(jobs['due'])
        before = quota._p_serial
        commit(queue)
        quota.clean()
        assert [job.args[0] for job in quota] == [
            'assigned', 'active', 'due', 'claimed']
        commit(queue)
        after = quota._p_serial
        assert after != before
        quota.clean()  # nothing to remove: no write
        assert not quota._p_changed

    def test_removed_quota_name_ignored(self, queue):
        queue.quotas.create('gone')
        job = Job(noop)
        job.quota_names = ('gone',)
        queue.put(job)
        queue.quotas.remove('gone')
        assert queue.claim() is job

    def test_put_back_job_keeps_its_slot(self, queue):
        quota = queue.quotas.create('q')
        a, b = Job(noop, 'a'), Job(noop, 'b')
        a.quota_names = b.quota_names = ('q',)
        queue.put(a)
        queue.put(b)
        da = make_activated(queue)
        agent = da['main']
        assert agent.claimJob() is a
        agent.pull()  # say the dispatcher could not start it
        queue.putBack(a)
        assert a in quota and quota.filled
        # a is NEW only between the pull and the putBack; now PENDING and due
        assert agent.claimJob() is a
        assert agent.claimJob() is None  # b still waits

    def test_lowering_size(self, queue):
        quota = queue.quotas.create('q', 2)
        a, b, c = (Job(noop, n) for n in 'abc')
        for job in (a, b, c):
            job.quota_names = ('q',)
            queue.put(job)
        da = make_activated(queue)
        agent = da['main']
        assert agent.claimJob() is a and agent.claimJob() is b
        quota.size = 1
        assert list(quota) == [a, b]  # running jobs are not affected
        assert agent.claimJob() is None


# -- Dispatchers / DispatcherAgents ------------------------------------------

class Events:
    def __init__(self):
        self.events = []
        zope.component.provideHandler(self.handle, (interfaces.IObjectEvent,))

    def handle(self, event):
        self.events.append(event)

    def kinds(self):
        return [type(e).__name__ for e in self.events]


class TestDispatchers:

    def test_register(self, queue):
        events = Events()
        da = queue.dispatchers.register(UUID1)
        assert isinstance(da, DispatcherAgents)
        assert da.UUID == UUID1 and da.parent is queue and da.name == UUID1
        assert queue.dispatchers[UUID1] is da
        assert queue.dispatchers[str(UUID1)] is da  # strings are parsed
        assert events.kinds() == ['DispatcherRegistered']
        assert events.events[0].object is da
        assert da.activated is None and da.last_ping.value is None
        assert da.ping_interval == datetime.timedelta(seconds=30)
        assert da.ping_death_interval == datetime.timedelta(seconds=60)
        zope.interface.verify.verifyObject(interfaces.IDispatchers,
                                           queue.dispatchers)
        zope.interface.verify.verifyObject(interfaces.IDispatcherAgents, da)
        commit(queue)

    def test_register_twice(self, queue):
        da = queue.dispatchers.register(UUID1)
        before = (queue.dispatchers.items(), snapshot(queue))
        with pytest.raises(ValueError, match='UUID already registered'):
            queue.dispatchers.register(UUID1)
        with pytest.raises(ValueError, match='UUID already registered'):
            queue.dispatchers.register(str(UUID1))
        assert (queue.dispatchers.items(), snapshot(queue)) == before
        assert queue.dispatchers[UUID1] is da
        with pytest.raises(TypeError):
            queue.dispatchers.register(12)

    def test_mapping_api(self, queue):
        d1 = queue.dispatchers.register(UUID2)
        d2 = queue.dispatchers.register(UUID1)
        ds = queue.dispatchers
        assert ds.keys() == [UUID1, UUID2] and list(ds) == [UUID1, UUID2]
        assert ds.values() == [d2, d1] and len(ds) == 2
        assert ds.items() == [(UUID1, d2), (UUID2, d1)]
        assert ds.get(UUID3) is None and ds.get(UUID1) is d2
        assert UUID1 in ds and UUID3 not in ds and 'nonsense' not in ds
        with pytest.raises(KeyError):
            ds[UUID3]
        with pytest.raises(KeyError):
            ds['nonsense']
        assert ds.get('nonsense', 'x') == 'x' and ds.get(str(UUID1)) is d2
        for name in ('__setitem__', '__delitem__', 'pop', 'update'):
            assert not hasattr(ds, name)

    def test_unregister(self, queue):
        # BUG fixed: the event was built with two arguments (TypeError).
        da = queue.dispatchers.register(UUID1)
        da.activate()
        events = Events()
        with pytest.raises(ValueError, match='UUID is activated.'):
            queue.dispatchers.unregister(UUID1)
        assert queue.dispatchers[UUID1] is da
        da.deactivate()
        assert queue.dispatchers.unregister(UUID1) is da
        assert da.parent is None and da.name is None
        assert UUID1 not in queue.dispatchers
        assert events.kinds() == ['DispatcherDeactivated',
                                  'DispatcherUnregistered']
        assert events.events[-1].object is da
        with pytest.raises(KeyError):
            queue.dispatchers.unregister(UUID1)

    def test_ping(self, queue, clock):
        da = make_activated(queue)
        queue.dispatchers.ping(UUID1)
        assert da.last_ping.value == T0
        clock.advance(seconds=29)
        queue.dispatchers.ping(UUID1)
        assert da.last_ping.value == T0  # writes are rare
        clock.advance(seconds=1)
        queue.dispatchers.ping(UUID1)
        assert da.last_ping.value == T0 + datetime.timedelta(seconds=30)
        with pytest.raises(KeyError):
            queue.dispatchers.ping(UUID2)

    def test_ping_does_not_rewrite_the_collection(self, queue, clock):
        da = make_activated(queue)
        commit(queue)
        queue.dispatchers.ping(UUID1)
        assert da.last_ping._p_changed
        assert not da._p_changed

    def test_ping_when_deactivated_reactivates(self, queue, clock, caplog):
        da = make_activated(queue)
        da.deactivate()
        events = Events()
        with caplog.at_level(logging.CRITICAL, 'zc.async.events'):
            queue.dispatchers.ping(UUID1)
        assert 'not activated prior to ping' in caplog.text
        assert "ping_death_interval is set too short" in caplog.text
        assert da.activated == T0
        assert events.kinds() == ['DispatcherReactivated']

    def test_dead(self, queue, clock):
        da = queue.dispatchers.register(UUID1)
        assert not da.dead  # neither activated nor pinged
        da.activate()
        clock.advance(seconds=60)
        assert not da.dead
        clock.advance(seconds=1)
        assert da.dead
        queue.dispatchers.ping(UUID1)
        assert not da.dead
        clock.advance(seconds=61)
        assert da.dead
        da.ping_death_interval = datetime.timedelta(seconds=120)
        assert not da.dead
        # a later activation counts over an older ping
        da.deactivate()
        da.activate()
        clock.advance(seconds=100)
        assert not da.dead

    def test_sibling_death_check(self, queue, clock):
        das = {u: make_activated(queue, u) for u in (UUID1, UUID2, UUID3)}
        clock.advance(seconds=61)
        # UUID1 pings: its next activated sibling, UUID2, is dead
        queue.dispatchers.ping(UUID1)
        assert das[UUID2].activated is None
        assert das[UUID3].activated is not None
        # UUID1 again: now the next activated one is UUID3
        queue.dispatchers.ping(UUID1)
        assert das[UUID3].activated is None
        # wrapping around: UUID3 (reactivated by its ping) checks UUID1,
        # which is alive
        queue.dispatchers.ping(UUID3)
        assert das[UUID1].activated is not None
        clock.advance(seconds=61)
        queue.dispatchers.ping(UUID3)
        assert das[UUID1].activated is None

    def test_agents_mapping(self, queue):
        da = queue.dispatchers.register(UUID1)
        with pytest.raises(ValueError, match='value must be IAgent'):
            da['main'] = Queue()
        agent = Agent()
        da['main'] = agent
        assert agent.name == 'main' and agent.parent is da
        assert agent.queue is queue
        assert da.keys() == ['main'] and da['main'] is agent
        other = Agent()
        da['main'] = other  # an empty agent can be replaced
        assert agent.parent is None and agent.name is None
        assert da.pop('main') is other and other.parent is None
        assert da.pop('main', None) is None
        da['main'] = agent
        del da['main']
        assert len(da) == 0

    def test_agent_with_active_jobs(self, queue, clock):
        da = make_activated(queue)
        queue.put(Job(noop))
        queue.put(Job(noop))
        assert da['main'].claimJob() is not None
        busy = Agent()
        busy._data.put(queue.claim())  # an agent holding a job
        before = (da.items(), snapshot(queue), list(da['main']))
        with pytest.raises(ValueError,
                           match='cannot add an agent with active jobs'):
            da['other'] = busy
        with pytest.raises(ValueError,
                           match='cannot remove an agent with active jobs'):
            da['main'] = Agent()
        with pytest.raises(ValueError,
                           match='cannot remove an agent with active jobs'):
            da.pop('main')
        with pytest.raises(ValueError,
                           match='cannot remove an agent with active jobs'):
            del da['main']
        assert (da.items(), snapshot(queue), list(da['main'])) == before
        assert busy.parent is None

    def test_activate_deactivate(self, queue, clock):
        da = queue.dispatchers.register(UUID1)
        events = Events()
        da.activate()
        assert da.activated == T0
        with pytest.raises(ValueError, match='Already activated'):
            da.activate()
        da.deactivate()
        assert da.activated is None
        with pytest.raises(ValueError, match='Not activated'):
            da.deactivate()
        assert events.kinds() == ['DispatcherActivated',
                                  'DispatcherDeactivated']
        da.reactivate()
        assert da.activated == T0
        assert events.kinds()[-1] == 'DispatcherReactivated'


class TestCleanUp:
    """DECISIONS 3: what happens to a (dead) dispatcher's jobs."""

    def setup_jobs(self, queue):
        da = make_activated(queue, size=10)
        agent = da['main']
        self.calls = []
        jobs = {}
        for name in ('new', 'active', 'callbacks', 'completed'):
            job = Job(noop, name)
            job.addCallback(Job(record, log=self.calls))
            jobs[name] = queue.put(job)
        waiting = queue.put(Job(noop, 'waiting'))
        for i in range(4):
            agent.claimJob()
        commit(queue)
        jobs['active']._status = ACTIVE
        jobs['callbacks']._status = CALLBACKS
        jobs['callbacks']._result = 'the result'
        jobs['completed']._status = COMPLETED
        commit(queue)
        return da, agent, jobs, waiting

    def test_deactivate(self, queue, clock, caplog):
        da, agent, jobs, waiting = self.setup_jobs(queue)
        with caplog.at_level(logging.WARNING, 'zc.async.events'):
            da.deactivate()
        assert 'unexpectedly had to inform agent of completion' in (
            caplog.text)
        assert len(agent) == 0
        # claimed but unstarted: back at the front, keeping its schedule
        assert queue[0] is jobs['new'] and jobs['new'].status == PENDING
        assert jobs['new'].begin_after == T0
        assert queue[1] is waiting
        # ACTIVE and CALLBACKS: wrapper jobs in the queue
        fail, resume = queue[2], queue[3]
        assert len(queue) == 4
        assert fail.callable == jobs['active'].fail
        assert resume.callable == jobs['callbacks'].resumeCallbacks
        assert jobs['active'].parent is fail
        assert jobs['callbacks'].parent is resume
        assert jobs['active'].queue is queue
        # COMPLETED: in completed
        assert list(agent.completed) == [jobs['completed']]
        assert jobs['completed'].parent is agent
        commit(queue)
        # a live dispatcher claims and runs the wrappers
        live = make_activated(queue, UUID2, size=10)['main']
        claimed = [live.claimJob() for i in range(4)]
        assert claimed == [jobs['new'], waiting, fail, resume]
        commit(queue)
        fail()
        assert jobs['active'].status == COMPLETED
        assert jobs['active'].result.check(interfaces.AbortedError)
        resume()
        assert jobs['callbacks'].status == COMPLETED
        assert self.calls[-1] == 'the result'
        assert self.calls[0] is jobs['active'].result

    def test_activate_cleans_first(self, queue, clock):
        da, agent, _, _ = self.setup_jobs(queue)
        da.activated = None  # as after a crash, seen by a new process
        da.activate()
        assert len(agent) == 0 and len(queue) == 4
        assert da.activated == T0

    def test_dead_sibling_cleaned_by_ping(self, queue, clock):
        da, agent, _, _ = self.setup_jobs(queue)
        make_activated(queue, UUID2)
        clock.advance(seconds=30)
        queue.dispatchers.ping(UUID2)
        clock.advance(seconds=31)
        queue.dispatchers.ping(UUID2)  # UUID1 has not pinged: dead
        assert da.activated is None and len(agent) == 0
        assert len(queue) == 4

    def test_odd_status_logged(self, queue, clock, caplog):
        # BUG fixed: 1.5.4 logged through zc.async.log, which does not
        # exist (AttributeError in the middle of the clean-up).
        da = make_activated(queue)
        queue.put(Job(noop))
        job = da['main'].claimJob()

        class Sticky(Agent):
            def pull(self, index=0):  # forgets to reset the parent
                return self._data.pull(index)
        sticky = Sticky()
        sticky._data.put(job)
        da['main']._data.pull()
        job.parent = sticky
        da._data['sticky'] = sticky
        sticky.parent = da
        with caplog.at_level(logging.WARNING, 'zc.async.events'):
            da.deactivate()
        assert 'still reads' in caplog.text
        assert queue[0] is job and job.status == PENDING


# -- instanceuuid --------------------------------------------------------------

class TestInstanceUUID:

    def test_get_uuid_creates_and_caches(self, tmp_path):
        path = tmp_path / 'other.txt'
        value = instanceuuid.get_uuid(str(path))
        assert isinstance(value, uuid.UUID)
        assert interfaces.IUUID.providedBy(value)
        text = path.read_text()
        assert text.splitlines()[0] == str(value)
        assert 'UUID' in text
        assert [p.name for p in tmp_path.iterdir()] == ['other.txt']
        path.unlink()
        assert instanceuuid.get_uuid(str(path)) == value  # cached
        assert not path.exists()

    def test_racing_processes_agree(self, tmp_path):
        path = tmp_path / 'shared.txt'
        code = ('import sys, time; from zc.asynchronous import instanceuuid;'
                'time.sleep(max(0, float(sys.argv[2]) - time.time()));'
                'print(instanceuuid.get_uuid(sys.argv[1]))')
        import time
        start = str(time.time() + 1.0)
        procs = [subprocess.Popen([sys.executable, '-c', code, str(path),
                                   start], stdout=subprocess.PIPE, text=True)
                 for i in range(4)]
        outs = [p.communicate(timeout=60)[0].strip() for p in procs]
        assert len(set(outs)) == 1, outs
        assert path.read_text().splitlines()[0] == outs[0]
        assert [p.name for p in tmp_path.iterdir()] == ['shared.txt']

    def test_reads_existing_file(self, tmp_path):
        path = tmp_path / 'given.txt'
        path.write_text(str(UUID1) + '\nwhatever\n')
        assert instanceuuid.get_uuid(str(path)) == UUID1

    def test_environment_then_cwd(self, tmp_path, monkeypatch):
        assert instanceuuid.get_uuid() == instanceuuid.get_uuid(
            os.environ['ZC_ASYNC_UUID'])
        monkeypatch.delenv('ZC_ASYNC_UUID')
        value = instanceuuid.get_uuid()
        assert (tmp_path / 'uuid.txt').read_text().startswith(str(value))
        assert instanceuuid.UUID == value

    def test_nothing_at_import(self, tmp_path):
        code = ('import zc.asynchronous.queue, zc.asynchronous.agent, '
                'zc.asynchronous.instanceuuid, zc.asynchronous.configure, '
                'zope.component, zc.asynchronous.interfaces as i; '
                'assert zope.component.queryAdapter(1, i.IJob) is None')
        env = dict(os.environ)
        env.pop('ZC_ASYNC_UUID', None)
        subprocess.run([sys.executable, '-c', code], cwd=tmp_path, env=env,
                       check=True, timeout=60)
        assert list(tmp_path.iterdir()) == []


class TestPrefetch:

    def test_asks_for_the_first_jobs_waiting(self, queue, monkeypatch,
                                             clock):
        asked = []
        monkeypatch.setattr(queue._p_jar, 'prefetch',
                            lambda jobs: asked.append(list(jobs)),
                            raising=False)
        jobs = [queue.put(Job(noop, i)) for i in range(20)]  # two buckets
        later = queue.put(Job(noop), begin_after=T0 + datetime.timedelta(
            hours=1))
        commit(queue)
        queue.prefetch(17)
        assert asked == [jobs[:17]]
        queue.prefetch(0)
        assert len(asked) == 1
        queue.prefetch(100)
        assert asked[-1] == jobs and later not in asked[-1]
