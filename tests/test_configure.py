"""configure.zcml registers what configure.base() registers.

Importing the package registers nothing; loading the zcml (after
zope.component's own directives) or calling ``configure.base()`` does.
"""
import subprocess
import sys

import persistent
import transaction
import transaction.interfaces
import ZODB.interfaces
import ZODB.MappingStorage
import zope.component
import zope.component.testing
import zope.configuration.xmlconfig as xmlconfig

import zc.asynchronous
import zc.twist
from zc.asynchronous import interfaces
from zc.asynchronous.job import Job


class Thing(persistent.Persistent):
    def method(self):
        return 'method'


def function():
    return 'function'


def time_builtin():
    import time
    return time.time


def load_zcml():
    # An application loads zope.component's directives first (its
    # site.zcml does); configure.zcml uses them.
    context = xmlconfig.file('meta.zcml', package=zope.component)
    return xmlconfig.file('configure.zcml', package=zc.asynchronous,
                          context=context)


IMPORT_ONLY = """
import os, sys
import zope.component
import zc.asynchronous, zc.asynchronous.job, zc.asynchronous.configure
import zc.twist
import zc.asynchronous.interfaces as interfaces
def f():
    pass
registry = zope.component.getGlobalSiteManager()
print(interfaces.IJob(f, None),
      len(list(registry.registeredAdapters())),
      len(list(registry.registeredUtilities())),
      'twisted.internet.reactor' in sys.modules,
      sorted(os.listdir('.')))
"""


def test_importing_registers_nothing(tmp_path):
    # A fresh interpreter: this process's registry was reset by the
    # fixtures, which would hide registrations made at import time.
    proc = subprocess.run([sys.executable, '-c', IMPORT_ONLY], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ['None', '0', '0', 'False', '[]']


def test_zcml_registers_the_adapters():
    load_zcml()
    job = interfaces.IJob(function)
    assert isinstance(job, Job)
    assert job.callable is function

    db = ZODB.MappingStorage.DB()
    try:
        tm = transaction.TransactionManager()
        conn = db.open(transaction_manager=tm)
        thing = conn.root()['thing'] = Thing()
        tm.commit()
        assert transaction.interfaces.ITransactionManager(thing) is tm
        assert transaction.interfaces.ITransactionManager(conn) is tm
        assert ZODB.interfaces.IConnection(thing) is conn
        # An object not stored yet finds them through __parent__.
        orphan = Thing()
        orphan.__parent__ = thing
        assert transaction.interfaces.ITransactionManager(orphan) is tm

        for callable_ in (thing.method, {}.get, time_builtin(),
                          conn.root().__setitem__):
            assert isinstance(interfaces.IJob(callable_), Job)
        wrapper = thing.__setattr__
        assert isinstance(wrapper, zc.twist.METHOD_WRAPPER_TYPE)
        assert interfaces.IJob(wrapper)._callable_root is thing
        conn.close()
    finally:
        db.close()


def test_zcml_and_base_register_the_same_adapters():
    def registrations():
        registry = zope.component.getGlobalSiteManager()
        return sorted(
            (tuple(getattr(r, '__identifier__', repr(r))
                   for r in reg.required),
             reg.provided.__identifier__,
             '%s.%s' % (reg.factory.__module__, reg.factory.__qualname__))
            for reg in registry.registeredAdapters())

    load_zcml()
    from_zcml = registrations()
    zope.component.testing.tearDown()
    zope.component.testing.setUp()
    import zc.asynchronous.configure
    zc.asynchronous.configure.base()
    assert registrations() == from_zcml
    provided = [p for _, p, _ in from_zcml]
    assert provided.count('zc.asynchronous.interfaces.IJob') == 4
    assert provided.count('transaction.interfaces.ITransactionManager') == 2
    assert provided.count('ZODB.interfaces.IConnection') == 1
