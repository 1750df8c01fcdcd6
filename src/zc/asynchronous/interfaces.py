"""The contracts of zc.asynchronous.

Everything else in the package implements one of these interfaces.  The
status constants, the exceptions and the database root key live here too,
so that code which only needs to *talk about* jobs can import this module
alone.
"""
import zc.queue.interfaces
import zope.interface
import zope.interface.common.mapping
import zope.interface.interfaces

# The failure interface lives with the Failure class, in zc.twist.
from zc.twist.interfaces import IFailure  # noqa: F401

#: The key in the ZODB root mapping under which the ``Queues`` collection
#: lives.  It keeps its historical spelling, so databases keep their layout.
KEY = 'zc.async'

# Job statuses.  Only NEW, ACTIVE, CALLBACKS and COMPLETED are stored;
# PENDING and ASSIGNED are computed from where a NEW job sits (a queue or an
# agent).  Plain strings: they compare equal to the historical message ids.
NEW = 'new-status'
PENDING = 'pending-status'
ASSIGNED = 'assigned-status'
ACTIVE = 'active-status'
CALLBACKS = 'callback-status'
COMPLETED = 'completed-status'

STATUSES = (NEW, PENDING, ASSIGNED, ACTIVE, CALLBACKS, COMPLETED)


class AbortedError(Exception):
    """A job was stopped before it could finish (``Job.fail``'s default)."""


class BadStatusError(Exception):
    """The job's status does not allow the requested operation."""


class TimeoutError(Exception):
    """A job missed its ``begin_by`` deadline and was failed, not run."""


class ReassignedError(Exception):
    """A job was handed to another agent while this worker still held it."""


class FullError(Exception):
    """A container cannot accept more items."""


class IObjectEvent(zope.interface.interfaces.IObjectEvent):
    """An event about an object of this package."""


class IDispatcherRegistered(IObjectEvent):
    """A dispatcher's agents collection was registered in a queue."""


class IDispatcherUnregistered(IObjectEvent):
    """A dispatcher's agents collection was removed from a queue."""


class IDispatcherActivated(IObjectEvent):
    """A dispatcher's agents collection was activated in a queue."""


class IDispatcherReactivated(IObjectEvent):
    """A dispatcher found itself deactivated while alive and reactivated."""


class IDispatcherDeactivated(IObjectEvent):
    """A dispatcher's agents collection was deactivated in a queue."""


class IObjectAdded(IObjectEvent):
    """A queue or queues collection was installed."""

    parent = zope.interface.Attribute('where the object was added')
    name = zope.interface.Attribute('the name it was added under')


@zope.interface.implementer(IObjectEvent)
class AbstractObjectEvent:

    def __init__(self, object):
        self.object = object


@zope.interface.implementer(IDispatcherRegistered)
class DispatcherRegistered(AbstractObjectEvent):
    pass


@zope.interface.implementer(IDispatcherUnregistered)
class DispatcherUnregistered(AbstractObjectEvent):
    pass


@zope.interface.implementer(IDispatcherActivated)
class DispatcherActivated(AbstractObjectEvent):
    pass


@zope.interface.implementer(IDispatcherReactivated)
class DispatcherReactivated(AbstractObjectEvent):
    pass


@zope.interface.implementer(IDispatcherDeactivated)
class DispatcherDeactivated(AbstractObjectEvent):
    pass


@zope.interface.implementer(IObjectAdded)
class ObjectAdded(AbstractObjectEvent):

    def __init__(self, object, parent, name):
        super().__init__(object)
        self.parent = parent
        self.name = name


class IDatabaseOpenedEvent(zope.interface.Interface):
    """A database was opened (the signal to install queues and dispatchers)."""

    database = zope.interface.Attribute('the ZODB database')


@zope.interface.implementer(IDatabaseOpenedEvent)
class DatabaseOpened:

    def __init__(self, database):
        self.database = database


class IReactor(zope.interface.Interface):
    """The part of a Twisted reactor a dispatcher uses."""

    def callFromThread(callable, *args, **kw):
        """Call ``callable`` in the reactor thread, soon."""

    def callInThread(callable, *args, **kw):
        """Call ``callable`` in a thread of the reactor's pool."""

    def callLater(seconds, callable, *args, **kw):
        """Call ``callable`` in the reactor thread after ``seconds``."""

    def addSystemEventTrigger(phase, event, callable, *args, **kw):
        """Call ``callable`` at a reactor event ('before', 'shutdown')."""

    def callWhenRunning(callable, *args, **kw):
        """Call ``callable`` once the reactor runs."""


class IUUID(zope.interface.Interface):
    """Marker for the UUID that names this process's dispatcher."""


class IJob(zope.interface.Interface):
    """A persistent call, with arguments, a result and callbacks.

    A job is a partial that can be stored in the ZODB and called later,
    perhaps in another process.  It commits its own transactions: a job
    must be reachable from a connection (directly or through
    ``__parent__``) before it is called.
    """

    parent = zope.interface.Attribute(
        'The immediate parent: a queue while PENDING, an agent while '
        'ASSIGNED or running, the job a callback belongs to, or None.')

    __parent__ = zope.interface.Attribute('Same as ``parent``.')

    callable = zope.interface.Attribute(
        'The callable: a global function, a persistent callable or a '
        'method of a persistent object.  Settable only while NEW.')

    args = zope.interface.Attribute(
        'A persistent list of positional arguments, mutable.')

    kwargs = zope.interface.Attribute(
        'A persistent mapping of keyword arguments, mutable.')

    status = zope.interface.Attribute(
        'One of NEW, PENDING, ASSIGNED, ACTIVE, CALLBACKS or COMPLETED. '
        'Read-only.')

    result = zope.interface.Attribute(
        'None until the call completes; then its value, or a '
        'zc.twist.Failure.  Read-only.')

    callbacks = zope.interface.Attribute(
        'A persistent queue of the callback jobs.  Use addCallbacks and '
        'addCallback instead of changing it.')

    annotations = zope.interface.Attribute(
        'An OOBTree for metadata and progress reports.')

    queue = zope.interface.Attribute(
        'The IQueue the job belongs to, found through its parents, or None.')

    agent = zope.interface.Attribute(
        'The IAgent the job belongs to, found through its job parents, or '
        'None.')

    begin_after = zope.interface.Attribute(
        'A timezone-aware datetime (stored as UTC) before which the job '
        'should not start, or None.  Settable only while NEW.')

    begin_by = zope.interface.Attribute(
        'A timedelta after ``begin_after`` past which the job is failed '
        'instead of started, or None.  Settable while NEW or PENDING.')

    quota_names = zope.interface.Attribute(
        'A tuple of names of the queue quotas the job counts against.')

    active_start = zope.interface.Attribute(
        'The UTC datetime the call started, or None.')

    active_end = zope.interface.Attribute(
        'The UTC datetime the call ended, or None.')

    initial_callbacks_end = zope.interface.Attribute(
        'The UTC datetime the job completed, decoded from ``key``.')

    key = zope.interface.Attribute(
        'An integer set by an agent when the job completes; smaller for '
        'newer jobs.')

    assignerUUID = zope.interface.Attribute(
        'The UUID of the process that put the job in a queue, or None.')

    def addCallbacks(success=None, failure=None):
        """Add a success and/or failure callback; return the chained job.

        ``success`` is called with any result that is not a Failure;
        ``failure`` with a Failure.  The returned intermediate job's result
        is that of the callable that ran, or the job's result unchanged
        when no callable matched; further callbacks can be chained on it.
        With both None nothing is added and the job itself is returned.
        """

    def addCallback(callback):
        """Add a callback that receives the result, Failure or not.

        Returns the callback as a job.  On a COMPLETED job the callback
        runs at once.
        """

    def __call__(*args, **kwargs):
        """Call the callable with the stored and the given arguments.

        The job must be NEW or ASSIGNED, else BadStatusError.  The job
        commits ACTIVE, makes the call, stores and commits the result,
        runs its callbacks and commits COMPLETED.  Returns the raw result:
        a value, a Failure, or the Job or Deferred the job now waits on.
        """

    def fail(e=None):
        """Fail the job with ``e`` (an AbortedError by default).

        Allowed while NEW, PENDING, ASSIGNED or ACTIVE, else
        BadStatusError.  Stores a Failure, commits and runs the callbacks.
        """

    def resumeCallbacks():
        """Finish the callbacks of a job left in CALLBACKS.

        NEW callbacks are called, ACTIVE ones are failed, CALLBACKS ones
        are resumed, COMPLETED ones are left alone.  Then the job is
        COMPLETED.
        """


class IAgent(zope.interface.Interface):
    """Claims jobs from a queue for one dispatcher, and holds them.

    An agent sits in an IDispatcherAgents collection; its jobs are ASSIGNED
    until they run.  Jobs enter it only by ``claimJob`` (there is no
    ``put``); it is a sequence of the jobs it holds.
    """

    def __len__():
        """How many jobs the agent holds."""

    def __iter__():
        """Iterate over the jobs held, oldest claim first."""

    def __getitem__(index):
        """The job held at ``index``."""

    def __bool__():
        """Whether the agent holds any job."""

    def pull(index=0):
        """Remove and return the job at ``index``; it loses its parent."""

    name = zope.interface.Attribute('The name within the dispatcher agents.')

    parent = zope.interface.Attribute('The IDispatcherAgents it belongs to.')

    queue = zope.interface.Attribute('The IQueue it claims from.')

    size = zope.interface.Attribute(
        'How many jobs the agent may hold at once (its worker threads).')

    chooser = zope.interface.Attribute(
        'None, or a callable(agent) returning a claimed job or None.')

    filter = zope.interface.Attribute(
        'None, or a predicate(job) telling which jobs the agent will take.')

    prefetch = zope.interface.Attribute(
        'How many jobs the agent claims beyond ``size``, to have the next '
        'one ready (0 by default).')

    completed = zope.interface.Attribute(
        'An ICompletedCollection of the jobs this agent finished recently.')

    def claimJob():
        """Claim a job from the queue and hold it; return it or None.

        Returns None when the agent is full, or when its dispatcher is not
        activated or is dead.
        """

    def jobCompleted(job):
        """Move a finished job from the agent into ``completed``."""

    def index(item):
        """The position of ``item`` (by identity), else ValueError."""

    def remove(item):
        """Remove ``item`` (by identity), else ValueError."""


class IFilterAgent(IAgent):
    """An agent that chooses jobs with a ``filter`` predicate."""


class ICompletedCollection(zope.interface.Interface):
    """A bounded collection of recently completed jobs, newest first."""

    def __iter__():
        """Iterate over the jobs, newest first."""

    def iter(start=None, stop=None):
        """Iterate over the jobs between two datetimes, newest first."""

    def __len__():
        """How many jobs are kept."""

    def __bool__():
        """Whether any job is kept."""

    def add(job):
        """Keep ``job``; set its ``key`` and its ``parent``."""

    def first(start=None):
        """The newest job (at or before ``start``); ValueError if none."""

    def last(stop=None):
        """The oldest job (at or after ``stop``); ValueError if none."""


class IDispatcherAgents(zope.interface.common.mapping.IMapping):
    """The agents of one dispatcher in one queue, by name.

    It is the persistent twin of a dispatcher in a queue: activation and
    pings record that the dispatcher is alive.
    """

    UUID = zope.interface.Attribute('The UUID of the dispatcher.')

    parent = zope.interface.Attribute('The IQueue.')

    activated = zope.interface.Attribute(
        'None, or the UTC datetime of the activation.')

    last_ping = zope.interface.Attribute(
        'A conflict-free maximum whose ``value`` is the last ping (UTC).')

    ping_interval = zope.interface.Attribute(
        'How often the dispatcher records a ping (a timedelta).')

    ping_death_interval = zope.interface.Attribute(
        'How long without a ping before the dispatcher counts as dead.')

    dead = zope.interface.Attribute(
        'Whether the last sign of life is older than ping_death_interval.')

    def activate():
        """Mark the dispatcher activated (cleaning up a previous life)."""

    def reactivate():
        """Mark a wrongly deactivated, live dispatcher activated again."""

    def deactivate():
        """Mark the dispatcher deactivated and clean up its agents' jobs.

        ACTIVE jobs are failed, CALLBACKS jobs resume their callbacks (both
        through jobs put in the queue), and claimed but unstarted jobs go
        back to the queue.
        """


class IDispatchers(zope.interface.common.mapping.IEnumerableMapping):
    """The IDispatcherAgents of a queue, by UUID."""

    def register(uuid):
        """Create and return the agents collection for ``uuid``."""

    def unregister(uuid):
        """Remove and return the collection for ``uuid`` (deactivated)."""

    def ping(uuid):
        """Record that ``uuid`` is alive, and clean up a dead sibling."""


class IQuota(zc.queue.interfaces.IQueue):
    """A strict limit on how many jobs naming it may run at once."""

    name = zope.interface.Attribute('The name jobs use in quota_names.')

    size = zope.interface.Attribute('The limit.')

    filled = zope.interface.Attribute('Whether the limit is reached.')

    def clean():
        """Forget the jobs that have finished running."""

    def add(item):
        """Count ``item`` against the quota (ValueError when filled)."""


class IQueue(zc.queue.interfaces.IQueue):
    """Where jobs wait until an agent claims them."""

    parent = zope.interface.Attribute('The Queues collection.')

    name = zope.interface.Attribute('The name within the Queues collection.')

    dispatchers = zope.interface.Attribute(
        'The IDispatchers of this queue, by UUID.')

    quotas = zope.interface.Attribute('The quotas of this queue, by name.')

    def put(item, begin_after=None, begin_by=None):
        """Put a job (or a callable, adapted to IJob) in the queue.

        Returns the job.  A job with a future ``begin_after`` is held until
        then.
        """

    def putBack(item):
        """Put a NEW job back at the front (for a retry now)."""

    def claim(filter=None, default=None):
        """Remove and return the first due job that ``filter`` accepts.

        An overdue job (past ``begin_by``) comes back as a job that fails
        it.  Returns ``default`` when nothing is due.
        """

    def pull(index=0):
        """Remove and return the job at ``index``: the way to cancel it."""

    def remove(item):
        """Remove ``item``; LookupError when it is not in the queue."""
