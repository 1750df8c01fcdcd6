"""The commands ``run``, ``put``, ``status``, ``jobs`` and ``job``."""
import contextlib
import logging
import signal
import threading

import ZODB.POSException

from zc.asynchronous import interfaces
from zc.asynchronous.cli.common import CommandError
from zc.asynchronous.cli.database import connection, get_object, open_database
from zc.asynchronous.cli.describe import (
    STATE_FILTERS, iter_jobs, job_details, job_summary, oid_of, status_report)
from zc.asynchronous.cli.inputs import (
    parse_argument, parse_oid, parse_when, resolve_callable)
from zc.asynchronous.cli.render import (
    _queue_label, print_json, render_job, render_jobs, render_status)

log = logging.getLogger('zc.asynchronous.cli')


def cmd_put(args):
    """``put``: put a job in a queue and print its oid."""
    func = resolve_callable(args.callable)
    arguments = [parse_argument(text) for text in args.args]
    begin_after = (None if args.begin_after is None
                   else parse_when(args.begin_after))
    with open_database(args.db, write=True) as db:
        oid = put_job(db, args.queue, func, arguments, begin_after)
    print(oid)


def put_job(db, queue_name, func, arguments, begin_after=None):
    """Put ``Job(func, *arguments)`` in the queue; return the job's oid.

    The default queue (``''``) is installed when missing; any other queue
    must exist.
    """
    from zc.asynchronous import configure
    from zc.asynchronous.job import Job
    with connection(db) as conn:
        queues = conn.root().get(interfaces.KEY)
        if queue_name not in (queues if queues is not None else ()):
            if queue_name != '':
                raise CommandError('no queue named %r (queues: %s)' % (
                    queue_name, ', '.join(map(_queue_label, queues or ()))
                    or 'none'))
            configure.install_queues(db)
    with connection(db) as conn:
        tm = conn.transaction_manager
        for attempt in range(5):
            queue = conn.root()[interfaces.KEY][queue_name]
            job = queue.put(Job(func, *arguments), begin_after=begin_after)
            try:
                tm.commit()
                return oid_of(job)
            except ZODB.POSException.ConflictError:
                tm.abort()
        raise RuntimeError('could not put the job: five conflicts in a row')


def cmd_run(args):
    """``run``: run a dispatcher until SIGINT or SIGTERM."""
    from zc.asynchronous import configure
    with open_database(args.db, write=True) as db, stop_signals() as stop:
        dispatcher = configure.start(db, poll_interval=args.poll,
                                     agent_size=args.threads,
                                     prefetch=args.prefetch)
        log.info('dispatcher %s runs on %s with %d thread%s, polling every '
                 '%gs; stop it with Ctrl-C or SIGTERM', dispatcher.UUID,
                 args.db, args.threads, 's' if args.threads > 1 else '',
                 args.poll)
        try:
            while not stop.wait(0.25):
                if not dispatcher.thread.is_alive():
                    raise RuntimeError('the dispatcher stopped by itself')
            log.info('%s received: stopping dispatcher %s',
                     signal.Signals(stop.signum).name, dispatcher.UUID)
        finally:
            dispatcher.stop()
    log.info('dispatcher %s stopped', dispatcher.UUID)


@contextlib.contextmanager
def stop_signals():
    """Catch SIGINT and SIGTERM while the block runs.

    Yields an Event that is set, with a ``signum`` attribute, when one
    arrives.
    """
    stop = threading.Event()
    stop.signum = None

    def handler(signum, frame):
        stop.signum = signum
        stop.set()

    saved = {signum: signal.signal(signum, handler)
             for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for signum, previous in saved.items():
            signal.signal(signum, previous)


def cmd_status(args):
    """``status``: queues, dispatchers, agents and job counts."""
    with open_database(args.db) as db, connection(db) as conn:
        report = status_report(conn)
    if args.json:
        print_json(dict(report, database=args.db))
    else:
        print(render_status(report, args.db))


def cmd_jobs(args):
    """``jobs``: the jobs of every queue, optionally of one state."""
    wanted = STATE_FILTERS.get(args.state)
    with open_database(args.db) as db, connection(db) as conn:
        summaries = [job_summary(job, name) for name, job in iter_jobs(conn)]
    if wanted is not None:
        summaries = [s for s in summaries if s['state'] in wanted]
    if args.json:
        print_json(summaries)
    else:
        print(render_jobs(summaries))


def cmd_job(args):
    """``job OID``: one job: status, times, result or traceback."""
    oid = parse_oid(args.oid)
    with open_database(args.db) as db, connection(db) as conn:
        job = get_object(conn, oid)
        if not interfaces.IJob.providedBy(job):
            raise CommandError('object %d is not a job but a %s.%s' % (
                oid, type(job).__module__, type(job).__qualname__))
        details = job_details(job)
    if args.json:
        print_json(details)
    else:
        print(render_job(details))
