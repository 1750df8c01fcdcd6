"""Helpers for the tests of code that uses zc.asynchronous.

Each waits in real time, polling the database, and raises AssertionError
with a message that says what never happened once ``seconds`` have passed.
"""
import time

import ZODB.POSException

from zc.asynchronous import interfaces

POLL = 0.01


def _sync(job):
    tm = job._p_jar.transaction_manager
    try:
        tm.begin()
    except ZODB.POSException.ReadConflictError:
        pass


def _wait(condition, seconds, message):
    deadline = time.monotonic() + seconds
    while True:
        try:
            value = condition()
        except ZODB.POSException.ReadConflictError:
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(message)
        time.sleep(POLL)


def wait_for_result(job, seconds=6):
    """Wait until ``job`` is COMPLETED; return its result.

    Syncs the job's connection (``begin()`` on its transaction manager), so
    uncommitted changes in that connection are lost.
    """
    def completed():
        _sync(job)
        return job.status == interfaces.COMPLETED
    _wait(completed, seconds, 'job never completed')
    return job.result


def wait_for_start(job, seconds=6):
    """Wait until ``job`` has started (ACTIVE or later)."""
    def started():
        _sync(job)
        return job.status in (interfaces.ACTIVE, interfaces.CALLBACKS,
                              interfaces.COMPLETED)
    _wait(started, seconds, 'job never started (%s)' % (job.status,))


def wait_for_annotation(job, name, seconds=6):
    """Wait until ``job.annotations`` has ``name``; return its value."""
    def found():
        _sync(job)
        return name in job.annotations
    _wait(found, seconds, 'annotation never found')
    return job.annotations[name]


def wait_for_deactivation(dispatcher, seconds=6):
    """Wait until ``dispatcher`` has finished deactivating."""
    _wait(lambda: dispatcher.activated is False, seconds,
          'dispatcher never deactivated')


def wait_for_poll(dispatcher, count=1, seconds=6):
    """Wait until ``dispatcher`` has polled ``count`` times; return the last."""
    _wait(lambda: dispatcher._poll_count >= count, seconds, 'no poll!')
    return dispatcher.polls[0]


def wait_for_death(da, seconds=6):
    """Wait until the dispatcher agents ``da`` count as dead."""
    def dead():
        _sync(da)
        return da.dead
    _wait(dead, seconds, 'dispatcher agent never died')
