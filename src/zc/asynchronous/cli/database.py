"""Opening the database that ``--db`` names, and reading objects from it."""
import contextlib
import os
import re
import time

import transaction
import ZODB
import ZODB.DemoStorage
import ZODB.FileStorage
import ZODB.MappingStorage
import ZODB.POSException
import ZODB.utils
import zc.lockfile
from ZODB.FileStorage.FileStorage import FileStorageFormatError

from zc.asynchronous.cli.common import CommandError

_URI = re.compile(r'^[A-Za-z][A-Za-z0-9+.-]*:(//|\()')


@contextlib.contextmanager
def open_database(spec, write=False):
    """Open the database that ``spec`` (the ``--db`` value) names.

    ``spec`` is a zodburi URI or a FileStorage path.  With ``write`` a
    missing FileStorage is created (with its folder); without, the storage
    is opened read-only, which takes no lock.  Yields the ``ZODB.DB`` and
    closes it at the end.
    """
    for attempt in range(3):
        storage, dbkw = _open_storage(spec, write)
        try:
            db = ZODB.DB(storage, **dbkw)
            break
        except ZODB.POSException.ReadOnlyError:
            storage.close()
            raise CommandError('the database %s is empty' % spec)
        except ZODB.POSException.ConflictError:
            # Another process made the root object of a new database
            # first (ZEO): open again, to find it.
            storage.close()
            if attempt == 2:
                raise
            time.sleep(0.1)
        except BaseException:
            storage.close()
            raise
    try:
        yield db
    finally:
        db.close()


def _open_storage(spec, write):
    """The storage ``spec`` names and the keywords for ``ZODB.DB``."""
    if not spec:
        raise CommandError('--db needs a database URI or a path')
    try:
        if _URI.match(spec):
            factory, dbkw = _resolve_uri(spec, write)
            return _resolving_conflicts(factory()), dbkw
        if write:
            _make_folder(os.path.dirname(spec))
        return ZODB.FileStorage.FileStorage(spec, read_only=not write), {}
    except zc.lockfile.LockError:
        raise CommandError(
            'the database %s is locked by another process (a running '
            "'zc-async run'?): stop it first, or serve the database with "
            'ZEO to share it' % spec)
    except FileNotFoundError:
        raise CommandError(
            "no database at %s ('zc-async put' or 'zc-async demo' makes one)"
            % spec)
    except FileStorageFormatError:
        raise CommandError('%s is not a FileStorage' % spec)
    except OSError as exc:
        raise CommandError('cannot open the database %s: %s'
                           % (spec, exc.strerror or exc))
    except ZODB.POSException.StorageError as exc:
        raise CommandError('cannot open the database %s: %s' % (spec, exc))


def _resolving_conflicts(storage):
    """``storage``, wrapped in a DemoStorage if it is a MappingStorage.

    A MappingStorage (``memory://``) does not resolve conflicts, and the
    queues count on that when jobs complete at the same time.
    """
    if isinstance(storage, ZODB.MappingStorage.MappingStorage):
        return ZODB.DemoStorage.DemoStorage(base=storage)
    return storage


def _make_folder(path):
    if path and not os.path.isdir(path):
        try:
            os.makedirs(path)
        except OSError as exc:
            raise CommandError('cannot make the folder %s for the database: '
                               '%s' % (path, exc.strerror or exc))


def _resolve_uri(uri, write):
    """zodburi's ``(storage factory, DB keywords)`` for ``uri``.

    Without ``write``, file:// and zeo:// storages are opened read-only.
    """
    import zodburi
    scheme = uri.split(':', 1)[0]
    query = uri
    if not write and scheme in ('file', 'zeo') and 'read_only=' not in uri:
        query += ('&' if '?' in uri else '?') + 'read_only=1'
    try:
        return zodburi.resolve_uri(query)
    except zodburi.NoResolverForScheme:
        raise CommandError(
            'unknown database URI scheme %r in %s (use file://, zeo://, '
            'memory:// or a FileStorage path)' % (scheme, uri))
    except Exception as exc:
        message = exc.args[0] if isinstance(exc, KeyError) else exc
        raise CommandError('malformed database URI %s: %s' % (uri, message))


@contextlib.contextmanager
def connection(db):
    """A connection with its own transaction manager, aborted at the end."""
    tm = transaction.TransactionManager()
    conn = db.open(transaction_manager=tm)
    try:
        yield conn
    finally:
        tm.abort()
        conn.close()


def get_object(conn, oid):
    """The object with the integer ``oid``; CommandError if there is none."""
    try:
        return conn.get(ZODB.utils.p64(oid))
    except ZODB.POSException.POSKeyError:
        raise CommandError('no object with oid %d in the database' % oid)
