"""Component registrations, made on request (importing registers nothing).

``base()`` registers what jobs need: adapters from functions, methods and
method-wrappers to IJob, and zc.twist's ``connection`` and
``transactionManager`` adapters.  ``configure.zcml`` does the same for
Zope applications.
"""
import types

import persistent.interfaces
import transaction.interfaces
import ZODB.interfaces
import zope.component

import zc.twist
from zc.asynchronous import interfaces

#: The callables adapted to IJob by ``Job`` itself.
JOB_ADAPTED_TYPES = (
    types.FunctionType,
    types.MethodType,
    types.BuiltinFunctionType,
    zc.twist.METHOD_WRAPPER_TYPE,
)


def minimal():
    """Register the IJob and ITransactionManager adapters."""
    from zc.asynchronous.job import Job
    for callable_type in JOB_ADAPTED_TYPES:
        zope.component.provideAdapter(
            Job, adapts=(callable_type,), provides=interfaces.IJob)
    for required in (persistent.interfaces.IPersistent,
                     ZODB.interfaces.IConnection):
        zope.component.provideAdapter(
            zc.twist.transactionManager, adapts=(required,),
            provides=transaction.interfaces.ITransactionManager)


def base():
    """``minimal()`` plus the IPersistent to IConnection adapter."""
    minimal()
    zope.component.provideAdapter(
        zc.twist.connection, adapts=(persistent.interfaces.IPersistent,),
        provides=ZODB.interfaces.IConnection)
