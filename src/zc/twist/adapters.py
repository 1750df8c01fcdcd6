"""The ZCA adapters from persistent objects to connections and managers."""
import persistent.interfaces
import transaction.interfaces
import ZODB.interfaces
import zope.component
import zope.interface


@zope.component.adapter(persistent.interfaces.IPersistent)
@zope.interface.implementer(ZODB.interfaces.IConnection)
def connection(obj):
    """The connection of ``obj``, or of the nearest ``__parent__`` with one.

    This lets a job that was never committed (a callback, say) find the
    connection of the object it hangs from.  Returns None (adaptation
    fails) when no object in the chain has a connection.
    """
    seen = set()
    current = obj
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        jar = getattr(current, '_p_jar', None)
        if jar is not None:
            return jar
        current = getattr(current, '__parent__', None)
    return None


@zope.component.adapter(persistent.interfaces.IPersistent)
@zope.interface.implementer(transaction.interfaces.ITransactionManager)
def transactionManager(obj):
    """The transaction manager of the connection ``obj`` belongs to.

    Registered for IPersistent and for IConnection (a connection adapts to
    IConnection as itself).
    """
    conn = ZODB.interfaces.IConnection(obj, None)
    if conn is None:
        return None
    return conn.transaction_manager
