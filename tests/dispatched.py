"""Job callables for the in-process dispatcher tests (importable by name)."""
import threading
import time

from zc.asynchronous import local

events = {}


def add(a, b):
    return a + b


def fail():
    raise RuntimeError('this job fails')


def unpicklable():
    return threading.Lock()


def whoami():
    job = local.getJob()
    return (job._p_oid is not None, local.getDispatcher() is not None,
            local.getAgentName())


def report_progress():
    local.setLiveAnnotation('progress', 'halfway')
    seen_locally = 'progress' in local.getJob().annotations
    return ('halfway', seen_locally,
            local.getLiveAnnotation('progress', timeout=1))


def wait_for_event(name, seconds=10):
    events.setdefault(name, threading.Event()).wait(seconds)
    return name


def started_at():
    return time.time()


calls = {}


def count_call(n):
    """Count calls in memory: a job called again after a conflict shows."""
    calls[n] = calls.get(n, 0) + 1
    return n


def counted_sleep(name, seconds):
    """Count the call in memory, then sleep: a job that outlives a stop."""
    calls[name] = calls.get(name, 0) + 1
    time.sleep(seconds)
    return 'done'


def sleep(seconds):
    time.sleep(seconds)
    return seconds


def explode():
    """Raise an explosive error, which a job re-raises: it ends the
    worker thread."""
    raise SystemExit('explode on purpose')
