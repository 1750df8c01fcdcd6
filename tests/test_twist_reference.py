"""zc.twist.Reference, method-wrappers and the adapters."""
import types

import BTrees.OOBTree
import persistent
import persistent.interfaces
import pytest
import transaction
import transaction.interfaces
import ZODB
import ZODB.interfaces
import zope.component
import zope.component.testing

import zc.twist


class Thing(persistent.Persistent):
    label = None

    def name(self):
        return self.label


@pytest.fixture
def db():
    database = ZODB.DB(None)
    yield database
    database.close()


@pytest.fixture
def conn(db):
    tm = transaction.TransactionManager()
    c = db.open(transaction_manager=tm)
    root = c.root()
    root['thing'] = Thing()
    root['thing'].label = 'first'
    root['tree'] = BTrees.OOBTree.OOBTree()
    tm.commit()
    yield c
    tm.abort()
    c.close()


@pytest.fixture
def other(db, conn):
    c = db.open(transaction_manager=transaction.TransactionManager())
    yield c
    c.transaction_manager.abort()
    c.close()


def test_reference_to_a_persistent_object(db, conn, other):
    thing = conn.root()['thing']
    ref = zc.twist.Reference(thing)
    assert isinstance(ref, zc.twist.DeferredReferenceToPersistent)
    assert ref.db is db
    assert ref.database_name == 'unnamed'
    assert ref.oid == thing._p_oid
    assert ref.name is None
    assert ref(other) is other.root()['thing']
    assert ref(conn) is thing


def test_reference_to_a_bound_method(conn, other):
    thing = conn.root()['thing']
    assert isinstance(thing.name, types.MethodType)
    ref = zc.twist.Reference(thing.name)
    assert isinstance(ref, zc.twist.DeferredReferenceToPersistent)
    assert ref.name == 'name'
    assert ref.oid == thing._p_oid
    method = ref(other)
    assert method.__self__ is other.root()['thing']
    assert method() == 'first'


def test_reference_to_a_method_wrapper(conn, other):
    thing = conn.root()['thing']
    wrapper = thing.__eq__
    assert isinstance(wrapper, zc.twist.METHOD_WRAPPER_TYPE)
    ref = zc.twist.Reference(wrapper)
    assert isinstance(ref, zc.twist.DeferredReferenceToPersistent)
    assert ref.name == '__eq__'
    resolved = ref(other)
    assert isinstance(resolved, zc.twist.METHOD_WRAPPER_TYPE)
    assert resolved.__self__ is other.root()['thing']


def test_reference_to_btree_setitem(conn, other):
    # A method-wrapper with C BTrees, a bound method with pure-Python ones.
    setitem = conn.root()['tree'].__setitem__
    assert isinstance(setitem,
                      (types.MethodType, zc.twist.METHOD_WRAPPER_TYPE))
    ref = zc.twist.Reference(setitem)
    assert ref.name == '__setitem__'
    ref(other)('k', 'v')
    other.transaction_manager.commit()
    conn.transaction_manager.abort()
    assert dict(conn.root()['tree']) == {'k': 'v'}


@pytest.mark.parametrize('value', [
    42, 'text', None, len, [1, 2], {'a': 1}, Thing, {}.__setitem__,
    object().__eq__, zc.twist.Partial.setReactor,
])
def test_everything_else_is_unchanged(value):
    assert zc.twist.Reference(value) is value


def test_unsaved_persistent_objects_are_unchanged():
    loose = Thing()
    assert zc.twist.Reference(loose) is loose
    method = loose.name
    assert zc.twist.Reference(method) is method


def test_added_but_uncommitted_object_with_oid(conn, other):
    # conn.add assigns an oid: a reference is made, but the object cannot
    # be loaded elsewhere before it is committed (the documented gotcha).
    thing = Thing()
    conn.add(thing)
    ref = zc.twist.Reference(thing)
    assert ref.oid == thing._p_oid
    conn.transaction_manager.commit()
    other.transaction_manager.begin()       # see the new state
    assert ref(other)._p_oid == thing._p_oid
    assert ref(other) is not thing


def test_multi_database_reference():
    databases = {}
    main = ZODB.DB(None, databases=databases, database_name='main')
    side = ZODB.DB(None, databases=databases, database_name='side')
    try:
        tm = transaction.TransactionManager()
        c = main.open(transaction_manager=tm)
        side_conn = c.get_connection('side')
        side_conn.root()['thing'] = Thing()
        side_conn.root()['thing'].label = 'side'
        tm.commit()
        ref = zc.twist.Reference(side_conn.root()['thing'].name)
        assert ref.database_name == 'side'
        assert ref.db is side
        c.close()
        tm2 = transaction.TransactionManager()
        fresh = main.open(transaction_manager=tm2)
        method = ref(fresh)
        assert method() == 'side'
        assert method.__self__._p_jar is fresh.get_connection('side')
        # A Partial on the side database runs through it.
        results = []
        zc.twist.Partial(ref(fresh))().addBoth(results.append)
        assert results == ['side']
        fresh.close()
    finally:
        main.close()
        side.close()


def test_get_self():
    d = {}
    assert zc.twist.get_self(d.__setitem__) is d
    with pytest.raises(TypeError, match='unsupported type'):
        zc.twist.get_self(len)
    with pytest.raises(TypeError, match='unsupported type'):
        zc.twist.get_self(Thing().name)


# -- adapters -----------------------------------------------------------------

@pytest.fixture
def adapters():
    zope.component.provideAdapter(zc.twist.connection)
    zope.component.provideAdapter(zc.twist.transactionManager)
    zope.component.provideAdapter(
        zc.twist.transactionManager,
        adapts=(ZODB.interfaces.IConnection,))
    yield
    zope.component.testing.tearDown()


def test_adapters_declare_what_they_adapt():
    assert list(zope.component.adaptedBy(zc.twist.connection)) == [
        persistent.interfaces.IPersistent]
    assert ZODB.interfaces.IConnection.implementedBy(zc.twist.connection)
    assert transaction.interfaces.ITransactionManager.implementedBy(
        zc.twist.transactionManager)


def test_connection_adapter(adapters, conn):
    assert ZODB.interfaces.IConnection(conn.root()['thing']) is conn


def test_connection_adapter_walks_parents(adapters, conn):
    child, grandchild = Thing(), Thing()
    child.__parent__ = conn.root()['thing']
    grandchild.__parent__ = child
    assert ZODB.interfaces.IConnection(grandchild) is conn
    assert transaction.interfaces.ITransactionManager(grandchild) is \
        conn.transaction_manager


def test_connection_adapter_fails_without_a_jar(adapters):
    orphan = Thing()
    assert ZODB.interfaces.IConnection(orphan, None) is None
    with pytest.raises(TypeError):
        ZODB.interfaces.IConnection(orphan)
    orphan.__parent__ = Thing()
    assert ZODB.interfaces.IConnection(orphan, None) is None


def test_connection_adapter_survives_parent_cycles(adapters):
    a, b = Thing(), Thing()
    a.__parent__ = b
    b.__parent__ = a
    assert ZODB.interfaces.IConnection(a, None) is None


def test_transaction_manager_adapter(adapters, conn, other):
    assert transaction.interfaces.ITransactionManager(
        conn.root()['thing']) is conn.transaction_manager
    assert transaction.interfaces.ITransactionManager(
        other.root()['thing']) is other.transaction_manager
    assert transaction.interfaces.ITransactionManager(other) is \
        other.transaction_manager
    assert conn.transaction_manager is not other.transaction_manager


def test_adapters_called_directly(adapters, conn):
    # Called as plain functions they answer None without a connection.
    assert zc.twist.connection(conn.root()['thing']) is conn
    assert zc.twist.connection(Thing()) is None
    assert zc.twist.transactionManager(Thing()) is None
