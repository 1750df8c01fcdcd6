"""The dispatcher: claims jobs from the queues and runs them in threads.

One dispatcher runs in each process that does work, named by the process's
instance UUID.  It lives on a Twisted reactor: its own, run in a thread of
its own by ``start()``, or a reactor the application runs (``activate()``).
On that reactor it *polls*: in one transaction it registers and activates
itself in every queue, pings (so that siblings know it lives, and so that
it notices dead siblings and cleans up after them), and lets each of its
agents claim jobs.  Claimed jobs go to a pool of worker threads per agent;
each worker has a connection and a transaction manager of its own for its
whole life, and calls the job, which commits its own work.

Polls happen every ``poll_interval`` seconds, and also as soon as the
database reports a change to a queue (a put from this or another process)
or a worker frees up, so that a job starts within milliseconds of its put.
"""
import collections
import datetime
import logging
import queue as stdqueue
import threading
import time

import transaction
import ZODB.POSException
import ZODB.utils

import zc.twist
from zc.asynchronous import interfaces, local

log = logging.getLogger('zc.async.events')
tracelog = logging.getLogger('zc.async.trace')

_dispatchers = {}
_registry_lock = threading.Lock()


def get(uuid=None, default=None):
    """The dispatcher registered for ``uuid`` (this process's by default)."""
    if uuid is None:
        uuid = _default_uuid()
    return _dispatchers.get(uuid, default)


def pop(uuid=None):
    """Remove and return the dispatcher registered for ``uuid``."""
    if uuid is None:
        uuid = _default_uuid()
    return _dispatchers.pop(uuid)


def clear():
    """Forget every registered dispatcher (for tests)."""
    _dispatchers.clear()


def _default_uuid():
    from zc.asynchronous import instanceuuid
    return instanceuuid.get_uuid()


def getId(job):
    """``(oid as int, database name)``: how reports name a job."""
    return ZODB.utils.u64(job._p_oid), job._p_jar.db().database_name


def _naive_utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


class _InvalidationWatcher:
    """Learns of every commit to a database, to wake the dispatcher.

    ZODB's MVCC adapter tells each of its instances which objects a
    transaction changed, for local and (through ZEO) remote commits alike.
    The watcher joins those instances and calls ``wake`` when a watched
    object changed.  Storages that are MVCC themselves (RelStorage) give no
    such hook: the dispatcher then relies on polling alone.

    On a storage that can prefetch (a ZEO client), a commit that wakes the
    dispatcher also has its objects (the new job, its queue bucket...)
    loaded into the client cache at once, in one batch of round trips
    begun before the poll starts, instead of one round trip after the
    other as the poll and the worker come to each object.
    """

    #: Commits that changed more objects than this are not prefetched.
    PREFETCH_LIMIT = 64

    def __init__(self, db, wake, wanted=None):
        self._adapter = getattr(db, '_mvcc_storage', None)
        self._wake = wake
        #: Asked before waking (and prefetching): None means always.
        self._wanted = wanted
        self._prefetch = getattr(db.storage, 'prefetch', None)
        # Until the first poll has read the queues, any commit may matter.
        self.oids = None
        #: The newest commit that woke the dispatcher.
        self.tid = None
        self.installed = False
        instances = getattr(self._adapter, '_instances', None)
        lock = getattr(self._adapter, '_lock', None)
        if isinstance(instances, set) and lock is not None:
            with lock:
                instances.add(self)
            self.installed = True

    def _invalidate(self, tid, oids):
        # Called inside the MVCC adapter's loop over its connections (in
        # ZEO's I/O thread, or in a committing thread): an error here
        # must not keep the others from hearing of the commit.
        try:
            self._on_commit(tid, oids)
        except Exception:
            log.exception('dispatcher wake-up on a commit failed')

    def _on_commit(self, tid, oids):
        if self.oids is None or not self.oids.isdisjoint(oids):
            if self._wanted is not None and not self._wanted():
                return
            if (self._prefetch is not None and self.oids is not None
                    and len(oids) <= self.PREFETCH_LIMIT):
                try:
                    # As a connection that syncs now will load them: so
                    # that its loads join the requests in flight.
                    self._prefetch(
                        list(oids),
                        ZODB.utils.p64(ZODB.utils.u64(tid) + 1))
                except Exception:
                    log.debug('prefetch failed', exc_info=True)
            if self.tid is None or tid > self.tid:
                self.tid = tid
            self._wake()

    def view_is_older(self, conn):
        """Whether ``conn``'s view of the database misses the commit that
        woke the dispatcher last.

        The watcher hears of a commit while the storage is still telling
        the others (ZEO does it in its I/O thread): a poll that syncs at
        that moment may see the database as it was before.
        """
        start = getattr(conn._storage, '_start', None)   # MVCC adapter
        return (self.tid is not None and isinstance(start, bytes)
                and start <= self.tid)

    def _invalidateCache(self):
        self.tid = None   # a new connection to the storage: start afresh
        self._wake()

    def uninstall(self):
        if self.installed:
            with self._adapter._lock:
                instances = getattr(self._adapter, '_instances', None)
                if instances is not None:
                    instances.discard(self)
            self.installed = False


class AgentThreadPool:
    """The worker threads of one agent of one queue.

    Each thread opens one connection with its own transaction manager and
    keeps it while it lives, so the object cache stays warm.  Jobs arrive
    as ``(oid, database name, info)`` through ``put``.
    """

    def __init__(self, dispatcher, queue_name, agent_name, size=0):
        self.dispatcher = dispatcher
        self.queue_name = queue_name
        self.name = agent_name
        self.jobids = {}          # thread ident -> id of the job it runs
        self.busy = set()         # idents of threads with a job in hand
        self.threads = []
        self._queue = stdqueue.Queue()
        self._size = 0
        self._started = 0
        #: The agent's prefetch: how many claimed jobs may wait here.
        self.prefetch = 0
        self.setSize(size)

    def getSize(self):
        return self._size

    def setSize(self, size):
        """Grow or shrink to ``size`` threads; return the change."""
        self.threads = [t for t in self.threads if t.is_alive()]
        old = self._size
        self._size = size
        alive = len(self.threads)
        for _ in range(size - alive):
            self._started += 1
            thread = threading.Thread(
                target=self._run, daemon=True,
                name='zc.async worker %s/%s #%d' % (
                    self.queue_name or "''", self.name, self._started))
            self.threads.append(thread)
            thread.start()
        for _ in range(alive - size):
            self._queue.put(None)
        return size - old

    def put(self, item):
        self._queue.put(item)

    def alive(self):
        """How many of the pool's threads are alive."""
        return sum(1 for t in self.threads if t.is_alive())

    def low_water(self):
        """How few waiting jobs make a worker ask for more: one for each
        thread (so that none waits for the poll), at most half the
        prefetch.  The fewer, the more jobs one poll (one commit) claims.
        """
        return min(self.prefetch // 2, max(1, self._size))

    def pending(self):
        """Claimed jobs not yet picked up by a thread (oids and dbnames)."""
        with self._queue.mutex:
            return [item for item in self._queue.queue if item is not None]

    def drain(self):
        """Drop the jobs no thread has taken; return how many.

        A job whose ACTIVE status is committed already (by the poll that
        claimed it for an idle thread) stays, to be run: it has started.
        """
        dropped = 0
        keep = []
        while True:
            try:
                item = self._queue.get_nowait()
            except stdqueue.Empty:
                break
            if item is None:
                continue
            if item[2].get('active committed'):
                keep.append(item)
            else:
                dropped += 1
        for item in keep:
            self._queue.put(item)
        return dropped

    def idle(self):
        """How many threads have no job: none running, none in hand, and
        none waiting in the pool for them."""
        with self._queue.mutex:
            waiting = sum(1 for item in self._queue.queue if item is not None)
        alive = sum(1 for t in self.threads if t.is_alive())
        return max(0, alive - len(self.busy) - waiting)

    def stop(self):
        self._size = 0
        for _ in self.threads:
            self._queue.put(None)

    def _run(self):
        dispatcher = self.dispatcher
        handoff = _Handoff(self)
        local._set(dispatcher=dispatcher, agent_name=self.name,
                   defer_agent_completion=dispatcher._defer_completion,
                   handoff=handoff)
        tm = transaction.TransactionManager()
        conn = dispatcher.db.open(transaction_manager=tm)
        ident = threading.get_ident()
        item = None
        try:
            while True:
                item, started = handoff.take()
                if item is None:
                    return
                self.busy.add(ident)
                oid, dbname, info = item
                started = started or info.pop('active committed', False)
                self.jobids[ident] = (ZODB.utils.u64(oid), dbname)
                handoff.running = oid
                try:
                    dispatcher._run_job(conn, tm, oid, dbname, info, started)
                finally:
                    dispatcher._handed.discard(oid)
                    handoff.running = None
                    self.jobids.pop(ident, None)
                    if not handoff.taken:
                        self.busy.discard(ident)
                    tm.abort()
                    dispatcher._worker_free(self)
        except BaseException:
            # An explosive error (SystemExit, say) ends the thread; the
            # next poll starts another.  The job stays ACTIVE, as after a
            # crash: the next activation's clean-up fails it.
            log.critical('worker thread %s of agent %r died running job %s',
                         threading.current_thread().name, self.name,
                         item and ZODB.utils.u64(item[0]), exc_info=True)
            raise
        finally:
            self.busy.discard(ident)
            if (handoff.taken and handoff.item is not None
                    and not handoff.committed):
                # The thread dies (an explosive error) holding a job it
                # took for later: give it back to the pool.
                self._queue.put(handoff.item)
            local._set(dispatcher=None, agent_name=None, job=None,
                       defer_agent_completion=None, handoff=None)
            try:
                tm.abort()
                conn.close()
            except Exception:
                log.exception('error closing a worker connection')


def _held_by(job, info):
    """Whether ``job`` is still held by the agent that claimed it for us."""
    agent_oid = info.get('agent oid')
    parent = job.parent
    return agent_oid is None or (
        parent is not None and parent._p_oid == agent_oid)


class _Handoff:
    """A worker's next job, started in the commit that completes the last.

    When the job a worker runs completes, the worker takes the next job
    waiting in its pool (a prefetched one) and marks it ACTIVE in that same
    final transaction: one commit both ends a job and starts the next, and
    the crash story is unchanged (a job is ACTIVE in the database before
    its call begins).  If that commit fails, the next job starts the usual
    way.
    """

    def __init__(self, pool):
        self.pool = pool
        self.running = None      # oid of the job the worker runs
        self.item = None         # the next job, taken from the pool
        self.taken = False
        self.committed = False   # whether it was marked ACTIVE for good

    def take(self):
        """The next ``(item, started)``: the handed-off job, else the pool's.
        """
        if self.taken:
            item, started = self.item, self.committed
            self.item, self.taken, self.committed = None, False, False
            if item is not None:
                started = started or item[2].get('active committed', False)
                if not started and self.pool.dispatcher._stopping:
                    # Claimed, never started: the clean-up puts it back.
                    return None, False
            return item, started
        self.pool.busy.discard(threading.get_ident())
        return self.pool._queue.get(), False

    def start_next(self, job):
        """In ``job``'s final transaction, mark the next job ACTIVE."""
        if job._p_oid != self.running or self.pool.dispatcher._stopping:
            return
        if not self.taken:
            try:
                self.item = self.pool._queue.get_nowait()
            except stdqueue.Empty:
                return
            self.taken = True
        self.committed = False
        if self.item is None:
            return
        oid, dbname, info = self.item
        jar = job._p_jar
        if dbname and dbname != jar.db().database_name:
            jar = jar.get_connection(dbname)
        following = jar.get(oid)
        if not _held_by(following, info):
            return   # no longer ours: the worker will drop it
        try:
            following._mark_active()
        except interfaces.BadStatusError:
            return   # started the usual way, which reports the problem
        self.pool.dispatcher._marks[oid] = following._active_start

        def committed(ok):
            self.committed = ok
            if ok:
                self.pool.dispatcher.handoffs += 1
        jar.transaction_manager.get().addAfterCommitHook(committed)


class Dispatcher:
    """Runs the jobs of every queue in a database, in worker threads.

    ``Dispatcher(db, reactor=None, poll_interval=5, uuid=None)``: with no
    reactor, ``start()`` makes a private one and runs it in a daemon
    thread; with a reactor, call ``activate()`` and run the reactor
    yourself.  ``agents`` maps agent names to sizes: the agents the
    dispatcher creates in each queue it joins that has none for it yet;
    each also claims up to ``prefetch`` jobs beyond its size, so that a
    worker that finishes finds its next job waiting.
    ``ping_interval`` and ``ping_death_interval`` (seconds), when given,
    are set on this dispatcher's agents collection in each queue.
    """

    STOPPED = 'STOPPED'
    STARTING = 'STARTING'
    RUNNING = 'RUNNING'
    STUCK = 'STUCK'

    #: How long ``stop()`` waits for running jobs before giving up on them.
    stop_timeout = 10.0

    def __init__(self, db, reactor=None, poll_interval=5, uuid=None,
                 jobs_size=200, polls_size=400, agents=None,
                 ping_interval=None, ping_death_interval=None, prefetch=0):
        if uuid is None:
            uuid = _default_uuid()
        with _registry_lock:
            if uuid in _dispatchers:
                raise ValueError(
                    'dispatcher for this UUID is already registered')
            _dispatchers[uuid] = self
        self.db = db
        self.UUID = uuid
        self.reactor = reactor
        self.poll_interval = poll_interval
        self.agents = {'main': 3} if agents is None else dict(agents)
        self.prefetch = prefetch
        self.ping_interval = ping_interval
        self.ping_death_interval = ping_death_interval
        self.activated = False
        self.conn = None
        self.thread = None
        self.queues = {}      # queue name -> {agent name: AgentThreadPool}
        self.dead_pools = []
        self._activated = set()   # oids of the queues we are activated in
        self._joining = set()     # ... and of those the current poll joins
        self.polls = collections.deque(maxlen=polls_size)
        self.jobs = collections.OrderedDict()
        self.jobs_size = jobs_size
        self._poll_call = None
        self._polling = False
        self._poll_thread = None
        self._wake_pending = False
        self._watcher = None
        #: Whether the storage loads ahead (a ZEO client does).
        self._can_prefetch = hasattr(db.storage, 'prefetch')
        self._stopping = False
        self._stopped = threading.Event()
        self._poll_count = 0
        self._pool_size_added = 0
        # (job oid, agent oid) of jobs that completed in a worker and that
        # the next poll moves into their agent's ``completed``.
        self._completions = collections.deque()
        #: Jobs started in the commit that completed the job before them.
        self.handoffs = 0
        #: Oids of the jobs handed to worker pools and not finished yet.
        self._handed = set()
        self._known = set()
        #: oid -> the ACTIVE start this dispatcher wrote for a job whose
        #: call has not begun: such a job has started, and only this
        #: dispatcher may begin its call.
        self._marks = {}
        #: queue oid -> the activation time this dispatcher wrote.
        self._joined_at = {}
        #: oids of jobs that failed to start for unexpected reasons.
        self._broken = set()

    def __repr__(self):
        return '<%s %s>' % (type(self).__name__, self.UUID)

    # -- life cycle ------------------------------------------------------------

    def start(self):
        """Run on a private reactor in a daemon thread; return self.

        Returns once the reactor runs; the first poll follows at once.
        """
        if self.reactor is not None:
            raise ValueError('this dispatcher uses a reactor of the '
                             "application's: call activate() instead")
        from twisted.internet.selectreactor import SelectReactor
        self.reactor = SelectReactor()
        running = threading.Event()
        self.reactor.callWhenRunning(running.set)
        self.activate()
        self.thread = threading.Thread(
            target=self.reactor.run, kwargs={'installSignalHandlers': False},
            name='zc.async dispatcher %s' % (self.UUID,), daemon=True)
        self.thread.start()
        if not running.wait(10):
            raise RuntimeError('the dispatcher reactor did not start')
        return self

    def activate(self):
        """Start polling once the reactor runs."""
        if self.activated:
            raise ValueError('already activated')
        if self.reactor is None:
            raise ValueError('no reactor: call start() instead')
        log.info('attempting to activate dispatcher %s', self.UUID)
        self.activated = _naive_utcnow()
        self.polls.clear()
        self.jobs.clear()
        self._handed.clear()
        self._marks.clear()
        self._joined_at.clear()
        self._broken.clear()
        self._stopping = False
        self._stopped.clear()
        self._grow_db_pool(1)
        self.conn = self.db.open(
            transaction_manager=transaction.TransactionManager())
        self._watcher = _InvalidationWatcher(
            self.db, self._wake_threadsafe, self._wants_wake)
        self.reactor.callWhenRunning(self._poll_now)
        self.reactor.addSystemEventTrigger(
            'before', 'shutdown', self._shutdown_trigger)

    def _shutdown_trigger(self):
        if self.activated:
            self.deactivate()

    def deactivate(self):
        """Stop polling, let running jobs finish, and leave every queue.

        Must run in the reactor thread (``stop()`` arranges that).  A job
        still running after ``stop_timeout`` seconds is failed by the
        clean-up like the job of a dead dispatcher (AbortedError, and its
        failure callbacks run); its worker, if it ever finishes, finds the
        job taken from it and drops the result (ReassignedError), so the
        call is never made twice.
        """
        if not self.activated:
            raise ValueError('not activated')
        self.activated = None     # deactivation in progress
        self._stopping = True
        try:
            if self._poll_call is not None and self._poll_call.active():
                self._poll_call.cancel()
            if self._watcher is not None:
                self._watcher.uninstall()
            pools = [pool for agents in self.queues.values()
                     for pool in agents.values()]
            for pool in pools:
                pool.drain()
                pool.stop()
            deadline = time.monotonic() + self.stop_timeout
            for pool in pools:
                for thread in pool.threads:
                    thread.join(max(0, deadline - time.monotonic()))
            self._leave_queues()
            for agents in self.queues.values():
                self.dead_pools.extend(agents.values())
            self.queues.clear()
            self._activated.clear()
        finally:
            self.activated = False
            try:
                if self.conn is not None:
                    self.conn.transaction_manager.abort()
                    self.conn.close()
            except Exception:
                log.exception('error closing the dispatcher connection')
            self.conn = None
            self._stopped.set()
        self._grow_db_pool(-self._pool_size_added)
        log.info('deactivated dispatcher %s', self.UUID)

    def _grow_db_pool(self, delta):
        # Worker threads and the poll each hold a connection for good.
        self._pool_size_added += delta
        self.db.setPoolSize(self.db.getPoolSize() + delta)

    def _leave_queues(self):
        tm = self.conn.transaction_manager
        for attempt in range(5):
            try:
                tm.begin()
                self._tell_agents()
                queues = self.conn.root().get(interfaces.KEY)
                if queues is not None:
                    for queue in queues.values():
                        da = queue.dispatchers.get(self.UUID)
                        if da is not None and da.activated:
                            da.deactivate()
                tm.commit()
                return
            except zc.twist.TransactionError:
                tm.abort()
            except Exception:
                tm.abort()
                log.exception('error deactivating dispatcher %s', self.UUID)
                return
        log.critical('could not deactivate dispatcher %s: five transaction '
                     'errors', self.UUID)

    def stop(self, timeout=30):
        """Deactivate, stop the private reactor and wait for it.

        Harmless on a dispatcher that is already stopped.
        """
        reactor, thread = self.reactor, self.thread
        if thread is not None and thread.is_alive():
            reactor.callFromThread(reactor.stop)
            thread.join(timeout)
            if thread.is_alive():
                raise RuntimeError('dispatcher %s did not stop within %s s'
                                   % (self.UUID, timeout))
        elif self.activated and reactor is not None:
            reactor.callFromThread(self._shutdown_trigger)
            self._stopped.wait(timeout)
        with _registry_lock:
            if _dispatchers.get(self.UUID) is self:
                del _dispatchers[self.UUID]

    # -- polling ---------------------------------------------------------------

    def _wake_threadsafe(self):
        if self._wake_pending or self._stopping:
            return
        self._wake_pending = True
        try:
            self.reactor.callFromThread(self._poll_now)
        except Exception:
            self._wake_pending = False

    def _wants_wake(self):
        """Whether a commit that changed a queue should wake a poll: not
        when it is this poll's own.

        The commit of a poll (its claims) changes the queue too, and its
        invalidation is delivered in the committing thread, during the
        poll; that poll has seen everything already, so another one right
        after it would only find the agents as it left them.  Commits of
        other threads and processes still wake the dispatcher.
        """
        if self._polling and threading.get_ident() == self._poll_thread:
            return False
        # When every pool has jobs waiting, a worker will wake us.
        return not self._pools_stocked()

    def _pools_stocked(self):
        """Whether every worker pool holds more waiting jobs than its
        low-water mark (``AgentThreadPool.low_water``).  Never true without
        prefetch, nor before the first poll made the pools."""
        pools = [pool for agents in list(self.queues.values())
                 for pool in list(agents.values())]
        return bool(pools) and all(
            pool.prefetch and pool._queue.qsize() > pool.low_water()
            for pool in pools)

    def _defer_completion(self, job, agent):
        """Note a job a worker is completing; the poll tells its agent.

        Noted once the job's transaction commits, so that the poll sees the
        job COMPLETED.
        """
        pair = (job._p_oid, agent._p_oid)

        def committed(ok):
            if ok:
                self._completions.append(pair)
        job._p_jar.transaction_manager.get().addAfterCommitHook(committed)
        handoff = local._get('handoff')
        if handoff is not None:
            handoff.start_next(job)

    def _tell_agents(self):
        """Move the jobs workers completed into their agents' records.

        Runs in the poll's transaction.  Returns how many noted completions
        it dealt with, to be forgotten once the poll commits.
        """
        handled = list(self._completions)
        for job_oid, agent_oid in handled:
            job = self.conn.get(job_oid)
            agent = self.conn.get(agent_oid)
            if (job.status == interfaces.COMPLETED and job.parent is agent
                    and any(held is job for held in agent)):
                agent.jobCompleted(job)
        return handled

    def _worker_free(self, pool):
        """A worker finished a job: claim more without waiting for a poll.

        With prefetched jobs still waiting in the pool, the claim waits
        until the pool is down to its low-water mark, so that one poll (one
        commit) claims several jobs.
        """
        if pool._queue.qsize() <= pool.low_water():
            self._wake_threadsafe()

    def _poll_now(self):
        self._wake_pending = False
        if not self.activated or self._polling:
            return
        if self._poll_call is not None and self._poll_call.active():
            self._poll_call.cancel()
        self._poll_thread = threading.get_ident()
        self._polling = True
        try:
            self.poll()
        finally:
            self._polling = False
            if self.activated:
                self._poll_call = self.reactor.callLater(
                    self.poll_interval, self._poll_now)

    def poll(self):
        """One poll: join the queues, ping, claim jobs; return its record."""
        poll_info = PollInfo()
        tm = self.conn.transaction_manager
        try:
            for attempt in range(5):
                # Queues joined in this attempt count once it commits.
                self._joining = set()
                # Jobs handed out so far, taken before the transaction
                # begins: a job finished since may still look ASSIGNED in
                # this transaction's (older) view of the database.
                self._known = set(self._handed)
                try:
                    tm.begin()
                    self._catch_up(tm)
                    told = self._tell_agents()
                    handed = self._poll_once(poll_info)
                    tm.commit()
                    self._activated |= self._joining
                    for _ in told:
                        self._completions.popleft()
                except zc.twist.TransactionError as exc:
                    tm.abort()
                    poll_info.clear()
                    if isinstance(exc, zc.twist.ClientDisconnected):
                        poll_info['error'] = zc.twist.Failure()
                        break
                    continue
                except Exception:
                    tm.abort()
                    log.exception('poll error in dispatcher %s', self.UUID)
                    poll_info['error'] = zc.twist.Failure()
                    break
                for pool, item in handed:
                    self._handed.add(item[0])
                    pool.put(item)
                break
        finally:
            tm.abort()
            self._poll_count += 1
            poll_info.key = self._poll_count
            self.polls.appendleft(poll_info)
            if len(self.polls) < 2 or self.polls[1] != poll_info:
                tracelog.debug('poll %s: %r', poll_info.key, poll_info)
        return poll_info

    #: How long a poll waits for its view to include the commit that woke
    #: it (see ``_InvalidationWatcher.view_is_older``).
    CATCH_UP_SECONDS = 0.05

    def _catch_up(self, tm):
        watcher = self._watcher
        if watcher is None or not watcher.view_is_older(self.conn):
            return
        awaited = watcher.tid
        deadline = time.monotonic() + self.CATCH_UP_SECONDS
        while time.monotonic() < deadline:
            time.sleep(0.0002)
            tm.begin()
            if not watcher.view_is_older(self.conn):
                return
        # The storage may have gone back in time (a ZEO server restored
        # from a backup, say): forget the commit rather than wait on it in
        # every poll (unless a newer one came meanwhile).
        if watcher.tid == awaited:
            watcher.tid = None
        log.warning('the database never showed the commit that woke the '
                    'dispatcher (%s s): polling without it',
                    self.CATCH_UP_SECONDS)

    def _poll_once(self, poll_info):
        """The work of a poll inside its transaction; returns the handovers.

        Jobs are handed to worker threads only once the claims commit.
        """
        handed = []
        queues = self.conn.root().get(interfaces.KEY)
        if queues is None:
            return handed
        watched = set()
        for queue_name, queue in queues.items():
            poll_info[queue_name] = None
            da = self._join(queue)
            watched.add(queue._p_oid)
            length = getattr(queue, '_length', None)
            if length is not None and length._p_oid is not None:
                watched.add(length._p_oid)
            if da is None:
                continue
            queue.dispatchers.ping(self.UUID)
            agents_info = poll_info[queue_name] = {}
            pools = self.queues.setdefault(queue_name, {})
            for agent_name, agent in da.items():
                info = agents_info[agent_name] = {
                    'size': None, 'len': None, 'error': None,
                    'new jobs': [], 'active jobs': []}
                try:
                    size = agent.size
                    info['size'] = size
                    info['active jobs'] = [getId(j) for j in agent]
                except Exception:
                    info['error'] = zc.twist.Failure()
                    continue
                pool = pools.get(agent_name)
                if pool is None:
                    pool = pools[agent_name] = AgentThreadPool(
                        self, queue_name, agent_name)
                if pool.getSize() != size:
                    self._grow_db_pool(pool.setSize(size))
                elif pool.alive() < size:
                    log.critical('%d worker thread(s) of agent %r of queue '
                                 '%r died; starting new ones',
                                 size - pool.alive(), agent_name, queue_name)
                    pool.setSize(size)
                pool.prefetch = getattr(agent, 'prefetch', 0)
                idle = pool.idle()
                for job in list(agent):
                    if job._p_oid in self._known or job._p_oid in self._broken:
                        continue
                    # Held by this dispatcher's agent but in no thread nor
                    # pool: a commit raised though it took effect (a ZEO
                    # disconnect at the wrong moment, say).
                    status = job.status
                    if status == interfaces.COMPLETED:
                        agent.jobCompleted(job)   # its notice was lost
                        continue
                    started = (status == interfaces.ACTIVE
                               and self._marks.get(job._p_oid)
                               == job._active_start)
                    if status == interfaces.ASSIGNED or started:
                        # Unstarted, or marked ACTIVE by this dispatcher
                        # and never called: hand it out (again).
                        job_id = getId(job)
                        again = self._new_job_info(
                            job, queue_name, agent_name)
                        again['agent oid'] = agent._p_oid
                        again['active committed'] = started
                        handed.append((pool, (job._p_oid, job_id[1], again)))
                self._prefetch_claims(queue, agent)
                claimed = []
                while True:
                    job = agent.claimJob()
                    if job is None:
                        break
                    claimed.append(job)
                    if job._p_oid is None:
                        self.conn.add(job)
                    job_id = getId(job)
                    job_info = self._new_job_info(job, queue_name,
                                                  agent_name)
                    job_info['agent oid'] = agent._p_oid
                    if idle > 0 and job.status == interfaces.ASSIGNED:
                        # A thread waits for it: start it in this commit
                        # (ACTIVE before the call, one commit fewer).
                        job._mark_active()
                        self._marks[job._p_oid] = job._active_start
                        job_info['active committed'] = True
                        idle -= 1
                    info['new jobs'].append(job_id)
                    handed.append((pool, (job._p_oid, job_id[1], job_info)))
                self._prefetch_for_workers(claimed)
                info['len'] = len(agent)
            for agent_name in list(pools):
                if agent_name not in da:
                    pool = pools.pop(agent_name)
                    self._grow_db_pool(-pool.getSize())
                    pool.stop()
                    self.dead_pools.append(pool)
        if self._watcher is not None:
            self._watcher.oids = frozenset(watched)
        return handed

    def _prefetch_claims(self, queue, agent):
        """With a backlog, ask for the jobs ``agent`` is about to claim in
        one batch.  (A single new job came with the commit that woke this
        poll: the watcher asked for it already.)"""
        room = agent.size + getattr(agent, 'prefetch', 0) - len(agent)
        if (room > 1 and self._can_prefetch and hasattr(queue, 'prefetch')
                and len(queue) > 1):
            queue.prefetch(room)

    def _prefetch_for_workers(self, claimed):
        """Ask for what the workers load next: each claimed job's callbacks.
        """
        if len(claimed) > 1 and self._can_prefetch:
            self.conn.prefetch([job.callbacks for job in claimed
                                if getattr(job.callbacks, '_p_oid', None)])

    def _join(self, queue):
        """Register and activate in ``queue``; return the agents or None."""
        da = queue.dispatchers.get(self.UUID)
        if da is None:
            da = queue.dispatchers.register(self.UUID)
        if (queue._p_oid not in self._activated
                and queue._p_oid not in self._joining):
            if self.ping_interval is not None:
                da.ping_interval = datetime.timedelta(
                    seconds=self.ping_interval)
            if self.ping_death_interval is not None:
                da.ping_death_interval = datetime.timedelta(
                    seconds=self.ping_death_interval)
            if (da.activated is not None and da.activated
                    == self._joined_at.get(queue._p_oid)):
                # This dispatcher's own activation, whose commit raised
                # though it took effect: adopt it.
                self._joining.add(queue._p_oid)
                return da
            if da.activated:
                if da.dead:
                    da.deactivate()
                else:
                    log.error(
                        'UUID %s already activated in queue %s (oid %d): '
                        'another process?  (To stop poll attempts in this '
                        'process, stop its dispatcher.  To stop polls '
                        "permanently, don't start a dispatcher!)",
                        self.UUID, queue.name, ZODB.utils.u64(queue._p_oid))
                    return None
            for agent_name, size in self.agents.items():
                if agent_name not in da:
                    from zc.asynchronous.agent import Agent
                    da[agent_name] = Agent(size=size, prefetch=self.prefetch)
            da.activate()
            self._joined_at[queue._p_oid] = da.activated
            self._joining.add(queue._p_oid)
        return da

    def _new_job_info(self, job, queue_name, agent_name):
        info = {
            'result': None, 'failed': False, 'agent': agent_name,
            'queue': queue_name, 'poll id': self._poll_count + 1,
            # The repr loads the job's arguments: the worker makes it, off
            # the poll's path (over ZEO each load is a round trip).
            'quota names': job.quota_names, 'call': '<job %d>' % (
                ZODB.utils.u64(job._p_oid),),
            'started': None, 'completed': None, 'thread': None,
            'reassigned': False,
        }
        self.jobs[getId(job)] = info
        while len(self.jobs) > self.jobs_size:
            self.jobs.popitem(last=False)
        return info

    # -- running a job (in a worker thread) ------------------------------------

    def _run_job(self, conn, tm, oid, dbname, info, started=False):
        """Load and run one job; ``started``: its ACTIVE is committed."""
        info['thread'] = threading.get_ident()
        info['started'] = _naive_utcnow()
        backoff = None
        while True:
            try:
                tm.begin()
                jar = conn
                if dbname and dbname != conn.db().database_name:
                    jar = conn.get_connection(dbname)
                job = jar.get(oid)
                jar.setstate(job)
                info['call'] = repr(job)
                tracelog.info('starting in thread %s: %s', info['thread'],
                              info['call'])
                if not _held_by(job, info):
                    log.warning('%s is no longer held by this dispatcher '
                                '(cleaned up as if it were dead?): skipped',
                                info['call'])
                    info['reassigned'] = True
                    return
                if (not started and job._status == interfaces.ACTIVE
                        and self._marks.get(oid) == job._active_start):
                    started = True   # marked by a commit that raised
                run_started, started = started, False  # never twice
                if run_started:
                    self._marks.pop(oid, None)
                result = self._call_job(job, tm, run_started)
                break
            except interfaces.ReassignedError:
                tm.abort()
                info['reassigned'] = True
                log.error('%s was taken from this worker while it ran (its '
                          "dispatcher was taken for dead?); the call's "
                          'result is dropped', info['call'], exc_info=True)
                info['completed'] = _naive_utcnow()
                return
            except zc.twist.ClientDisconnected:
                tm.abort()
                from zc.asynchronous.job import _wait_for_storage
                backoff = _wait_for_storage(conn, backoff)
                if not self.activated:
                    return
            except zc.twist.TransactionError:
                tm.abort()
                time.sleep(0.01)
            except Exception:
                tm.abort()
                log.critical('unexpected error running job %r; it is left '
                             'alone until this dispatcher restarts',
                             info['call'], exc_info=True)
                info['failed'] = True
                info['result'] = zc.twist.Failure().getTraceback()
                info['completed'] = _naive_utcnow()
                # Do not hand it out again and again (it may not even
                # load); a restart, or a sibling's clean-up, retries it.
                self._broken.add(oid)
                return
        if isinstance(result, zc.twist.Failure):
            info['failed'] = True
            text = result.getTraceback()
            log.error('%s failed in thread %s with traceback:\n%s',
                      info['call'], info['thread'], text)
        else:
            text = repr(result)
            tracelog.info('%s succeeded in thread %s with result: %s',
                          info['call'], info['thread'], text)
        if len(text) > 10000:
            text = text[:10000] + '\n[...TRUNCATED...]'
        info['result'] = text
        info['completed'] = _naive_utcnow()

    def _call_job(self, job, tm, started=False):
        """Call ``job`` (``started``: its ACTIVE is committed already)."""
        try:
            return job._run_active() if started else job()
        except interfaces.BadStatusError:
            log.error('job already completed? %r', job, exc_info=True)
            tm.abort()
            status = job.status
            if status == interfaces.CALLBACKS:
                job.resumeCallbacks()
            elif status == interfaces.COMPLETED:
                agent = job.parent
                if interfaces.IAgent.providedBy(agent) and job in list(agent):
                    agent.jobCompleted(job)
                    tm.commit()
            elif status in (interfaces.ACTIVE, interfaces.NEW,
                            interfaces.ASSIGNED):
                job.fail()
            return job.result

    # -- introspection ---------------------------------------------------------

    def getStatusInfo(self):
        last = self.polls[0] if self.polls else None
        status = self.STOPPED
        since = None
        if self.activated:
            if last is None:
                status = self.STARTING
            else:
                since = _naive_utcnow() - last.utc_timestamp
                overdue = since > datetime.timedelta(
                    seconds=self.poll_interval * 2 + 5)
                status = self.STUCK if overdue else self.RUNNING
        uptime = None
        if self.activated:
            uptime = _naive_utcnow() - self.activated
        return {
            'uuid': self.UUID,
            'poll interval': datetime.timedelta(seconds=self.poll_interval),
            'status': status,
            'time since last poll': since,
            'uptime': uptime,
        }

    def getJobInfo(self, oid, database_name=None):
        if database_name is None:
            # A copy: the reactor thread adds to the history meanwhile.
            matches = [key for key in self.jobs.copy() if key[0] == oid]
            if len(matches) > 1:
                raise ValueError('ambiguous database name')
            if not matches:
                raise ValueError('no job %r in the history' % (oid,))
            return self.jobs[matches[0]]
        return self.jobs[(oid, database_name)]

    def getActiveJobIds(self, queue=None, agent=None):
        """Ids of the jobs worker threads hold right now."""
        ids = []
        for queue_name, pools in self.queues.items():
            if queue is not None and queue_name != queue:
                continue
            for agent_name, pool in pools.items():
                if agent is not None and agent_name != agent:
                    continue
                ids.extend(pool.jobids.values())
        return sorted(ids)

    def getPollInfo(self, at=None, before=None):
        if at is not None and before is not None:
            raise ValueError('may only provide one of `at` and `before`')
        for poll in self.polls:
            if at is None and before is None:
                return poll
            if at is not None and (poll.key == at or (
                    isinstance(at, datetime.datetime)
                    and poll.utc_timestamp <= at)):
                return poll
            if before is not None and (
                    (isinstance(before, int) and poll.key < before)
                    or (isinstance(before, datetime.datetime)
                        and poll.utc_timestamp < before)):
                return poll
        raise ValueError('no poll matches')

    def iterPolls(self, at=None, before=None, since=None, count=None):
        polls = list(self.polls)
        if at is not None or before is not None:
            start = self.getPollInfo(at=at, before=before)
            polls = polls[polls.index(start):]
        if since is not None:
            polls = [p for p in polls if p.utc_timestamp >= since]
        if count is not None:
            polls = polls[:count]
        return iter(polls)

    def getStatistics(self, queue=None, agent=None):
        """Counts and extremes over the jobs in the in-memory history."""
        started = successful = failed = active = 0
        durations = []
        for job_id, info in self.jobs.copy().items():
            if queue is not None and info['queue'] != queue:
                continue
            if agent is not None and info['agent'] != agent:
                continue
            if info['started'] is None:
                continue
            started += 1
            if info['completed'] is None:
                active += 1
                continue
            if info['failed']:
                failed += 1
            else:
                successful += 1
            durations.append((info['completed'] - info['started'], job_id,
                              info['failed']))
        ok = sorted((d, i) for d, i, f in durations if not f)
        bad = sorted((d, i) for d, i, f in durations if f)
        return {
            'started': started,
            'successful': successful,
            'failed': failed,
            'active': active,
            'handed off': self.handoffs,
            'shortest successful': ok[0] if ok else None,
            'longest successful': ok[-1] if ok else None,
            'shortest failed': bad[0] if bad else None,
            'longest failed': bad[-1] if bad else None,
            'statistics start': (self.polls[-1].utc_timestamp
                                 if self.polls else None),
            'statistics end': (self.polls[0].utc_timestamp
                               if self.polls else None),
        }


class PollInfo(dict):
    """What one poll saw, by queue and agent, with its key and time."""

    key = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.utc_timestamp = _naive_utcnow()
