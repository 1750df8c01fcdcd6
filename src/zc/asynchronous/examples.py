"""Example job callables, and the batch of jobs ``zc-async demo`` puts.

Each function is an ordinary, importable global: that is all a job's
callable needs to be, because the job stores it by name and the
dispatcher (perhaps in another process) imports it again.  They are small
on purpose; ``demo_jobs`` shows the ways jobs combine: callbacks, a
failure handled by a callback, a job that hands its work on to another
job, and a job scheduled for later.
"""
import datetime
import time

from zc.asynchronous import local
from zc.asynchronous.job import Job

#: How long ``slow_square`` takes by default, in seconds.
SLOW_SECONDS = 0.3

#: How far in the future the demo schedules its late job, in seconds.
SCHEDULE_DELAY = 1.0


def add(a, b):
    """Return ``a + b``."""
    return a + b


def double(value):
    """Return ``value * 2`` (the demo uses it as a callback)."""
    return value * 2


def slow_square(n, seconds=SLOW_SECONDS):
    """Sleep ``seconds``, then return ``n * n``: a stand-in for real work."""
    time.sleep(seconds)
    return n * n


def fail(message):
    """Raise ``ValueError(message)``: the job's result becomes a Failure."""
    raise ValueError(message)


def explain_failure(failure):
    """A failure callback: describe the failure instead of passing it on."""
    return 'handled %s' % failure.type.__name__


def count_words(text):
    """Return how many words ``text`` has."""
    return len(text.split())


def count_words_later(text):
    """Put a ``count_words`` job in this job's queue and return that job.

    A job that returns another job waits for it: its own result becomes
    the other job's result.
    """
    return local.getQueue().put(Job(count_words, text))


def seconds_since(iso_time):
    """The seconds elapsed since ``iso_time`` (an aware ISO 8601 string)."""
    then = datetime.datetime.fromisoformat(iso_time)
    now = datetime.datetime.now(datetime.timezone.utc)
    return round((now - then).total_seconds(), 1)


def demo_jobs(queue, now=None):
    """Put the demo's batch of jobs in ``queue``; the caller commits.

    Returns ``(description, job)`` pairs, in the order of the puts.
    ``now`` (an aware datetime) is the time the scheduled job counts from.
    """
    if now is None:
        now = datetime.datetime.now(datetime.timezone.utc)
    jobs = []

    def put(description, job, **kw):
        jobs.append((description, queue.put(job, **kw)))
        return job

    put('add(2, 3), callback doubles',
        Job(add, 2, 3)).addCallback(double)
    for n in range(1, 5):
        put('slow_square(%d)' % n, Job(slow_square, n))
    put('fail(), callback handles it',
        Job(fail, 'on purpose')).addCallbacks(failure=explain_failure)
    put('count_words_later(): a job',
        Job(count_words_later, 'jobs can hand their work on to other jobs'))
    later = now + datetime.timedelta(seconds=SCHEDULE_DELAY)
    put('seconds_since(put), %gs later' % SCHEDULE_DELAY,
        Job(seconds_since, now.isoformat()), begin_after=later)
    return jobs
