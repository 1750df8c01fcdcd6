"""What a running job can learn about where it runs.

Set by the job while it runs and by the dispatcher's worker threads; read
with ``getJob()``, ``getQueue()``, ``getDispatcher()``, ``getReactor()`` and
``getAgentName()``.  Outside a job these return None.
"""
import threading

_state = threading.local()


def _get(name):
    return getattr(_state, name, None)


def getJob():
    """The job running in this thread (the callback, inside a callback)."""
    return _get('job')


def getQueue():
    """The queue of the running job, or None."""
    job = getJob()
    return job.queue if job is not None else None


def getDispatcher():
    """The dispatcher whose worker thread this is, or None."""
    return _get('dispatcher')


def getReactor():
    """The reactor of this thread's dispatcher, or None."""
    dispatcher = getDispatcher()
    return dispatcher.reactor if dispatcher is not None else None


def getAgentName():
    """The name of the agent this worker thread serves, or None."""
    return _get('agent_name')


def _set(**values):
    """Set thread-local values (for the job and the dispatcher only)."""
    for name, value in values.items():
        setattr(_state, name, value)


def _job_or_current(job):
    job = job if job is not None else getJob()
    if job is None or job._p_jar is None:
        raise ValueError('not initialized')
    return job


def setLiveAnnotation(name, value, job=None):
    """Store ``job.annotations[name] = value`` now, for others to read.

    Written and committed in a connection of its own, so the running job's
    own transaction is untouched (and does not see the value until its next
    transaction).  Values should be small, immutable and not persistent.
    """
    import transaction
    import zc.twist
    job = _job_or_current(job)
    db = job._p_jar.db()
    oid = job._p_oid
    for attempt in range(10):
        tm = transaction.TransactionManager()
        conn = db.open(transaction_manager=tm)
        try:
            conn.get(oid).annotations[name] = value
            tm.commit()
            return
        except zc.twist.TransactionError:
            tm.abort()
        finally:
            conn.close()
    raise RuntimeError('could not store annotation %r: ten conflicts' % name)


def getLiveAnnotation(name, default=None, timeout=0, poll=0.1, job=None):
    """Read ``job.annotations[name]`` as committed, waiting up to ``timeout``.

    Read in a connection of its own, so it sees values committed by others
    since the running job's transaction began.
    """
    import time
    import transaction
    job = _job_or_current(job)
    db = job._p_jar.db()
    oid = job._p_oid
    deadline = time.monotonic() + timeout
    while True:
        tm = transaction.TransactionManager()
        conn = db.open(transaction_manager=tm)
        try:
            annotations = conn.get(oid).annotations
            if name in annotations:
                return annotations[name]
        finally:
            tm.abort()
            conn.close()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return default
        time.sleep(min(poll, remaining))
