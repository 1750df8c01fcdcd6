"""The callables the benchmarks run: importable by every worker process.

They live in a module of their own so that a job pickled in one process
unpickles in another (pickle finds a function by module and name).
"""
import time


def noop():
    """The job of the overhead section: does nothing, returns a constant."""
    return 1


def callback(result):
    """The one callback of each overhead job."""
    return None


def started_at(put_time=None):
    """The end-to-end job: returns the time (``time.time()``) it started.

    ``put_time`` is ignored; it is stored with the job so that the bench
    can read it back, but the bench reads it from the job's arguments.
    """
    return time.time()
