"""Agents: what a dispatcher uses to claim jobs from a queue.

An ``Agent`` lives in a dispatcher's ``DispatcherAgents`` collection
(itself in a queue's ``dispatchers``).  ``claimJob()`` takes a job from the
queue and holds it (the job is then ASSIGNED) until the dispatcher runs
it; when the job completes it moves to the agent's ``completed``
collection, which keeps the recent ones for a while.
"""
import datetime
import logging

import BTrees.Length
import BTrees.LOBTree
import persistent
import zc.queue
import zope.component
import zope.interface

from zc.asynchronous import interfaces, utils

log = logging.getLogger('zc.asynchronous.agent')

#: How many jobs a completed collection keeps, at most.
COMPLETED_SIZE = 1000
#: How long a completed collection keeps a job, at most.
COMPLETED_PERIOD = datetime.timedelta(days=7)


def chooseFirst(agent):
    """The historical default chooser: the first job the queue hands out."""
    return agent.queue.claim()


def _key_bound(value):
    """A completed-collection key for an int key or a datetime."""
    if value is None or isinstance(value, int):
        return value
    return utils.dt_to_long(value)


@zope.interface.implementer(interfaces.ICompletedCollection)
class CompletedCollection(persistent.Persistent):
    """The recently completed jobs of an agent, newest first.

    Jobs are kept in an LOBTree keyed by ``dt_to_long`` of the time they
    were added (smaller keys are newer), so iteration is newest first.  The
    collection is bounded both by count (``size``) and by age
    (``period``); it is pruned when jobs are added.  Pruning works in
    batches (a tenth of ``size``, or a fourteenth of ``period``), so that
    concurrent additions seldom delete the same old entries, which would
    conflict.
    """

    def __init__(self, parent=None, size=COMPLETED_SIZE,
                 period=COMPLETED_PERIOD):
        self.__parent__ = parent
        self.size = size
        self.period = period
        self._data = BTrees.LOBTree.LOBTree()
        self._length = BTrees.Length.Length(0)

    def add(self, job):
        """Keep ``job``; set its ``key`` (its completion time, unless it has
        one) and its parent (the agent)."""
        if self.__parent__ is None:
            raise ValueError('a completed collection needs a __parent__')
        now = utils.now()
        key = job.key
        if key is None:
            key = utils.dt_to_long(now) + 15
        while key in self._data:
            key -= 1
        # Only what changes is set: a dispatcher's worker already gave the
        # job its key in its final commit, and the job, held by this
        # collection's agent, has it as its parent already; then the job
        # is not written again.
        if job.key != key:
            job.key = key
        if job.parent is not self.__parent__:
            job.parent = self.__parent__
        self._data[key] = job
        self._length.change(1)
        self._prune(now)

    def _prune(self, now):
        # Age: once the oldest job is older than ``period``, drop every job
        # older than 13/14 of it, so that this happens about twice a period
        # rather than on every addition.  Older jobs have larger keys.
        try:
            oldest = self._data.maxKey()
        except ValueError:
            return
        # (The four low bits of a key only tell apart jobs of one instant.)
        if oldest > utils.dt_to_long(now - self.period) + 15:
            cutoff = utils.dt_to_long(
                now - self.period + self.period / 14) + 15
            stale = list(self._data.keys(min=cutoff, excludemin=True))
            for key in stale:
                del self._data[key]
            self._length.change(-len(stale))
        # Count: past ``size``, drop the oldest down to 90% of it.
        length = self._length()
        if length > self.size:
            target = self.size - self.size // 10
            stale = list(self._data.keys())[target:]
            for key in stale:
                del self._data[key]
            self._length.change(-len(stale))

    def __iter__(self):
        return iter(self._data.values())

    def iter(self, start=None, stop=None):
        """The jobs added between ``start`` and ``stop``, newest first.

        ``start`` is the newer bound and ``stop`` the older one; each is a
        datetime, a key, or None for no bound.  Both are included.
        """
        low = _key_bound(start)
        high = _key_bound(stop)
        if high is not None and not isinstance(stop, int):
            high += 15
        return iter(self._data.values(min=low, max=high))

    def first(self, start=None):
        """The newest job (added at or before ``start``); ValueError if none.
        """
        return self._data[self._data.minKey(_key_bound(start))]

    def last(self, stop=None):
        """The oldest job (added at or after ``stop``); ValueError if none."""
        high = _key_bound(stop)
        if high is not None and not isinstance(stop, int):
            high += 15
        return self._data[self._data.maxKey(high)]

    def __len__(self):
        return self._length()

    def __bool__(self):
        return bool(self._length())

    def __repr__(self):
        return '<%s: %d jobs>' % (utils.custom_repr(self), len(self))


@zope.interface.implementer(interfaces.IAgent)
class Agent(utils.Base):
    """Claims jobs for one dispatcher and holds them until they complete.

    ``size`` is how many jobs it holds at once (the dispatcher gives it as
    many worker threads).  Jobs are chosen by the queue with ``filter``, a
    predicate ``filter(job)`` that must not depend on the agent's
    fullness, or, the older way, by ``chooser(agent)``, which claims a job
    itself.  Not both.  An agent without a chooser provides IFilterAgent.
    """

    name = None
    _chooser = None
    _filter = None
    #: Jobs claimed beyond ``size``, so a worker that finishes one finds the
    #: next at once instead of waiting for the dispatcher's next claim.  A
    #: job claimed but not started goes back to the queue if the
    #: dispatcher dies.
    prefetch = 0

    def __init__(self, chooser=None, filter=None, size=3, prefetch=0):
        if chooser is not None and filter is not None:
            raise ValueError('cannot set both chooser and filter to non-None')
        self._data = zc.queue.PersistentQueue()
        self.completed = CompletedCollection(self)
        self.size = size
        if prefetch:
            self.prefetch = prefetch
        self._filter = filter
        self.chooser = chooser

    @property
    def chooser(self):
        return self._chooser

    @chooser.setter
    def chooser(self, value):
        if value is not None and self._filter is not None:
            raise ValueError('cannot set both chooser and filter to non-None')
        self._chooser = value
        if value is None:
            zope.interface.alsoProvides(self, interfaces.IFilterAgent)
        elif interfaces.IFilterAgent.providedBy(self):
            zope.interface.noLongerProvides(self, interfaces.IFilterAgent)

    @property
    def filter(self):
        return self._filter

    @filter.setter
    def filter(self, value):
        if value is not None and self._chooser is not None:
            raise ValueError('cannot set both chooser and filter to non-None')
        self._filter = value

    @property
    def queue(self):
        """The queue this agent claims from (its collection's parent)."""
        parent = self.parent
        if parent is None:
            return None
        return parent.parent

    # -- the jobs held -------------------------------------------------------

    def __len__(self):
        return len(self._data)

    def __bool__(self):
        return bool(len(self._data))

    __nonzero__ = __bool__  # named by zc.queue's IQueue

    def __iter__(self):
        return iter(self._data)

    def __getitem__(self, index):
        return self._data[index]

    def index(self, item):
        """The position of ``item`` (by identity); ValueError if absent."""
        for ix, job in enumerate(self._data):
            if job is item:
                return ix
        raise ValueError('%r not in %s' % (item, type(self).__name__))

    def pull(self, index=0):
        """Remove and return the job at ``index``; it no longer has a parent.
        """
        res = self._data.pull(index)
        res.parent = None
        return res

    def remove(self, item):
        """Remove ``item`` (by identity); ValueError if it is not held."""
        self.pull(self.index(item))

    def __delitem__(self, index):
        self.pull(index)

    # -- claiming ------------------------------------------------------------

    def claimJob(self):
        """Claim a job from the queue and hold it; return it, or None.

        Nothing is claimed while the agent holds ``size + prefetch`` jobs,
        nor while its
        dispatcher is not activated or counts as dead (it may have been
        replaced by a sibling).
        """
        parent = self.parent
        if parent is None or not parent.activated or parent.dead:
            return None
        if self.size <= 0 or len(self._data) >= self.size + self.prefetch:
            return None   # size 0: paused
        res = self._choose()
        if res is not None:
            res.parent = self
            self._data.put(res)
        return res

    def _choose(self):
        """Claim a job (the hook for subclasses)."""
        if self._chooser is not None:
            return self._chooser(self)
        return self.queue.claim(self._filter)

    def jobCompleted(self, job):
        """Move ``job`` from the agent into ``completed``."""
        self._data.pull(self.index(job))   # its parent stays this agent
        self.completed.add(job)

    def __repr__(self):
        return '<%s %r: %d of %d>' % (
            utils.custom_repr(self), self.name, len(self._data), self.size)


@zope.component.adapter(interfaces.IDispatcherActivated)
def addMainAgentActivationHandler(event):
    """Give a newly activated dispatcher an agent named 'main' if it has none.
    """
    da = event.object
    if 'main' not in da:
        da['main'] = Agent()
        log.info('agent %r added to dispatcher %s', 'main', da.UUID)
