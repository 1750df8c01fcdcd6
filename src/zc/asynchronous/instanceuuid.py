"""The UUID that names this process (this *instance*) to its queues.

A dispatcher registers itself in every queue under this UUID, and
``Queue.put`` records it as a job's ``assignerUUID``.  It is kept in a small
text file, so that a restarted process keeps its identity:

* the ``path`` given to ``get_uuid``, else
* the file named by the ``ZC_ASYNC_UUID`` environment variable, else
* ``uuid.txt`` in the current working directory.

Nothing happens at import time: the file is read, or created, the first
time ``get_uuid`` is called for a path, and the answer is cached per path.
"""
import logging
import os
import threading
import uuid

import zope.interface

from zc.asynchronous import interfaces

log = logging.getLogger('zc.asynchronous.instanceuuid')

#: The environment variable naming the UUID file.
ENVIRON_NAME = 'ZC_ASYNC_UUID'

#: The file name used when neither a path nor the variable is given.
DEFAULT_FILE_NAME = 'uuid.txt'

MESSAGE = """
------------------------------------------------------------------------
The line above is the UUID of this zc.asynchronous instance: the name its
dispatcher uses in every queue of the database.  Keep the file with the
instance.  Each process that runs a dispatcher against the same database
needs a UUID of its own, so do not copy this file to another instance (let
each one make its own).  Removing it gives the instance a new identity the
next time it starts; the old one then looks like a dead dispatcher, whose
jobs its siblings take over.
------------------------------------------------------------------------
"""

# A UUID is what an IUUID utility is.  This is a declaration about a class,
# not a registration: importing this module registers no component.
zope.interface.classImplements(uuid.UUID, interfaces.IUUID)

_cache = {}
_lock = threading.Lock()


def uuid_path(path=None):
    """The absolute path of the UUID file ``get_uuid(path)`` would use."""
    if path is None:
        path = os.environ.get(ENVIRON_NAME) or os.path.join(
            os.getcwd(), DEFAULT_FILE_NAME)
    return os.path.abspath(path)


def _read(path):
    with open(path, encoding='ascii') as f:
        first = f.readline().strip()
    return uuid.UUID(first)


def _read_or_create(path):
    if os.path.exists(path):
        return _read(path)
    value = uuid.uuid1()
    # Write a complete file under a temporary name, then link it into
    # place: a process racing this one either wins (and we read its UUID)
    # or finds the whole file, never a half-written one.
    tmp = '%s.%s.tmp' % (path, value.hex)
    with open(tmp, 'w', encoding='ascii') as f:
        f.write(str(value))
        f.write('\n')
        f.write(MESSAGE)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return _read(path)
    except OSError:  # no hard links here: an atomic rename will do
        os.replace(tmp, path)
        tmp = None
    finally:
        if tmp is not None:
            os.unlink(tmp)
    log.info('new instance UUID %s written to %s', value, path)
    return value


def get_uuid(path=None):
    """The instance UUID (a ``uuid.UUID``) kept in the file at ``path``.

    The file is created, with a new ``uuid1()``, when it does not exist;
    otherwise its first line is read.  The result is cached per absolute
    path, so later calls do not touch the file system.
    """
    path = uuid_path(path)
    try:
        return _cache[path]
    except KeyError:
        pass
    with _lock:
        value = _cache.get(path)
        if value is None:
            value = _cache[path] = _read_or_create(path)
    return value


def getUUID():
    """Re-read the UUID of the default file, ignoring the cache."""
    path = uuid_path()
    with _lock:
        value = _cache[path] = _read_or_create(path)
    return value


def _clear_cache():
    """Forget every cached UUID (for tests)."""
    with _lock:
        _cache.clear()


def __getattr__(name):
    # ``instanceuuid.UUID``, as the original spelled it, computed on first
    # use instead of at import time.
    if name == 'UUID':
        return get_uuid()
    raise AttributeError(name)
