"""The Huey side of the end-to-end section: a SqliteHuey and its task.

Both the bench (which enqueues) and the consumer process import this
module; ``ZCBENCH_HUEY_DB`` names the SQLite file and ``ZCBENCH_HUEY_DONE``
the file where the consumer appends ``task-id completion-time`` lines,
from Huey's ``SIGNAL_COMPLETE`` (sent once the result is stored).
"""
import os
import time

from huey import SqliteHuey
from huey.signals import SIGNAL_COMPLETE

# Without ZCBENCH_HUEY_DB (the bench process, before ``use_db``) an
# in-memory database, so that importing this module writes no file.
huey = SqliteHuey('zcbench', filename=os.environ.get(
    'ZCBENCH_HUEY_DB', ':memory:'))

_done_path = os.environ.get('ZCBENCH_HUEY_DONE')
_done_file = None


def use_db(path):
    """Point this process's ``huey`` at the SQLite file ``path``."""
    huey.storage_kwargs['filename'] = path
    huey.storage = huey.create_storage()


@huey.task()
def started_at(put_time=None):
    """Return the time the task started (``time.time()``)."""
    return time.time()


@huey.signal(SIGNAL_COMPLETE)
def _completed(signal, task, *args, **kwargs):
    global _done_file
    now = time.time()
    if _done_path is None:
        return
    if _done_file is None:
        _done_file = open(_done_path, 'a', buffering=1)
    _done_file.write('%s %r\n' % (task.id, now))
