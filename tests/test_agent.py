"""Agent, its completed collection, and the 'main' agent subscriber."""
import datetime
import uuid

import pytest
import transaction
import zope.component
import zope.interface.verify

from zc.asynchronous import agent as agent_module
from zc.asynchronous import interfaces, utils
from zc.asynchronous.agent import Agent, CompletedCollection
from zc.asynchronous.interfaces import ASSIGNED, COMPLETED, PENDING
from zc.asynchronous.job import Job

from conftest import T0  # noqa: E402
UUID1 = uuid.UUID('d10f43dc-ffdf-11dc-abd4-0017f2c49bdd')




@pytest.fixture
def da(queue):
    res = queue.dispatchers.register(UUID1)
    res.activate()
    return res


def commit(ob):
    ob._p_jar.transaction_manager.commit()


def noop(*args):
    return args


def only_b(job):
    return job.args and job.args[0] == 'b'


def choose_last(agent):
    queue = agent.queue
    if not len(queue):
        return None
    return queue.pull(-1)


class TestConstruction:

    def test_defaults(self):
        agent = Agent()
        assert agent.size == 3 and agent.chooser is None
        assert agent.filter is None and agent.name is None
        assert agent.parent is None and agent.queue is None
        assert len(agent) == 0 and not agent and list(agent) == []
        assert interfaces.IFilterAgent.providedBy(agent)
        assert interfaces.IAgent.providedBy(agent)
        assert isinstance(agent.completed, CompletedCollection)
        assert agent.completed.__parent__ is agent
        zope.interface.verify.verifyObject(interfaces.ICompletedCollection,
                                           agent.completed)

    def test_chooser_xor_filter(self):
        with pytest.raises(ValueError, match='cannot set both chooser and'):
            Agent(chooser=choose_last, filter=only_b)
        agent = Agent(chooser=choose_last, size=5)
        assert agent.size == 5
        assert not interfaces.IFilterAgent.providedBy(agent)
        with pytest.raises(ValueError, match='cannot set both chooser and'):
            agent.filter = only_b
        assert agent.filter is None
        agent.chooser = None
        assert interfaces.IFilterAgent.providedBy(agent)
        agent.filter = only_b
        with pytest.raises(ValueError, match='cannot set both chooser and'):
            agent.chooser = choose_last
        assert agent.chooser is None
        assert interfaces.IFilterAgent.providedBy(agent)

    def test_persistence(self, queue, db):
        da = queue.dispatchers.register(UUID1)
        da['filtered'] = Agent(filter=only_b, size=2)
        da['chooser'] = Agent(chooser=choose_last)
        commit(queue)
        other = db.open(transaction_manager=transaction.TransactionManager())
        try:
            agents = other.root()[interfaces.KEY][''].dispatchers[UUID1]
            filtered, chooser = agents['filtered'], agents['chooser']
            assert filtered.filter is only_b and filtered.size == 2
            assert interfaces.IFilterAgent.providedBy(filtered)
            assert chooser.chooser is choose_last
            assert not interfaces.IFilterAgent.providedBy(chooser)
            assert chooser.queue._p_oid == queue._p_oid
        finally:
            other.close()


class TestClaimJob:

    def test_claims_and_holds(self, queue, da):
        da['main'] = agent = Agent()
        job = queue.put(Job(noop))
        assert agent.claimJob() is job
        assert job.parent is agent and job.status == ASSIGNED
        assert job.agent is agent and job.queue is queue
        assert list(agent) == [job] and agent[0] is job and len(agent) == 1
        assert agent.claimJob() is None  # nothing left

    def test_size(self, queue, da):
        da['main'] = agent = Agent(size=2)
        jobs = [queue.put(Job(noop, i)) for i in range(3)]
        assert agent.claimJob() is jobs[0]
        assert agent.claimJob() is jobs[1]
        assert agent.claimJob() is None
        assert len(queue) == 1 and jobs[2].status == PENDING
        agent.size = 3
        assert agent.claimJob() is jobs[2]

    def test_prefetch_claims_beyond_the_size(self, queue, da):
        da['main'] = agent = Agent(size=1, prefetch=2)
        assert Agent().prefetch == 0
        jobs = [queue.put(Job(noop, i)) for i in range(4)]
        assert [agent.claimJob() for _ in range(4)] == jobs[:3] + [None]
        assert len(agent) == 3 and jobs[3].status == PENDING
        # A prefetched job that never started goes back when the
        # dispatcher is deactivated.
        da.deactivate()
        assert len(agent) == 0
        assert all(job.status == PENDING for job in jobs)

    def test_not_without_an_activated_live_dispatcher(self, queue, clock):
        queue.put(Job(noop))
        assert Agent().claimJob() is None  # no parent at all
        da = queue.dispatchers.register(UUID1)
        da['main'] = agent = Agent()
        assert agent.claimJob() is None  # not activated
        da.activate()
        clock.advance(seconds=61)
        assert da.dead
        assert agent.claimJob() is None  # dead
        assert len(queue) == 1
        queue.dispatchers.ping(UUID1)
        assert agent.claimJob() is not None
        assert len(queue) == 0

    def test_filter(self, queue, da):
        da['main'] = agent = Agent(filter=only_b)
        queue.put(Job(noop, 'a'))
        b = queue.put(Job(noop, 'b'))
        assert agent.claimJob() is b
        assert agent.claimJob() is None and len(queue) == 1

    def test_chooser(self, queue, da):
        da['main'] = agent = Agent(chooser=choose_last)
        queue.put(Job(noop, 'a'))
        b = queue.put(Job(noop, 'b'))
        assert agent.claimJob() is b and b.parent is agent

    def test_choose_first(self, queue, da):
        da['main'] = agent = Agent(chooser=agent_module.chooseFirst)
        a = queue.put(Job(noop, 'a'))
        queue.put(Job(noop, 'b'))
        assert agent.claimJob() is a

    def test_subclass_hook(self, queue, da):
        class Picky(Agent):
            def _choose(self):
                return self.queue.claim(only_b)
        da['main'] = agent = Picky()
        queue.put(Job(noop, 'a'))
        b = queue.put(Job(noop, 'b'))
        assert agent.claimJob() is b


class TestHolding:

    def test_index_remove_pull(self, queue, da):
        da['main'] = agent = Agent(size=4)
        jobs = [queue.put(Job(noop, i)) for i in range(4)]
        for i in range(4):
            agent.claimJob()
        assert agent.index(jobs[2]) == 2
        stranger = Job(noop)
        with pytest.raises(ValueError) as info:
            agent.index(stranger)
        assert str(info.value) == '%r not in Agent' % (stranger,)
        with pytest.raises(ValueError):
            agent.remove(stranger)
        agent.remove(jobs[1])
        assert jobs[1].parent is None
        assert agent.pull() is jobs[0] and jobs[0].parent is None
        del agent[-1]
        assert jobs[3].parent is None
        assert list(agent) == [jobs[2]]

    def test_completed_job_moves_to_completed(self, queue, da, clock):
        da['main'] = agent = Agent()
        job = queue.put(Job(noop, 1))
        agent.claimJob()
        commit(queue)
        assert job() == (1,)
        assert job.status == COMPLETED
        assert len(agent) == 0
        assert list(agent.completed) == [job]
        assert job.parent is agent and job.agent is agent
        assert job.key == utils.dt_to_long(T0) + 15
        assert job.initial_callbacks_end == T0

    def test_job_completed(self, queue, da, clock):
        da['main'] = agent = Agent()
        job = queue.put(Job(noop))
        agent.claimJob()
        agent.jobCompleted(job)
        assert len(agent) == 0 and agent.completed.first() is job
        with pytest.raises(ValueError):
            agent.jobCompleted(job)  # not held any more

    def test_a_keyed_job_is_not_written_again(self, queue, da, clock):
        """A dispatcher's worker gives the job its key in its final commit;
        the poll that files the job then leaves the job's record alone."""
        da['main'] = agent = Agent()
        job = queue.put(Job(noop))
        agent.claimJob()
        job.key = utils.dt_to_long(T0) + 15
        commit(queue)
        agent.jobCompleted(job)
        assert not job._p_changed
        assert agent.completed.first() is job and job.parent is agent
        # Two jobs of one instant: the second moves down a slot.
        other = queue.put(Job(noop))
        agent.claimJob()
        other.key = job.key
        commit(queue)
        agent.jobCompleted(other)
        assert other.key == job.key - 1 and other._p_changed


class TestCompleted:

    def make(self, **kw):
        agent = Agent()
        if kw:
            agent.completed = CompletedCollection(agent, **kw)
        return agent, agent.completed

    def test_newest_first_and_bounds(self, clock):
        agent, completed = self.make()
        assert len(completed) == 0 and not completed
        with pytest.raises(ValueError):
            completed.first()
        with pytest.raises(ValueError):
            completed.last()
        jobs = []
        for i in range(5):
            job = Job(noop, i)
            completed.add(job)
            jobs.append(job)
            clock.advance(minutes=1)
        assert list(completed) == jobs[::-1]
        assert len(completed) == 5 and bool(completed)
        assert completed.first() is jobs[-1]
        assert completed.last() is jobs[0]
        at = T0 + datetime.timedelta(minutes=2)
        assert completed.first(at) is jobs[2]
        assert completed.last(at) is jobs[2]
        assert completed.first(at + datetime.timedelta(seconds=30)) is (
            jobs[2])
        assert completed.last(at + datetime.timedelta(seconds=30)) is (
            jobs[3])
        assert list(completed.iter(at, T0)) == jobs[2::-1]
        assert list(completed.iter(stop=at)) == jobs[:1:-1]
        assert list(completed.iter(start=at)) == jobs[2::-1]
        assert list(completed.iter()) == jobs[::-1]
        # int keys work as bounds too
        assert completed.first(jobs[3].key) is jobs[3]
        assert completed.first(jobs[3].key + 1) is jobs[2]
        assert completed.last(jobs[3].key) is jobs[3]
        for job in jobs:
            assert job.parent is agent

    def test_same_instant(self, clock):
        _, completed = self.make()
        jobs = [Job(noop, i) for i in range(16)]
        for job in jobs:
            completed.add(job)
        assert len({job.key for job in jobs}) == 16
        assert list(completed) == jobs[::-1]  # still newest first
        for job in jobs:
            assert job.initial_callbacks_end == T0
        assert list(completed.iter(T0, T0)) == jobs[::-1]

    def test_bounded_by_count(self, clock):
        _, completed = self.make(size=20)
        jobs = []
        for i in range(21):
            job = Job(noop, i)
            completed.add(job)
            jobs.append(job)
            clock.advance(seconds=1)
            assert len(completed) <= 20
        # past 20, the oldest are dropped down to 18 (a tenth of the size)
        assert len(completed) == 18
        assert list(completed) == jobs[:2:-1]
        assert len(list(completed)) == len(completed)

    def test_default_count_bound(self, clock):
        _, completed = self.make()
        assert completed.size == 1000
        for i in range(1001):
            completed.add(Job(noop))
        assert len(completed) == 900

    def test_bounded_by_age(self, clock):
        _, completed = self.make()
        assert completed.period == datetime.timedelta(days=7)
        old = Job(noop, 'old')
        completed.add(old)
        clock.advance(hours=6)
        middle = Job(noop, 'middle')
        completed.add(middle)
        clock.advance(days=6, hours=18)
        completed.add(Job(noop))  # old is exactly 7 days old: kept
        assert len(completed) == 3
        clock.advance(seconds=1)
        recent = Job(noop, 'recent')
        completed.add(recent)
        # old is now too old; middle (6 hours younger, but older than 13/14
        # of the period) goes in the same batch, so that pruning is seldom
        assert old not in list(completed)
        assert middle not in list(completed)
        assert len(completed) == 2 and completed.first() is recent

    def test_needs_a_parent(self):
        completed = CompletedCollection()
        with pytest.raises(ValueError):
            completed.add(Job(noop))


class TestMainAgentSubscriber:

    def test_adds_main(self, queue):
        zope.component.provideHandler(
            agent_module.addMainAgentActivationHandler)
        da = queue.dispatchers.register(UUID1)
        da.activate()
        main = da['main']
        assert isinstance(main, Agent) and main.size == 3
        da.deactivate()
        da.activate()
        assert da['main'] is main  # not replaced
        assert da.keys() == ['main']

    def test_not_without_registration(self, queue):
        da = queue.dispatchers.register(UUID1)
        da.activate()
        assert 'main' not in da
