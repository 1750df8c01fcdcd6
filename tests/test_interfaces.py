"""Every implementation provides its interface, as zope.interface checks."""
import uuid

import pytest
import zope.interface.verify

from zc.asynchronous import interfaces
from zc.asynchronous.agent import Agent
from zc.asynchronous.job import Job
from zc.asynchronous.queue import (
    DispatcherAgents, Dispatchers, Queue, Queues, Quota)


def noop():
    pass


CASES = [
    (interfaces.IJob, lambda: Job(noop)),
    (interfaces.IAgent, Agent),
    (interfaces.IFilterAgent, Agent),
    (interfaces.ICompletedCollection, lambda: Agent().completed),
    (interfaces.IQueue, Queue),
    (interfaces.IQuota, lambda: Quota('serial', 1)),
    (interfaces.IDispatcherAgents, lambda: DispatcherAgents(uuid.uuid4())),
    (interfaces.IDispatchers, Dispatchers),
]


@pytest.mark.parametrize('iface, make', CASES,
                         ids=[iface.__name__ for iface, make in CASES])
def test_implementation_verifies(iface, make):
    assert zope.interface.verify.verifyObject(iface, make())


def test_queues_is_a_mapping_of_queues():
    queues = Queues()
    queues['x'] = Queue()
    assert list(queues) == ['x'] and queues['x'].name == 'x'
    with pytest.raises(ValueError, match='value must be IQueue'):
        queues['y'] = object()
