"""Shared fixtures: databases, the component registry, a clean cwd."""
import datetime
import os

import pytest
import pytz
import transaction
import ZODB
import ZODB.FileStorage
import ZODB.MappingStorage
import zope.component.testing


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Every test runs in its own folder, with a clean component registry.

    The instance UUID file goes into that folder too, so no test writes
    into the checkout.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('ZC_ASYNC_UUID', str(tmp_path / 'uuid.txt'))
    transaction.abort()
    zope.component.testing.setUp()
    yield
    transaction.abort()
    zope.component.testing.tearDown()


@pytest.fixture
def configured():
    """The adapters of ``zc.asynchronous.configure.base()``."""
    import zc.asynchronous.configure
    zc.asynchronous.configure.base()


@pytest.fixture
def db(configured):
    """An in-memory database (MappingStorage), closed at the end."""
    database = ZODB.MappingStorage.DB()
    yield database
    database.close()


@pytest.fixture
def filedb(configured, tmp_path):
    """A FileStorage database in the test's folder, closed at the end."""
    path = str(tmp_path / 'Data.fs')
    database = ZODB.DB(ZODB.FileStorage.FileStorage(path))
    database.path = path
    yield database
    database.close()


@pytest.fixture
def conn(db):
    """A connection with its own transaction manager."""
    connection = db.open(transaction_manager=transaction.TransactionManager())
    yield connection
    connection.transaction_manager.abort()
    connection.close()


#: The frozen "now" of the queue and agent tests (zc.async's test epoch).
T0 = datetime.datetime(2006, 8, 10, 15, 44, 22, 211, pytz.UTC)


class Clock:
    """A settable ``utils.now``."""

    def __init__(self, when):
        self.when = when

    def __call__(self):
        return self.when

    def advance(self, **kw):
        self.when += datetime.timedelta(**kw)


@pytest.fixture
def clock(monkeypatch):
    """Freeze ``zc.asynchronous.utils.now`` at T0; ``advance()`` moves it."""
    from zc.asynchronous import utils
    res = Clock(T0)
    monkeypatch.setattr(utils, 'now', res)
    return res


@pytest.fixture
def queue(conn):
    """A Queues collection at the root with the default queue, committed."""
    from zc.asynchronous import interfaces
    from zc.asynchronous.queue import Queue, Queues
    root = conn.root()
    root[interfaces.KEY] = Queues()
    root[interfaces.KEY][''] = res = Queue()
    conn.transaction_manager.commit()
    return res


# -- the in-process dispatcher tests ----------------------------------------

@pytest.fixture(autouse=True)
def _no_dispatcher_left():
    """No dispatcher a test started outlives it."""
    yield
    import zc.asynchronous.dispatcher
    for leftover in list(zc.asynchronous.dispatcher._dispatchers.values()):
        leftover.stop()
    zc.asynchronous.dispatcher.clear()


@pytest.fixture
def database(filedb):
    """``filedb``, under the name the dispatcher tests use."""
    return filedb


@pytest.fixture
def session(database):
    """``(conn, tm, default queue)``: the queues installed in ``database``
    and a connection of its own."""
    import zc.asynchronous.configure
    from zc.asynchronous.queue import getDefaultQueue
    zc.asynchronous.configure.install_queues(database)
    tm = transaction.TransactionManager()
    conn = database.open(transaction_manager=tm)
    yield conn, tm, getDefaultQueue(conn)
    tm.abort()
    conn.close()


def fake_module(name):
    """A module whose namespace is a dict, so that doctest globals pickle."""
    import sys
    import types
    module = types.ModuleType(name)
    sys.modules[name] = module
    return module


__all__ = ['fake_module', 'os']
