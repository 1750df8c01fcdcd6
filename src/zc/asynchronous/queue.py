"""Where jobs wait: queues, their quotas and their dispatchers' agents.

The database root holds a ``Queues`` collection under ``KEY``
(``'zc.async'``); the default queue is named ``''`` in it.  A ``Queue``
keeps

* the jobs that are due, in a conflict-resolving FIFO (zc.queue's
  ``CompositeQueue``, with a claim whose cost does not grow with the
  queue: see ``zc.asynchronous.fifo``), so that many processes can put at
  once;
* the jobs scheduled for later, in an OOBTree keyed by
  ``(begin_after, database name, oid)``;
* the jobs put back for a retry, in a FIFO of their own that comes first;
* its length in a conflict-resolving ``BTrees.Length``;
* its ``quotas`` (strict limits; never conflict-resolved) and its
  ``dispatchers`` (one ``DispatcherAgents`` collection per dispatcher
  UUID, each holding that dispatcher's agents).

Dispatchers ``ping`` their collection; a dispatcher whose pings stop is
``dead``, and a live sibling deactivates it, which sends the jobs its
agents held back through the queue.
"""
import datetime
import itertools
import logging
import uuid as uuid_module

import BTrees.Length
import BTrees.OOBTree
import persistent.interfaces
import ZODB.interfaces
import zope.component
import zope.event
import zope.interface
import zope.minmax

from zc.asynchronous import instanceuuid, interfaces, utils
from zc.asynchronous.fifo import FIFO
from zc.asynchronous.interfaces import (
    ACTIVE, ASSIGNED, CALLBACKS, COMPLETED, KEY, NEW, PENDING)
from zc.asynchronous.job import Job, as_job

log = logging.getLogger('zc.asynchronous.queue')

#: The CRITICAL message of a ping from a dispatcher that was deactivated.
NOT_ACTIVATED_MESSAGE = (
    "Dispatcher %r not activated prior to ping. This can indicate that the "
    "dispatcher's ping_death_interval is set too short, or that some "
    "transactions in the system are taking too long to commit. Activating, "
    "to correct the current problem, but if the dispatcher was "
    "inappropriately viewed as ``dead`` and deactivated, you should "
    "investigate the cause (be sure to check that time is synced on all "
    "participating machines).")


# -- the default queue ------------------------------------------------------

def getDefaultQueue(obj):
    """The default queue (named ``''``) of the database ``obj`` lives in.

    ``obj`` is a connection or a persistent object stored in (or hanging
    from, through ``__parent__``) one.  The queue is
    ``connection.root()[KEY]['']``.  Registered by ``configure.base()`` as
    the IQueue adapter of IPersistent and IConnection objects.
    """
    if ZODB.interfaces.IConnection.providedBy(obj):
        conn = obj
    else:
        conn = ZODB.interfaces.IConnection(obj)
    return conn.root()[KEY]['']


zope.component.adapter(persistent.interfaces.IPersistent)(getDefaultQueue)
zope.interface.implementer(interfaces.IQueue)(getDefaultQueue)


def get_instance_uuid():
    """The IUUID utility if one is registered, else this instance's UUID."""
    res = zope.component.queryUtility(interfaces.IUUID)
    if res is None:
        res = instanceuuid.get_uuid()
    return res


def _as_uuid(value):
    """``value`` as a ``uuid.UUID``: the only key type of ``Dispatchers``.

    Strings are parsed, so that one mapping never mixes key types (an
    OOBTree cannot compare a str with a UUID).
    """
    if isinstance(value, uuid_module.UUID):
        return value
    if isinstance(value, str):
        return uuid_module.UUID(value)
    raise TypeError('a dispatcher UUID must be a uuid.UUID, not %r'
                    % (value,))


class _Mapping(utils.Base):
    """A read-only mapping view over a persistent OOBTree ``_data``."""

    def __init__(self):
        self._data = BTrees.OOBTree.OOBTree()

    def __getitem__(self, key):
        return self._data[key]

    def get(self, key, default=None):
        return self._data.get(key, default)

    def __contains__(self, key):
        try:
            return key in self._data
        except TypeError:  # a key of another type cannot be in the tree
            return False

    def keys(self):
        return list(self._data.keys())

    def values(self):
        return list(self._data.values())

    def items(self):
        return list(self._data.items())

    def __iter__(self):
        return iter(self._data.keys())

    def __len__(self):
        return len(self._data)

    def __bool__(self):
        return bool(self._data)

    def __repr__(self):
        return '<%s>' % utils.custom_repr(self)


class _NamedMapping(_Mapping):
    """A mapping whose values know their key (``name``) and ``parent``.

    Storing a value names it and makes this mapping its parent; a value
    that is replaced, popped or deleted is detached (both reset to None).
    Subclasses check values in ``_check_value`` and refuse to let one go
    in ``_check_removable``.
    """

    _marker = object()

    def _check_value(self, value):
        pass

    def _check_removable(self, value):
        pass

    def __setitem__(self, key, value):
        self._check_value(value)
        old = self._data.get(key)
        if old is value:
            return
        if old is not None:
            self._check_removable(old)
            self._detach(old)
        value.name = key
        value.parent = self
        self._data[key] = value

    @staticmethod
    def _detach(value):
        value.parent = None
        value.name = None

    def __delitem__(self, key):
        self.pop(key)

    def pop(self, key, default=_marker):
        """Remove and return the value ``key`` (detached), or ``default``."""
        try:
            value = self._data[key]
        except KeyError:
            if default is self._marker:
                raise
            return default
        self._check_removable(value)
        del self._data[key]
        self._detach(value)
        return value


# -- Queues ----------------------------------------------------------------

class Queues(_NamedMapping):
    """The named queues of a database, stored at ``root[KEY]``.

    Only IQueue values are accepted.  Storing a queue sets its ``name`` and
    ``parent``; a queue that is replaced, popped or deleted gets them reset
    to None.
    """

    def _check_value(self, value):
        if not interfaces.IQueue.providedBy(value):
            raise ValueError('value must be IQueue')


# -- Quotas ----------------------------------------------------------------

@zope.interface.implementer(interfaces.IQuota)
class Quota(utils.Base):
    """A strict limit on how many jobs naming it may be claimed at once.

    The jobs are kept in a plain tuple: concurrent changes conflict
    instead of being merged, so two dispatchers can never both take the
    last slot.  ``clean()`` forgets jobs that no longer need their slot.
    """

    def __init__(self, name, size, parent=None):
        self.name = name
        self.size = size
        self.parent = parent
        self._data = ()

    @property
    def filled(self):
        """Whether the quota holds ``size`` jobs or more."""
        return len(self._data) >= self.size

    def __contains__(self, item):
        return any(item is job for job in self._data)

    def add(self, item):
        """Count ``item`` against the quota; ValueError when that is wrong.

        Adding a job that is already counted does nothing.
        """
        if item in self:
            return
        if not interfaces.IJob.providedBy(item):
            raise ValueError('must be IJob')
        if self.name not in item.quota_names:
            raise ValueError('quota name must be in quota_names')
        if self.filled:
            raise ValueError('Quota is filled')
        self._data += (item,)

    put = add

    def clean(self):
        """Forget the jobs that hold a slot they no longer need.

        Those are the jobs that ran (CALLBACKS or COMPLETED) and the jobs
        rescheduled for later (PENDING with a future ``begin_after``).  A
        claimed job keeps its slot while it is NEW: its claimer may not
        have stored it in an agent yet.  The tuple is only rewritten when
        something was removed.
        """
        now = utils.now()
        keep = []
        for job in self._data:
            status = job.status
            if status in (CALLBACKS, COMPLETED):
                continue
            if (status == PENDING and job.begin_after is not None
                    and job.begin_after > now):
                continue
            keep.append(job)
        if len(keep) != len(self._data):
            self._data = tuple(keep)

    def pull(self, index=0):
        """Remove and return the job at ``index``."""
        job = self._data[index]
        if index < 0:
            index += len(self._data)
        self._data = self._data[:index] + self._data[index + 1:]
        return job

    def get(self, index, default=None):
        try:
            return self._data[index]
        except IndexError:
            return default

    def __len__(self):
        return len(self._data)

    def __iter__(self):
        return iter(self._data)

    def __getitem__(self, index):
        return self._data[index]

    def __bool__(self):
        return bool(self._data)

    __nonzero__ = __bool__  # named by zc.queue's IQueue

    def __repr__(self):
        return '<%s %r: %d of %d>' % (
            utils.custom_repr(self), self.name, len(self._data), self.size)


class Quotas(_Mapping):
    """The quotas of a queue, by name: use ``create`` and ``remove``.

    Removing a quota that pending jobs still name is allowed: claims then
    ignore the name.
    """

    def create(self, name, size=1):
        """Make, store and return a quota ``name`` of ``size`` slots."""
        if name in self._data:
            raise ValueError('quota name already in use', name)
        res = Quota(name, size, self)
        self._data[name] = res
        return res

    def remove(self, name):
        """Remove the quota ``name`` (KeyError when there is none)."""
        res = self._data[name]
        del self._data[name]
        res.parent = None
        return res


# -- Dispatchers -------------------------------------------------------------

@zope.interface.implementer(interfaces.IDispatcherAgents)
class DispatcherAgents(_NamedMapping):
    """The agents of one dispatcher in one queue, by name.

    The persistent twin of a dispatcher: ``activated`` and ``last_ping``
    tell whether it is alive.  ``last_ping`` is a ``zope.minmax.Maximum``
    (its own persistent object, so pings do not rewrite this one, and
    concurrent pings keep the later time).
    """

    activated = None
    name = None

    def __init__(self, uuid):
        super().__init__()
        self.UUID = uuid
        self.last_ping = zope.minmax.Maximum()
        self.ping_interval = datetime.timedelta(seconds=30)
        self.ping_death_interval = datetime.timedelta(seconds=60)

    @property
    def dead(self):
        """Whether the last sign of life is older than ping_death_interval.

        The sign of life is the later of ``activated`` and the last ping;
        with neither the collection is not dead.
        """
        last_ping = self.last_ping.value
        activated = self.activated
        if activated is not None and (
                last_ping is None or activated > last_ping):
            ref = activated
        elif last_ping is None:
            return False
        else:
            ref = last_ping
        return ref + self.ping_death_interval < utils.now()

    # -- the agents -----------------------------------------------------------

    def _check_value(self, value):
        if not interfaces.IAgent.providedBy(value):
            raise ValueError('value must be IAgent')
        if len(value):
            raise ValueError('cannot add an agent with active jobs')

    def _check_removable(self, value):
        if len(value):
            raise ValueError('cannot remove an agent with active jobs')

    # -- life ----------------------------------------------------------------

    def activate(self):
        """Mark the dispatcher alive; first clean up what a previous life left.
        """
        if self.activated:
            raise ValueError('Already activated')
        self._clean()
        self.activated = utils.now()
        zope.event.notify(interfaces.DispatcherActivated(self))

    def reactivate(self):
        """Mark a live dispatcher, wrongly deactivated, activated again.

        Nothing is cleaned up and no DispatcherActivated event is fired (a
        DispatcherReactivated one is).
        """
        self.activated = utils.now()
        zope.event.notify(interfaces.DispatcherReactivated(self))

    def deactivate(self):
        """Mark the dispatcher gone and send its agents' jobs back."""
        if not self.activated:
            raise ValueError('Not activated')
        self.activated = None
        self._clean()
        zope.event.notify(interfaces.DispatcherDeactivated(self))

    def _clean(self):
        """Empty every agent; what each job needs goes through the queue.

        * claimed but not started (NEW once out of the agent): back to the
          front of the queue (``putBack``), keeping its quota slot;
        * ACTIVE: a job calling its ``fail`` is put in the queue, so that
          the failure and its callbacks run in a live dispatcher;
        * CALLBACKS: likewise, a job calling its ``resumeCallbacks``;
        * COMPLETED: recorded in the agent's ``completed``.
        """
        queue = self.parent
        for name, agent in list(self._data.items()):
            while len(agent):
                job = agent.pull()
                status = job.status
                if status in (PENDING, ASSIGNED):
                    utils.log.warning(
                        'job %r, pulled from agent %r of dispatcher %s, '
                        'still reads %s; putting it back in the queue',
                        job, name, self.UUID, status)
                    job.parent = None
                    status = job.status
                if status == NEW:
                    if job.begin_after is None or job._p_jar is None:
                        queue.put(job)
                    else:
                        queue.putBack(job)
                elif status == ACTIVE:
                    queue.put(Job(job.fail))
                elif status == CALLBACKS:
                    queue.put(Job(job.resumeCallbacks))
                elif status == COMPLETED:
                    utils.log.warning(
                        'unexpectedly had to inform agent of completion '
                        'of %r', job)
                    agent.completed.add(job)
                else:  # pragma: no cover - no other status exists
                    utils.log.error('job %r has unknown status %r',
                                    job, status)

    def __repr__(self):
        return '<%s %s>' % (utils.custom_repr(self), self.UUID)


@zope.interface.implementer(interfaces.IDispatchers)
class Dispatchers(_Mapping):
    """The dispatcher agent collections of a queue, by dispatcher UUID."""

    def __getitem__(self, key):
        try:
            uuid = _as_uuid(key)
        except (TypeError, ValueError):
            raise KeyError(key) from None
        return self._data[uuid]

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key):
        try:
            key = _as_uuid(key)
        except (TypeError, ValueError):
            return False
        return key in self._data

    def register(self, uuid):
        """Create, store and return the DispatcherAgents for ``uuid``."""
        uuid = _as_uuid(uuid)
        if uuid in self._data:
            raise ValueError('UUID already registered')
        da = DispatcherAgents(uuid)
        da.name = uuid
        da.parent = self.parent
        self._data[uuid] = da
        log.debug('dispatcher %s registered in queue %r', uuid,
                  getattr(self.parent, 'name', None))
        zope.event.notify(interfaces.DispatcherRegistered(da))
        return da

    def unregister(self, uuid):
        """Remove and return the deactivated DispatcherAgents of ``uuid``."""
        uuid = _as_uuid(uuid)
        da = self._data[uuid]
        if da.activated:
            raise ValueError('UUID is activated.')
        del self._data[uuid]
        da.parent = None
        da.name = None
        log.debug('dispatcher %s unregistered from queue %r', uuid,
                  getattr(self.parent, 'name', None))
        # One argument: 1.5.4 passed the queue too, and the event class
        # raised TypeError.
        zope.event.notify(interfaces.DispatcherUnregistered(da))
        return da

    def ping(self, uuid):
        """Record that ``uuid`` is alive, and check on its next sibling.

        A ping from a deactivated dispatcher reactivates it (and logs
        CRITICAL: it was wrongly taken for dead).  ``last_ping`` is only
        written once per ``ping_interval``.  Then the next activated
        dispatcher in UUID order (wrapping around) is looked at, and
        deactivated if it is dead.
        """
        uuid = _as_uuid(uuid)
        da = self._data[uuid]
        if not da.activated:
            utils.log.critical(NOT_ACTIVATED_MESSAGE, uuid)
            da.reactivate()
        now = utils.now()
        last_ping = da.last_ping.value
        if last_ping is None or last_ping + da.ping_interval <= now:
            da.last_ping.value = now
        sibling = self._next_activated(uuid)
        if sibling is not None and sibling.dead:
            utils.log.error('dispatcher %s found dispatcher %s dead; '
                            'deactivating it', uuid, sibling.UUID)
            sibling.deactivate()

    def _next_activated(self, uuid):
        for candidates in (self._data.values(min=uuid, excludemin=True),
                           self._data.values(max=uuid, excludemax=True)):
            for da in candidates:
                if da.activated:
                    return da
        return None


# -- Queue -----------------------------------------------------------------

_PUTBACK, _FIFO, _HELD = 'putback', 'fifo', 'held'


@zope.interface.implementer(interfaces.IQueue)
class Queue(utils.Base):
    """Jobs waiting to be claimed.  See ``interfaces.IQueue``.

    Jobs come out by ``begin_after``, put-back jobs first; jobs are not
    guaranteed to run in the order they were put (use callbacks to
    sequence work).
    """

    name = None
    #: How many jobs were taken out (claimed, pulled, removed): a counter
    #: of its own, so that a claim and a put change different objects, and
    #: a process that only puts never has to reload what claims change.
    #: ``_length`` counts what came in.  (None in queues made before it:
    #: they count both ways in ``_length``.)
    _taken = None

    def __init__(self):
        self._queue = FIFO()
        self._putback_queue = FIFO()
        self._held = BTrees.OOBTree.OOBTree()
        self._length = BTrees.Length.Length(0)
        self._taken = BTrees.Length.Length(0)
        self.quotas = Quotas()
        self.quotas.parent = self
        self.dispatchers = Dispatchers()
        self.dispatchers.parent = self

    def _connection(self):
        conn = self._p_jar
        if conn is None:
            conn = ZODB.interfaces.IConnection(self, None)
        if conn is None:
            raise ValueError(
                'the queue must be stored in a database before jobs are put '
                'in it')
        return conn

    # -- putting -------------------------------------------------------------

    def put(self, item, begin_after=None, begin_by=None):
        """Put a job, or a callable made a job, in the queue; return the job.

        The job must be NEW.  ``begin_after`` (a timezone-aware datetime)
        defaults to the job's own, else to now; a job due later is held
        until then.  ``begin_by`` (a timedelta), when given, replaces the
        job's: a job claimed after ``begin_after + begin_by`` is failed
        with a TimeoutError instead of being run.  Every name in the job's
        ``quota_names`` must be a quota of this queue.  Nothing changes
        when one of these checks fails.
        """
        item = as_job(item)
        if item.status != NEW or interfaces.IJob.providedBy(item.parent):
            # A NEW job whose parent is a job is that job's callback.
            raise ValueError('cannot add already-assigned job')
        for name in item.quota_names:
            if name not in self.quotas:
                raise ValueError('unknown quota name', name)
        conn = self._connection()
        assigner = get_instance_uuid()
        now = utils.now()
        old_begin_after, old_begin_by = item.begin_after, item.begin_by
        try:
            if begin_after is not None:
                item.begin_after = begin_after
            elif item.begin_after is None:
                item.begin_after = now
            if begin_by is not None:
                item.begin_by = begin_by
        except BaseException:
            item.begin_after = old_begin_after
            item.begin_by = old_begin_by
            raise
        item.assignerUUID = assigner
        if item._p_jar is None:
            conn.add(item)
        if item.begin_after <= now:
            self._queue.put(item)
        else:
            self._held[self._held_key(item)] = item
        item.parent = self
        self._length.change(1)
        return item

    @staticmethod
    def _held_key(item):
        return (item.begin_after, item._p_jar.db().database_name,
                item._p_oid)

    def putBack(self, item):
        """Put a NEW, already scheduled job at the very front of the queue.

        For a job that should be retried now; a job that was counted in a
        quota keeps its slot.
        """
        if not interfaces.IJob.providedBy(item):
            raise TypeError('can only put back an IJob, not %r' % (item,))
        if item.status != NEW:
            raise ValueError('can only put back a job with NEW status')
        if item.begin_after is None:
            raise ValueError('can only put back a job with a begin_after')
        if item._p_jar is None:
            raise ValueError('can only put back a job stored in a database')
        self._putback_queue.put(item)
        item.parent = self
        self._length.change(1)

    # -- looking -------------------------------------------------------------

    def _iter(self):
        """Yield (structure, position, job), in the order jobs come out.

        Put-back jobs first; then the FIFO merged with the held jobs by
        ``begin_after``, held jobs winning ties.
        """
        for ix, job in enumerate(self._putback_queue):
            yield _PUTBACK, ix, job
        fifo = enumerate(self._queue)
        held = iter(self._held.items())
        f = next(fifo, None)
        h = next(held, None)
        while f is not None and h is not None:
            if h[0][0] <= f[1].begin_after:
                yield _HELD, h[0], h[1]
                h = next(held, None)
            else:
                yield _FIFO, f[0], f[1]
                f = next(fifo, None)
        while f is not None:
            yield _FIFO, f[0], f[1]
            f = next(fifo, None)
        while h is not None:
            yield _HELD, h[0], h[1]
            h = next(held, None)

    def prefetch(self, count):
        """Start loading the first ``count`` jobs waiting, for claims to come.

        A ZEO client then loads them in one batch of round trips instead
        of one after the other as ``claim`` looks at each; other storages
        ignore it.  Jobs held for later are not looked at.
        """
        conn = self._p_jar
        if conn is None or count <= 0:
            return
        jobs = list(itertools.islice(
            itertools.chain(self._putback_queue, self._queue), count))
        if jobs:
            conn.prefetch(jobs)

    def _discard(self, where, position):
        if where == _PUTBACK:
            self._putback_queue.pull(position)
        elif where == _FIFO:
            self._queue.pull(position)
        else:
            del self._held[position]
        if self._taken is None:
            self._length.change(-1)
        else:
            self._taken.change(1)

    def __len__(self):
        taken = self._taken
        return self._length() - (0 if taken is None else taken())

    def __bool__(self):
        return bool(len(self))

    __nonzero__ = __bool__  # named by zc.queue's IQueue

    def __iter__(self):
        return (job for where, position, job in self._iter())

    def _locate(self, index):
        length = len(self)
        ix = index + length if index < 0 else index
        if 0 <= ix < length:
            for count, found in enumerate(self._iter()):
                if count == ix:
                    return found
        raise IndexError(index)

    def __getitem__(self, index):
        return self._locate(index)[2]

    # -- taking out --------------------------------------------------------

    def _detach(self, job):
        job.assignerUUID = None
        job.parent = None

    def pull(self, index=0):
        """Remove and return the job at ``index``: the way to cancel it."""
        where, position, job = self._locate(index)
        self._discard(where, position)
        self._detach(job)
        return job

    def remove(self, item):
        """Remove ``item`` (compared by identity) from the queue."""
        for where, position, job in self._iter():
            if job is item:
                self._discard(where, position)
                self._detach(job)
                return
        raise LookupError('item not in queue', item)

    def claim(self, filter=None, default=None):
        """Remove and return the first due job ``filter`` accepts.

        Jobs scheduled for later are left alone, and so are jobs whose
        quotas are full (unless they already hold a slot).  A job past its
        ``begin_by`` deadline is not returned: a new job that fails it
        with a TimeoutError is, in its place (and ``filter`` judges that
        one).  Returns ``default`` when no job fits.
        """
        if not len(self):
            return default
        now = utils.now()
        cleaned = set()
        for where, position, job in self._iter():
            if job.begin_after > now:
                if where == _HELD:
                    break  # held jobs come sorted: none is due after this
                continue
            if (job.begin_by is not None
                    and job.begin_after + job.begin_by < now):
                res = Job(job.fail, interfaces.TimeoutError())
                res.begin_after = now
                quotas = ()
            else:
                res = job
                quotas = []
                full = False
                for name in job.quota_names:
                    quota = self.quotas.get(name)
                    if quota is None:
                        continue  # the quota was removed: ignore the name
                    if name not in cleaned:
                        quota.clean()
                        cleaned.add(name)
                    if quota.filled and job not in quota:
                        full = True
                        break
                    quotas.append(quota)
                if full:
                    continue
            if filter is not None and not filter(res):
                continue
            self._discard(where, position)
            job.parent = None
            if res is job:
                for quota in quotas:
                    quota.add(job)
            else:
                res.assignerUUID = get_instance_uuid()
                self._connection().add(res)
                # The failing job hangs from its wrapper: once an agent
                # holds the wrapper, the job (and its callbacks) can find
                # the queue again.  Like any claimed job, the wrapper
                # itself comes out without a parent (NEW).
                job.parent = res
                utils.log.warning(
                    '%r missed its begin_by deadline; claimed as %r, which '
                    'fails it', job, res)
            return res
        return default

    def __repr__(self):
        return '<%s %r: %d jobs>' % (
            utils.custom_repr(self), self.name, len(self))
