"""The Job: a persistent partial with a status, a result and callbacks.

A job wraps a callable (a global function, a persistent callable, or a
method of a persistent object, stored as the object plus the method's
name) with arguments.  Calling the job calls the callable and keeps what
it returned; callbacks, themselves jobs, then receive that result.

A job commits and aborts its own transactions, through the transaction
manager of the connection it belongs to (``ITransactionManager(job)``):

1. the ACTIVE status is committed before the call, so a crash is visible;
2. the result (and the CALLBACKS status) is committed after the call; a
   raised exception aborts the call's writes first and stores a Failure;
3. each callback commits its own work;
4. COMPLETED is committed last.  A job without callbacks commits 2 and 4
   together.

A ``TransactionError`` (a conflict, say) while the call or its commit runs
aborts and calls again: five attempts in all, then the last error is kept
as the result.
"""
import datetime
import logging
import time
import types

import BTrees.OOBTree
import persistent.list
import persistent.mapping
import transaction.interfaces
import ZODB.broken
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure as TwistedFailure
import zc.queue
import zope.component
import zope.interface

import zc.twist
from zc.asynchronous import interfaces, jobstate, local, utils
from zc.asynchronous.interfaces import (
    ACTIVE, ASSIGNED, CALLBACKS, COMPLETED, NEW, PENDING, BadStatusError)

log = logging.getLogger('zc.asynchronous.job')

#: How many times a call is made when it keeps meeting transaction errors.
MAX_TRANSACTION_ATTEMPTS = 5


def success_or_failure(success, failure, res):
    """Route a result to ``failure`` if it is a Failure, else to ``success``.

    The callable of the intermediate job ``addCallbacks`` makes.  With no
    callable for that side the result passes through unchanged.
    """
    if interfaces.IFailure.providedBy(res):
        if failure is not None:
            res = failure(res)
    elif success is not None:
        res = success(res)
    return res


def completeStartedJobArguments(job, result):
    """Finish argument jobs an interrupted ``success_or_failure`` left.

    The safety callback of each intermediate job: when the intermediate
    job failed (its worker died, say), a success or failure job that was
    ACTIVE is failed and one that was in CALLBACKS resumes them.
    """
    if isinstance(result, TwistedFailure):
        for argument in job.args:
            if interfaces.IJob.providedBy(argument):
                if argument.status == ACTIVE:
                    argument.fail()
                elif argument.status == CALLBACKS:
                    argument.resumeCallbacks()


def _decompose(value):
    """Split a callable into (root, name), so that it can be pickled."""
    if isinstance(value, types.MethodType):
        return value.__self__, value.__name__
    if isinstance(value, zc.twist.METHOD_WRAPPER_TYPE):
        return zc.twist.get_self(value), value.__name__
    if isinstance(value, types.BuiltinMethodType):
        owner = value.__self__
        # A builtin function's __self__ is its module: keep those whole.
        if owner is not None and not isinstance(owner, types.ModuleType):
            return owner, value.__name__
    return value, None


def _walk_parents(start, passable):
    """Yield the parents of ``start`` while they provide ``passable``.

    Stops at the first ancestor that does not (yielding it) and at a
    cycle, so that a job set up oddly can never loop forever.
    """
    seen = set()
    ob = start
    while ob is not None and id(ob) not in seen:
        seen.add(id(ob))
        yield ob
        if not any(iface.providedBy(ob) for iface in passable):
            return
        ob = getattr(ob, 'parent', None)


#: Backoff while the storage is disconnected: first wait, step, largest.
DISCONNECTED_BACKOFF = (5.0, 5.0, 60.0)


def _wait_for_storage(connection, backoff):
    """Wait until ``connection``'s storage is connected, at most ``backoff``.

    Returns the next backoff.  Storages without ``is_connected`` (anything
    but a ZEO client) are taken as connected.
    """
    initial, step, largest = DISCONNECTED_BACKOFF
    backoff = initial if backoff is None else min(backoff + step, largest)
    storage = getattr(connection.db(), 'storage', None) if connection else None
    is_connected = getattr(storage, 'is_connected', None)
    if is_connected is None or is_connected():
        return backoff
    log.warning('storage disconnected while a job ran; waiting up to %s s',
                backoff)
    deadline = time.monotonic() + backoff
    while time.monotonic() < deadline:
        if is_connected is not None and is_connected():
            break
        time.sleep(0.05)
    return backoff


def _find_global(module, name):
    """The global ``module.name``, or ZODB's Broken stand-in for it."""
    return ZODB.broken.find_global(module, name)


class _GlobalName:
    """Pickles as a lookup of a global that could not be imported.

    A job whose callable's module is missing in this process loads with a
    Broken class in its place, which cannot be pickled again; this keeps
    the name instead, so that the job can still be stored (failed, put
    back) and runs in a process that has the module.
    """

    def __init__(self, module, name):
        self.module = module
        self.name = name

    def __reduce__(self):
        return _find_global, (self.module, self.name)

    def resolve(self):
        """The global if it can be imported now, else its Broken class."""
        return _find_global(self.module, self.name)

    def __repr__(self):
        return '%s.%s' % (self.module, self.name)


def _is_broken(obj):
    return isinstance(obj, type) and issubclass(obj, ZODB.broken.Broken)


def as_job(obj):
    """``obj`` as an IJob: a job as it is, a callable adapted or wrapped."""
    if interfaces.IJob.providedBy(obj):
        return obj
    job = interfaces.IJob(obj, None)
    if job is None:
        if not callable(obj):
            raise TypeError('a job needs a callable, not %r' % (obj,))
        job = Job(obj)
    return job


@zope.interface.implementer(interfaces.IJob)
class Job(utils.Base):
    """A persistent call.  See ``zc.asynchronous.interfaces.IJob``.

    ``Job(callable, *args, **kwargs)``: ``args`` and ``kwargs`` are kept in
    persistent containers and may be changed until the job is called.
    """

    _callable_root = None
    _callable_name = None
    _result = None
    _status = NEW
    _begin_after = None
    _begin_by = None
    _active_start = None
    _active_end = None
    _quota_names = ()
    key = None
    assignerUUID = None
    # See zc.asynchronous.jobstate: kept inline, or made when first changed.
    _args = ()
    _kwargs = None

    def __init__(*args, **kwargs):
        if not args:
            raise TypeError('Job.__init__ needs its instance')
        self, args = args[0], args[1:]
        if not args:
            raise TypeError('Job() needs a callable as its first argument')
        if len(args) > 1:
            self.args = args[1:]
        self.callable = args[0]
        if kwargs:
            self.kwargs = kwargs
        self.callbacks = zc.queue.PersistentQueue()
        self.annotations = BTrees.OOBTree.OOBTree()

    #: Where jobs stored by earlier versions kept their containers.
    _OLD_NAMES = (('args', '_args'), ('kwargs', '_kwargs'))

    def __setstate__(self, state):
        if 'args' in state:
            state = dict(state)
            for old, new in self._OLD_NAMES:
                if old in state:
                    state[new] = state.pop(old)
        root = state.get('_callable_root')
        if _is_broken(root):
            # Its module is missing here: keep the name, which pickles.
            state = dict(state)
            state['_callable_root'] = _GlobalName(
                root.__module__, root.__name__)
        super().__setstate__(state)

    # -- arguments (see jobstate) -----------------------------------------

    @property
    def args(self):
        stored = self._args
        if isinstance(stored, tuple):
            return jobstate.ArgsView(self)
        return stored

    @args.setter
    def args(self, values):
        if isinstance(values, jobstate.ArgsView) and values._job is self:
            return   # ``job.args += ...`` changed the arguments in place
        if not isinstance(values, persistent.list.PersistentList):
            values = tuple(values)
            if not jobstate.inline_sequence(values):
                values = persistent.list.PersistentList(values)
        self._args = values

    def _own_args(self):
        if isinstance(self._args, tuple):
            self._args = persistent.list.PersistentList(self._args)
        return self._args

    @property
    def kwargs(self):
        stored = self._kwargs
        if stored is None or type(stored) is dict:
            return jobstate.KwargsView(self)
        return stored

    @kwargs.setter
    def kwargs(self, mapping):
        if isinstance(mapping, jobstate.KwargsView) and mapping._job is self:
            return
        if not isinstance(mapping, persistent.mapping.PersistentMapping):
            mapping = dict(mapping) or None   # none: nothing stored
            if mapping and not jobstate.inline_mapping(mapping):
                mapping = persistent.mapping.PersistentMapping(mapping)
        self._kwargs = mapping

    def _own_kwargs(self):
        stored = self._kwargs
        if stored is None or type(stored) is dict:
            self._kwargs = persistent.mapping.PersistentMapping(stored or {})
        return self._kwargs

    @classmethod
    def bind(klass, *args, **kwargs):
        """Make a job that passes itself as the callable's first argument."""
        res = klass(*args, **kwargs)
        if isinstance(res._args, tuple):
            res._args = (res,) + res._args   # the job is a reference
        else:
            res._args.insert(0, res)
        return res

    # -- what the job is --------------------------------------------------

    @property
    def callable(self):
        root = self._callable_root
        if type(root) is _GlobalName:
            root = root.resolve()
        if self._callable_name is None:
            return root
        return getattr(root, self._callable_name)

    @callable.setter
    def callable(self, value):
        if self._status != NEW:
            raise BadStatusError(
                'can only set callable when a job has NEW, PENDING, or '
                'ASSIGNED status')
        if not callable(value):
            raise TypeError('a job needs a callable, not %r' % (value,))
        root, name = _decompose(value)
        self._callable_root = root
        if name is not None or '_callable_name' in self.__dict__:
            self._callable_name = name   # not stored when None (the default)
        if (root is not self and interfaces.IJob.providedBy(root)
                and root.parent is None):
            # The wrapper job (``Job(orphan.resumeCallbacks)``) becomes the
            # orphan's parent, so that ``orphan.queue`` still resolves.
            root.parent = self

    @property
    def status(self):
        status = self._status
        if status == NEW:
            parent = self.parent
            if parent is None:
                return NEW   # the common case, without the walk
            ancestor = None
            for ancestor in _walk_parents(parent, (interfaces.IJob,)):
                pass
            if ancestor is not None and ancestor is not self:
                if interfaces.IAgent.providedBy(ancestor):
                    return ASSIGNED
                if interfaces.IQueue.providedBy(ancestor):
                    return PENDING
        return status

    @property
    def result(self):
        return self._result

    @property
    def queue(self):
        for ob in _walk_parents(self.parent, (
                interfaces.IJob, interfaces.IAgent,
                interfaces.IDispatcherAgents)):
            if interfaces.IQueue.providedBy(ob):
                return ob
        return None

    @property
    def agent(self):
        for ob in _walk_parents(self.parent, (interfaces.IJob,)):
            if interfaces.IAgent.providedBy(ob):
                return ob
        return None

    # Kept as utils.dt_to_micros ints (see there); compared as stored.

    @property
    def active_start(self):
        return utils.micros_to_dt(self._active_start)

    @property
    def active_end(self):
        return utils.micros_to_dt(self._active_end)

    @property
    def initial_callbacks_end(self):
        if self.key is None:
            return None
        return utils.long_to_dt(self.key).replace(tzinfo=utils.pytz.UTC)

    @property
    def begin_after(self):
        return self._begin_after

    @begin_after.setter
    def begin_after(self, value):
        if self.status != NEW:
            raise BadStatusError(
                'can only set begin_after when a job has NEW status')
        if value is not None:
            if not isinstance(value, datetime.datetime):
                raise TypeError('begin_after must be a datetime, not %r'
                                % (value,))
            # Naive also means a tzinfo whose utcoffset() is None;
            # astimezone() would silently take such a value as local time.
            if value.tzinfo is None or value.utcoffset() is None:
                raise ValueError('cannot use timezone-naive values')
            value = value.astimezone(utils.pytz.UTC)
        self._begin_after = value

    @property
    def begin_by(self):
        return self._begin_by

    @begin_by.setter
    def begin_by(self, value):
        if self.status not in (NEW, PENDING):
            raise BadStatusError(
                'can only set begin_by when a job has NEW or PENDING status')
        if value is not None:
            if not isinstance(value, datetime.timedelta):
                raise TypeError('begin_by must be a timedelta, not %r'
                                % (value,))
            if value < datetime.timedelta():
                raise ValueError('negative values are not allowed')
        self._begin_by = value

    @property
    def quota_names(self):
        return self._quota_names

    @quota_names.setter
    def quota_names(self, value):
        if isinstance(value, (str, bytes)):
            raise TypeError('provide an iterable of names')
        status = self.status
        if status not in (NEW, PENDING):
            raise BadStatusError(
                'can only set quota_names when a job has NEW or PENDING '
                'status')
        value = tuple(value)
        if status == PENDING:
            quotas = self.queue.quotas
            for name in value:
                if name not in quotas:
                    raise ValueError('unknown quota name', name)
        self._quota_names = value

    def __repr__(self):
        try:
            call = utils.custom_repr(self._callable_root)
            if self._callable_name is not None:
                call += ' :' + self._callable_name
            parts = [utils.custom_repr(a) for a in self._args]
            parts.extend('%s=%s' % (k, utils.custom_repr(v))
                         for k, v in (self._kwargs or {}).items())
            return '<%s ``%s(%s)``>' % (
                utils.custom_repr(self), call, ', '.join(parts))
        except Exception:
            return object.__repr__(self)

    # -- callbacks ---------------------------------------------------------

    def addCallbacks(self, success=None, failure=None):
        if success is None and failure is None:
            return self
        if success is not None:
            success = as_job(success)
        if failure is not None:
            failure = as_job(failure)
        res = Job(success_or_failure, success, failure)
        for inner in (success, failure):
            if inner is not None:
                inner.parent = res
        self.addCallback(res)
        # If a worker dies while ``res`` runs, this fails or resumes the
        # argument job it was running (resumeCallbacks does not look inside
        # arguments).
        res.addCallback(Job(completeStartedJobArguments, res))
        return res

    def addCallback(self, callback):
        callback = as_job(callback)
        self.callbacks.put(callback)
        callback.parent = self
        if self._status == COMPLETED:
            callback(self._result)  # commits
        else:
            # Make a concurrent completion conflict with this addition, so
            # that one side sees the other (see the race notes in the docs).
            self._p_changed = True
        return callback

    # -- running -----------------------------------------------------------

    def _transaction_manager(self):
        tm = transaction.interfaces.ITransactionManager(self, None)
        if tm is None:
            # No adapter registered (configure.base() not called): find the
            # connection directly, through __parent__ if need be.
            conn = zc.twist.connection(self)
            if conn is not None:
                tm = conn.transaction_manager
        if tm is None:
            raise ValueError(
                '%r belongs to no database connection: store it (or give it '
                'a __parent__ that is stored) before calling it' % (self,))
        return tm

    def __call__(self, *args, **kwargs):
        return self._call(None, args, kwargs)

    def _call(self, tm, args, kwargs):
        """``__call__``, with the transaction manager when the caller has it
        (a job calling its callbacks, which share its connection)."""
        status = self.status
        if status not in (NEW, ASSIGNED):
            raise BadStatusError(
                'can only call a job with NEW or ASSIGNED status')
        if tm is None:
            tm = self._transaction_manager()
        self._mark_active(status)
        try:
            tm.commit()
        except BaseException:
            tm.abort()
            raise
        return self._run_started(tm, args, kwargs)

    def _mark_active(self, status=None):
        """Check that the job may start and make it ACTIVE, uncommitted.

        The caller commits: ``__call__`` on its own, or a dispatcher's
        worker together with the completion of the job before.  The call
        itself (``_run_active``) must follow that commit.  ``status`` is
        the job's status when the caller just read it.
        """
        if status is None:
            status = self.status
        if status not in (NEW, ASSIGNED):
            raise BadStatusError(
                'can only call a job with NEW or ASSIGNED status')
        self._status = ACTIVE
        self._active_start = utils.dt_to_micros(utils.now())

    def _run_active(self, *args, **kwargs):
        """Make the call of a job whose ACTIVE status is committed."""
        return self._run_started(None, args, kwargs)

    def _run_started(self, tm, args, kwargs):
        if self._status != ACTIVE:
            raise BadStatusError(
                'can only run a job whose ACTIVE status is committed')
        if tm is None:
            tm = self._transaction_manager()
        try:
            self._check_callable()
        except Exception:
            failure = zc.twist.Failure()
            self._store_failure(failure, tm)
            if self._status == CALLBACKS:
                self._resume_callbacks(tm)
            return failure
        effective_args = list(self._args)
        effective_args.extend(args)
        effective_kwargs = dict(self._kwargs or ())
        effective_kwargs.update(kwargs)
        previous = local.getJob()
        local._set(job=self)
        try:
            return self._call_with_retry(
                lambda: self.callable(*effective_args, **effective_kwargs),
                tm)
        finally:
            local._set(job=previous)

    def _check_callable(self):
        root = self._callable_root
        if type(root) is _GlobalName:
            root = root.resolve()
        if _is_broken(root):
            raise ImportError(
                'cannot import the callable of this job: %s.%s'
                % (root.__module__, root.__name__))
        if self._callable_name is not None:
            try:
                getattr(root, self._callable_name)
            except AttributeError:
                raise AttributeError(
                    'the callable of this job is gone: %s has no attribute '
                    '%r' % (utils.custom_repr(root), self._callable_name))

    def _call_with_retry(self, call, tm):
        attempts = 0
        disconnected_backoff = None
        started = self._active_start
        parent = self.parent
        while True:
            try:
                res = call()
                self._handle_result(res, tm)
            except zc.twist.ClientDisconnected:
                # The storage went away: the call's writes are lost, so wait
                # for the storage to come back and call again.  This does
                # not count as an attempt.
                tm.abort()
                disconnected_backoff = _wait_for_storage(
                    self._p_jar, disconnected_backoff)
                if (self._status in (CALLBACKS, COMPLETED)
                        and self._active_start == started
                        and self.parent is parent):
                    # The commit took effect; only its answer was lost.
                    res = self._result
                    break
                self._check_still_ours(started, parent)
                continue
            except zc.twist.TransactionError:
                tm.abort()
                self._check_still_ours(started, parent)
                attempts += 1
                if attempts < MAX_TRANSACTION_ATTEMPTS:
                    log.debug('transaction error %d calling %r; retrying',
                              attempts, self)
                    continue
                res = zc.twist.Failure()
                self._store_failure(res, tm)
            except BaseException as exc:
                tm.abort()
                if zc.twist.is_explosive(exc) or not isinstance(
                        exc, Exception):
                    raise
                res = zc.twist.Failure()
                self._store_failure(res, tm)
            break
        if self._status == CALLBACKS:
            self._resume_callbacks(tm)
        return res

    def _check_still_ours(self, started, parent):
        """After an abort, make sure nobody else took this job meanwhile.

        Calling again is right when the conflict was someone else's
        change elsewhere.  It is wrong when the job itself was taken from
        this call: failed or put back by the clean-up of a dispatcher that
        was taken for dead, say.  Then the call's result is dropped and
        ReassignedError says why.
        """
        if (self._status != ACTIVE or self._active_start != started
                or self.parent is not parent):
            raise interfaces.ReassignedError(
                '%r was taken from this call (its status is now %s); its '
                'result is dropped' % (self, self.status))

    def _handle_result(self, res, tm):
        """Store what the callable returned and commit.

        A job or a Deferred is waited on: the job stays ACTIVE and its
        ``_callback`` receives the end result later.
        """
        if res is self:
            raise BadStatusError('a job cannot wait on itself: %r returned '
                                 'its own job' % (self,))
        if interfaces.IJob.providedBy(res):
            res.addCallback(Job(self._callback))
        elif isinstance(res, Deferred):
            res.addBoth(zc.twist.Partial(self._callback))
        else:
            self._set_result(res)
        tm.commit()

    def _set_result(self, res):
        if isinstance(res, TwistedFailure):
            res = zc.twist.sanitize(res)
        self._result = res
        self._status = CALLBACKS
        self._active_end = utils.dt_to_micros(utils.now())
        if len(self.callbacks) == 0:
            # Nothing to call back: complete in the same commit.
            self._complete()

    def _complete(self):
        self._status = COMPLETED
        parent = self.parent
        if interfaces.IAgent.providedBy(parent):
            # A dispatcher's worker leaves the agent to the dispatcher's
            # poll, the agent's only writer: otherwise a worker's completion
            # and the poll's claims would conflict on the agent, and the
            # conflict would make the worker call its job again.
            defer = local._get('defer_agent_completion')
            if defer is not None:
                # The key the completed collection files the job under,
                # set now so that the poll need not write the job again.
                self.key = utils.dt_to_long(utils.now()) + 15
                defer(self, parent)
            else:
                parent.jobCompleted(self)

    def _store_failure(self, failure, tm):
        """Store ``failure`` as the result, retrying the commit on conflicts.

        The call's writes were aborted already; only the failure is
        committed.
        """
        for attempt in range(MAX_TRANSACTION_ATTEMPTS):
            self._set_result(failure)
            try:
                tm.commit()
                return
            except zc.twist.ClientDisconnected:
                tm.abort()
                raise
            except zc.twist.TransactionError:
                tm.abort()
                if attempt + 1 == MAX_TRANSACTION_ATTEMPTS:
                    raise
            except BaseException:
                tm.abort()
                raise

    def _callback(self, res):
        """Receive the end result of the job or Deferred this job waits on."""
        if self._status != ACTIVE:
            raise BadStatusError(
                'can only receive a result on a job with ACTIVE status')
        tm = self._transaction_manager()
        try:
            self._handle_result(res, tm)
        except zc.twist.TransactionError:
            tm.abort()
            raise    # the caller (a job or a Partial) retries
        except BaseException as exc:
            tm.abort()
            if zc.twist.is_explosive(exc) or not isinstance(exc, Exception):
                raise
            # The result could not be stored (it does not pickle, say):
            # keep why, rather than waiting for ever.
            self._store_failure(zc.twist.Failure(), tm)
        if self._status == CALLBACKS:
            self._resume_callbacks(tm)

    def fail(self, e=None):
        if e is None:
            e = interfaces.AbortedError()
        if self._status not in (NEW, ACTIVE):
            raise BadStatusError(
                'can only call fail on a job with NEW, PENDING, ASSIGNED, '
                'or ACTIVE status')
        tm = self._transaction_manager()
        self._set_result(zc.twist.Failure(e))
        try:
            tm.commit()
        except BaseException:
            tm.abort()
            raise
        if self._status == CALLBACKS:
            self._resume_callbacks(tm)

    def resumeCallbacks(self):
        if self._status != CALLBACKS:
            raise BadStatusError(
                'can only resumeCallbacks on a job with CALLBACKS status')
        self._resume_callbacks(self._transaction_manager())

    def _resume_callbacks(self, tm):
        done = 0
        callbacks = list(self.callbacks)
        jar = self._p_jar
        while True:
            for callback in callbacks:
                status = callback._status
                if status == NEW:
                    if (callback._p_jar is jar
                            and type(callback).__call__ is Job.__call__):
                        # In this job's connection, it shares its
                        # transaction manager.
                        callback._call(tm, (self._result,), {})
                    else:
                        callback(self._result)
                elif status == ACTIVE:
                    callback.fail()
                elif status == CALLBACKS:
                    callback.resumeCallbacks()
            done += len(callbacks)
            callbacks = list(self.callbacks)[done:]
            if callbacks:
                continue
            self._complete()
            try:
                tm.commit()
            except zc.twist.ClientDisconnected:
                tm.abort()
                raise
            except zc.twist.TransactionError:
                # Most likely someone added a callback: look again.
                tm.abort()
                callbacks = list(self.callbacks)[done:]
                continue
            except BaseException:
                tm.abort()
                raise
            return
