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
