"""zc.twist: a bridge between Twisted and the ZODB.

* ``Failure`` and ``sanitize``: Twisted failures without live frames, safe
  to store in the database and to send to other processes;
* ``Partial``: call something on persistent objects from the reactor, in a
  connection and transaction of its own, with conflict retries;
* ``Reference``, ``get_connection`` and ``availableConnectionCount``, its
  building blocks;
* the adapters ``connection`` and ``transactionManager``.

Importing this package does not install a Twisted reactor.
"""
from zc.twist.adapters import connection, transactionManager
from zc.twist.errors import (
    EXPLOSIVE_ERRORS, ClientDisconnected, TransactionError, is_explosive)
from zc.twist.failure import Failure, sanitize
from zc.twist.methodwrapper import METHOD_WRAPPER_TYPE, get_self
from zc.twist.reference import DeferredReferenceToPersistent, Reference
from zc.twist.pool import availableConnectionCount, get_connection
from zc.twist.partial import Partial

__all__ = [
    'Failure', 'sanitize', 'EXPLOSIVE_ERRORS', 'ClientDisconnected',
    'TransactionError', 'is_explosive', 'METHOD_WRAPPER_TYPE', 'get_self',
    'Reference', 'DeferredReferenceToPersistent', 'get_connection',
    'availableConnectionCount', 'Partial', 'connection',
    'transactionManager',
]
