"""Component registrations, made on request (importing registers nothing).

``base()`` registers what jobs need: adapters from functions, methods and
method-wrappers to IJob, zc.twist's ``connection`` and
``transactionManager`` adapters, and the IQueue adapters that find the
default queue of a persistent object or a connection.
``configure.zcml`` does the same for Zope applications.
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
    """``minimal()``, the IConnection adapter and the default-queue adapters.
    """
    minimal()
    zope.component.provideAdapter(
        zc.twist.connection, adapts=(persistent.interfaces.IPersistent,),
        provides=ZODB.interfaces.IConnection)
    from zc.asynchronous.queue import getDefaultQueue
    for required in (persistent.interfaces.IPersistent,
                     ZODB.interfaces.IConnection):
        zope.component.provideAdapter(
            getDefaultQueue, adapts=(required,),
            provides=interfaces.IQueue)


def install_queues(db, names=('',), db_name=None):
    """Make sure ``root['zc.async']`` holds a Queues with the named queues.

    With ``db_name``, the Queues collection lives in that database of a
    multi-database and is referenced from the main root.  Returns the
    names of the queues that were added.
    """
    import transaction
    from zc.asynchronous.queue import Queue, Queues
    from zc.asynchronous.utils import log
    tm = transaction.TransactionManager()
    conn = db.open(transaction_manager=tm)
    added = []
    try:
        for attempt in range(5):
            try:
                tm.begin()
                root = conn.root()
                queues = root.get(interfaces.KEY)
                if queues is None:
                    queues = Queues()
                    if db_name is not None:
                        other = conn.get_connection(db_name)
                        other.root()[interfaces.KEY] = queues
                        other.add(queues)
                    root[interfaces.KEY] = queues
                    log.info('queues collection added')
                added = []
                for name in names:
                    if name not in queues:
                        queues[name] = Queue()
                        added.append(name)
                        log.info('queue %r added', name)
                tm.commit()
                return added
            except Exception as exc:
                tm.abort()
                if not isinstance(exc, zc.twist.TransactionError):
                    raise
        raise RuntimeError('could not install queues: five conflicts')
    finally:
        tm.abort()
        conn.close()


def start(db, poll_interval=5, db_name=None, agent_size=3, agents=None,
          uuid=None, uuid_path=None, reactor=None, **dispatcher_options):
    """Register the adapters, install the queues, start a dispatcher.

    Returns the running dispatcher; ``dispatcher.stop()`` ends it.  With no
    ``reactor`` the dispatcher runs a private reactor in a thread of its
    own; otherwise it is activated on ``reactor``, which the application
    runs.  The instance UUID comes from ``uuid``, else from the file at
    ``uuid_path`` (default: ``$ZC_ASYNC_UUID``, else ``./uuid.txt``),
    created when first needed.
    """
    from zc.asynchronous import instanceuuid
    from zc.asynchronous.dispatcher import Dispatcher
    base()
    install_queues(db, db_name=db_name)
    if uuid is None:
        uuid = instanceuuid.get_uuid(uuid_path)
    dispatcher = Dispatcher(
        db, reactor=reactor, poll_interval=poll_interval, uuid=uuid,
        agents=agents if agents is not None else {'main': agent_size},
        **dispatcher_options)
    if reactor is None:
        dispatcher.start()
    else:
        dispatcher.activate()
    return dispatcher
