"""References to persistent objects that survive the end of a connection.

A ``Partial`` is made in one connection (often one that is about to be
closed) and called later, in a connection of its own.  ``Reference``
replaces each persistent object, and each method of one, with a small
``DeferredReferenceToPersistent`` that remembers only where the object
lives (its database and oid) and, for methods, the attribute name.
Calling the reference with a connection loads the object there again.
"""
import types

from zc.twist.methodwrapper import METHOD_WRAPPER_TYPE


def _jar(obj):
    """The connection of a persistent object, or None."""
    try:
        return obj._p_jar
    except AttributeError:
        return None


class DeferredReferenceToPersistent:
    """Where a persistent object (or one of its methods) can be found again.

    Keeps the database (``db`` and ``database_name``), the object's
    ``oid`` and, for a method, its attribute ``name`` (None otherwise).
    Call it with any connection of the same database or of a database in
    the same multi-database to get the object, or the bound method, loaded
    in that connection.
    """

    name = None

    def __init__(self, obj):
        if isinstance(obj, (types.MethodType, METHOD_WRAPPER_TYPE)):
            self.name = obj.__name__
            obj = obj.__self__
        jar = _jar(obj)
        if jar is None:
            raise ValueError('object has no connection: %r' % (obj,))
        if obj._p_oid is None:
            raise ValueError('object has no oid: %r' % (obj,))
        self.db = jar.db()
        self.database_name = self.db.database_name
        self.oid = obj._p_oid

    def __call__(self, conn):
        """Load the object (or bound method) in ``conn``."""
        if conn.db().database_name != self.database_name:
            conn = conn.get_connection(self.database_name)
        obj = conn.get(self.oid)
        if self.name is not None:
            obj = getattr(obj, self.name)
        return obj

    def __repr__(self):
        return '<%s %s oid %r%s>' % (
            type(self).__name__, self.database_name, self.oid,
            '' if self.name is None else ' .%s' % self.name)


def _referenceable(obj):
    if isinstance(obj, (types.MethodType, METHOD_WRAPPER_TYPE)):
        obj = obj.__self__
    if isinstance(obj, type):
        # A class whose metaclass defines _p_jar: not a persistent instance.
        return False
    return _jar(obj) is not None and getattr(obj, '_p_oid', None) is not None


def Reference(obj):
    """Wrap ``obj`` in a DeferredReferenceToPersistent when it needs one.

    Persistent objects that belong to a connection, their bound methods and
    their method-wrappers (``tree.__setitem__``) are wrapped; anything else
    is returned unchanged.
    """
    if _referenceable(obj):
        return DeferredReferenceToPersistent(obj)
    return obj
