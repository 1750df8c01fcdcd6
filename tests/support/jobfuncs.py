"""Job callables for the multi-process tests (importable by every process)."""
import time

import BTrees.OOBTree

from zc.asynchronous import local
from zc.asynchronous.dispatcher import get as get_dispatcher


def _runs(job):
    root = job._p_jar.root()
    return root['runs']


def record(n):
    """Note in the database that job ``n`` ran, and in which process."""
    job = local.getJob()
    runs = _runs(job)
    runs[n] = runs.get(n, ()) + (str(local.getDispatcher().UUID),)
    return n


def long_running(seconds):
    """Announce the start, then sleep: a job to kill a dispatcher under."""
    local.setLiveAnnotation('started', str(local.getDispatcher().UUID))
    time.sleep(seconds)
    return 'finished'


def note_failure(failure):
    """A failure callback: record what it received."""
    job = local.getJob()
    job._p_jar.root()['failure seen'] = repr(failure)
    return failure


def make_runs_tree():
    return BTrees.OOBTree.OOBTree()


__all__ = ['record', 'long_running', 'note_failure', 'make_runs_tree',
           'get_dispatcher']
