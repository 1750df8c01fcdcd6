"""The ``zc-async`` command line: run a dispatcher, put jobs, look at them.

``zc-async COMMAND [OPTIONS]`` (or ``python -m zc.asynchronous``), where
COMMAND is one of

* ``run``: run a dispatcher until SIGINT or SIGTERM;
* ``put CALLABLE [ARG ...]``: put a job in a queue, print its oid;
* ``status``, ``jobs`` and ``job OID``: look at queues, dispatchers and
  jobs (``--json`` for scripts);
* ``demo``: put a batch of example jobs and run them.

``--db`` names the database: a zodburi URI (``file://``, ``zeo://``,
``memory://``) or the path of a FileStorage; the default is
``$ZC_ASYNC_DB``, else ``var/Data.fs``, created when first written to.
The read commands open the storage read-only, so a FileStorage that a
dispatcher holds can still be read.

Bad input (an unknown callable, a malformed URI, a database locked by
another process, an oid that is not there) ends the command before
anything is written, with a one-line message on stderr and exit status 2.
"""
import argparse
import contextlib
import datetime
import importlib
import json
import logging
import os
import pickle
import re
import signal
import sys
import threading
import time
import traceback
import types

import transaction
import ZODB
import ZODB.DemoStorage
import ZODB.FileStorage
import ZODB.MappingStorage
import ZODB.POSException
import ZODB.utils
import zc.lockfile
from ZODB.FileStorage.FileStorage import FileStorageFormatError

from zc.asynchronous import interfaces, utils

log = logging.getLogger('zc.asynchronous.cli')

PROG = 'zc-async'
#: The database used when neither --db nor $ZC_ASYNC_DB names one.
DEFAULT_DB = os.path.join('var', 'Data.fs')
DB_ENVIRON = 'ZC_ASYNC_DB'

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

#: How often the demo's dispatcher polls, and how long the demo may take.
DEMO_POLL = 0.1
DEMO_TIMEOUT = 30


class CommandError(Exception):
    """Bad input: reported as one line on stderr, with exit status 2."""


# -- the database ------------------------------------------------------------

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


# -- reading the input -------------------------------------------------------

def resolve_callable(name):
    """Import the global callable ``name``: ``pkg.module.function``.

    ``pkg.module:object.method`` says where the module name ends.  The
    callable must be something a job can store: reachable by its name
    (pickled by reference), so a dispatcher can import it again.
    """
    module_name, sep, attributes = name.partition(':')
    parts = module_name.split('.') + (attributes.split('.') if sep else [])
    if not all(part.isidentifier() for part in parts):
        raise CommandError('%r is not a dotted name (such as '
                           'package.module.function)' % name)
    if sep:
        splits = [len(module_name.split('.'))]
    else:
        splits = range(len(parts) - 1, 0, -1)
        if len(parts) < 2:
            raise CommandError('%r names no module: use module.function'
                               % name)
    for split in splits:
        found = _import_module('.'.join(parts[:split]))
        if found is not None:
            break
    else:
        raise CommandError('cannot import %s: no module named %r'
                           % (name, parts[0]))
    obj = found
    for position in range(split, len(parts)):
        try:
            obj = getattr(obj, parts[position])
        except AttributeError:
            raise CommandError('cannot import %s: %s has no attribute %r' % (
                name, '.'.join(parts[:position]), parts[position]))
    if not callable(obj):
        raise CommandError('%s is not callable' % name)
    try:
        pickle.dumps(obj)
    except Exception as exc:
        raise CommandError('%s cannot be stored in a job: %s' % (name, exc))
    return obj


def _import_module(module_name):
    """The module, or None when no module has that name."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ''
        if module_name == missing or module_name.startswith(missing + '.'):
            return None
        raise CommandError('cannot import %s: %s' % (module_name, exc))
    except Exception as exc:
        raise CommandError('cannot import %s: %s: %s'
                           % (module_name, type(exc).__name__, exc))


def parse_argument(text):
    """A job argument: the JSON literal ``text`` is, else ``text`` itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


_DELAY = re.compile(r'^\+?(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)$')
_SECONDS = {'': 1, 's': 1, 'm': 60, 'h': 3600, 'd': 86400}


def parse_when(text, now=None):
    """A ``--begin-after`` value as an aware datetime.

    A delay from now (``90``, ``90s``, ``+5m``, ``2h``, ``1d``), or an ISO
    8601 date and time (local time unless it has an offset or ``Z``).
    """
    if now is None:
        now = datetime.datetime.now(datetime.timezone.utc)
    match = _DELAY.match(text.strip())
    if match:
        number, unit = match.groups()
        return now + datetime.timedelta(
            seconds=float(number) * _SECONDS[unit])
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise CommandError(
            '--begin-after %r is neither a delay (such as 30s, 5m, 2h) nor '
            'an ISO 8601 date and time' % text)
    if when.tzinfo is None:
        when = when.astimezone()  # local time
    return when


def parse_oid(text):
    """An oid as an int: decimal as ``put`` prints it, or 0x hex."""
    try:
        if text.lower().startswith('0x'):
            oid = int(text, 16)
        else:
            oid = int(text, 10)
    except ValueError:
        oid = -1
    if not 0 <= oid < 2 ** 64:
        raise CommandError('%r is not an oid (an integer such as the one '
                           "'zc-async put' prints)" % text)
    return oid


def _non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError('%r is not a whole number >= 0'
                                         % text)
    return value


def _positive(convert):
    def check(text):
        try:
            value = convert(text)
        except ValueError:
            value = 0
        if not value > 0:
            raise argparse.ArgumentTypeError('%r is not a positive number'
                                             % text)
        return value
    check.__name__ = convert.__name__
    return check


# -- describing jobs -------------------------------------------------------

_STATES = {
    interfaces.NEW: 'new', interfaces.PENDING: 'pending',
    interfaces.ASSIGNED: 'assigned', interfaces.ACTIVE: 'active',
    interfaces.CALLBACKS: 'callbacks', interfaces.COMPLETED: 'completed'}

#: The states each ``jobs`` option selects.
STATE_FILTERS = {
    'pending': {'pending'},
    'active': {'assigned', 'active', 'callbacks'},
    'completed': {'completed'},
    'failed': {'failed'},
}


def is_failure(value):
    return interfaces.IFailure.providedBy(value)


def job_state(job):
    """A short name for the job's status; ``failed``: completed, failed."""
    status = job.status
    if status == interfaces.COMPLETED and is_failure(job.result):
        return 'failed'
    return _STATES.get(status, str(status))


def oid_of(obj):
    return ZODB.utils.u64(obj._p_oid)


def describe_call(job):
    """The job's call as text: ``module.function(1, 'a')``."""
    try:
        func = job.callable
        owner = getattr(func, '__self__', None)
        if owner is None or isinstance(owner, types.ModuleType):
            name = utils.custom_repr(func)
        elif interfaces.IJob.providedBy(owner):
            name = 'job %d.%s' % (oid_of(owner), func.__name__)
        else:
            name = '%s.%s' % (utils.custom_repr(owner), func.__name__)
        arguments = [_describe_argument(a) for a in job.args]
        arguments += ['%s=%s' % (key, _describe_argument(value))
                      for key, value in job.kwargs.items()]
        return '%s(%s)' % (name, ', '.join(arguments))
    except Exception:
        return repr(job)


def _describe_argument(value):
    if interfaces.IJob.providedBy(value) and value._p_oid is not None:
        return 'job %d' % oid_of(value)
    return utils.custom_repr(value)


def describe_result(value):
    """A result as one line: its repr, or ``Type: message`` for a failure."""
    if is_failure(value):
        return '%s: %s' % (getattr(value.type, '__name__', value.type),
                           value.getErrorMessage())
    return utils.custom_repr(value)


def _iso(when):
    return None if when is None else when.isoformat()


def _json_value(value):
    """``value`` if JSON can carry it, else None (see ``result_repr``)."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return None
    return value


def job_summary(job, queue_name=None):
    """What ``jobs`` reports about a job, as a JSON-ready dict."""
    done = job.status == interfaces.COMPLETED
    result = job.result if done else None
    if queue_name is None:
        queue = job.queue
        queue_name = None if queue is None else queue.name
    return {
        'oid': oid_of(job),
        'state': job_state(job),
        'queue': queue_name,
        'call': describe_call(job),
        'begin_after': _iso(job.begin_after),
        'started': _iso(job.active_start),
        'ended': _iso(job.active_end),
        'completed': _iso(job.initial_callbacks_end) if done else None,
        'result': None if is_failure(result) else _json_value(result),
        'result_repr': describe_result(result) if done else None,
        'error': describe_result(result) if is_failure(result) else None,
    }


def job_details(job):
    """What ``job OID`` reports: the summary, and more."""
    details = job_summary(job)
    agent = job.agent
    parent = job.parent
    result = job.result if job.status == interfaces.COMPLETED else None
    details.update({
        'begin_by': (None if job.begin_by is None
                     else job.begin_by.total_seconds()),
        'assigner': None if job.assignerUUID is None else str(
            job.assignerUUID),
        'dispatcher': None if agent is None or agent.parent is None else str(
            agent.parent.UUID),
        'agent': None if agent is None else agent.name,
        'callback_of': (oid_of(parent) if interfaces.IJob.providedBy(parent)
                        else None),
        'callbacks': [job_summary(callback, details['queue'])
                      for callback in job.callbacks],
        'annotations': {str(key): utils.custom_repr(value)
                        for key, value in job.annotations.items()},
        'traceback': result.getTraceback() if is_failure(result) else None,
    })
    return details


def iter_jobs(conn):
    """Yield ``(queue name, job)`` for each job the queues know of.

    Pending jobs first (in the order they come out of the queue), then
    the jobs agents hold, then the recently completed ones, oldest first.
    """
    queues = conn.root().get(interfaces.KEY)
    if queues is None:
        return
    for name, queue in queues.items():
        agents = [agent for da in queue.dispatchers.values()
                  for agent in da.values()]
        for job in queue:
            yield name, job
        for agent in agents:
            for job in agent:
                yield name, job
        completed = [job for agent in agents for job in agent.completed]
        completed.sort(key=lambda job: job.key, reverse=True)
        for job in completed:
            yield name, job


def dispatcher_state(da):
    """``alive``, ``dead`` (no recent ping) or ``stopped`` (deactivated)."""
    if not da.activated:
        return 'stopped'
    return 'dead' if da.dead else 'alive'


def status_report(conn):
    """What ``status`` reports, as a JSON-ready dict."""
    queues = conn.root().get(interfaces.KEY)
    report = []
    for name, queue in (queues.items() if queues is not None else ()):
        counts = dict(pending=len(queue), assigned=0, active=0, completed=0,
                      failed=0)
        dispatchers = []
        for uuid, da in queue.dispatchers.items():
            agents = []
            for agent_name, agent in da.items():
                states = [job_state(job) for job in agent]
                done = [job_state(job) for job in agent.completed]
                for state in states + done:
                    state = 'active' if state == 'callbacks' else state
                    if state in counts:
                        counts[state] += 1
                agents.append({'name': agent_name, 'size': agent.size,
                               'jobs': len(states), 'completed': len(done),
                               'failed': done.count('failed')})
            dispatchers.append({
                'uuid': str(uuid), 'state': dispatcher_state(da),
                'activated': _iso(da.activated),
                'last_ping': _iso(da.last_ping.value), 'agents': agents})
        report.append({'name': name, 'jobs': counts,
                       'dispatchers': dispatchers})
    return {'queues': report}


# -- printing ----------------------------------------------------------------

def print_json(data):
    print(json.dumps(data, indent=2))


def shorten(text, width):
    text = ' '.join(str(text).split())
    return text if len(text) <= width else text[:width - 3] + '...'


def format_table(headers, rows):
    """Rows of cells as aligned text columns under ``headers``."""
    rows = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(cell) for cell in column)
              for column in zip(headers, *rows)]
    return '\n'.join(
        '  '.join(cell.ljust(width) for cell, width in zip(row, widths))
        .rstrip() for row in [list(headers)] + rows)


def _parse_iso(text):
    return None if text is None else datetime.datetime.fromisoformat(text)


def format_age(text, now=None):
    """An ISO time as a distance from now: ``4s ago``, ``in 2m``."""
    when = _parse_iso(text)
    if when is None:
        return 'never'
    now = now or datetime.datetime.now(datetime.timezone.utc)
    seconds = (now - when).total_seconds()
    future, seconds = seconds < 0, abs(seconds)
    for unit, size in (('d', 86400), ('h', 3600), ('m', 60)):
        if seconds >= size:
            amount = '%d%s' % (seconds // size, unit)
            break
    else:
        amount = '%ds' % seconds
    return 'in ' + amount if future else amount + ' ago'


def _queue_label(name):
    return "''" if name == '' else repr(name)


def render_status(report, spec):
    lines = ['database %s' % spec]
    if not report['queues']:
        lines.append("no queues yet ('zc-async put' or 'zc-async run' adds "
                     'the default one)')
    for queue in report['queues']:
        counts = ', '.join('%d %s' % (count, state)
                           for state, count in queue['jobs'].items())
        lines.append('queue %s: %s' % (_queue_label(queue['name']), counts))
        if not queue['dispatchers']:
            lines.append("  no dispatcher yet ('zc-async run' starts one)")
        for da in queue['dispatchers']:
            since = ('' if da['activated'] is None else
                     ', activated %s' % format_age(da['activated']))
            lines.append('  dispatcher %s: %s%s, last ping %s' % (
                da['uuid'], da['state'], since, format_age(da['last_ping'])))
            for agent in da['agents']:
                lines.append(
                    '    agent %r: %d of %d busy, %d completed, %d failed'
                    % (agent['name'], agent['jobs'], agent['size'],
                       agent['completed'], agent['failed']))
    return '\n'.join(lines)


def _job_note(summary):
    """The DETAIL column of ``jobs``: a result, an error, or a time."""
    state = summary['state']
    if state == 'completed':
        return summary['result_repr']
    if state == 'failed':
        return summary['error']
    if state in ('active', 'callbacks'):
        return 'started %s' % format_age(summary['started'])
    if summary['begin_after']:
        age = format_age(summary['begin_after'])
        return ('begins ' if age.startswith('in ') else 'due ') + age
    return ''


def render_jobs(summaries):
    if not summaries:
        return 'no jobs'
    with_queue = any(s['queue'] for s in summaries)
    headers = ['OID', 'STATE'] + (['QUEUE'] if with_queue else []) + [
        'CALL', 'DETAIL']
    rows = [[s['oid'], s['state']]
            + ([_queue_label(s['queue'])] if with_queue else [])
            + [shorten(s['call'], 50), shorten(_job_note(s), 60)]
            for s in summaries]
    return format_table(headers, rows)


def render_job(details):
    fields = [
        ('call', details['call']),
        ('queue', None if details['queue'] is None
         else _queue_label(details['queue'])),
        ('callback of', details['callback_of'] and 'job %d'
         % details['callback_of']),
        ('put by', details['assigner']),
        ('begin after', details['begin_after']),
        ('begin by', details['begin_by'] and '%gs after that'
         % details['begin_by']),
        ('agent', details['agent'] and '%r of dispatcher %s'
         % (details['agent'], details['dispatcher'])),
        ('started', details['started']),
        ('ended', details['ended']),
        ('completed', details['completed']),
        ('result', details['result_repr']),
    ]
    lines = ['job %d: %s' % (details['oid'], details['state'])]
    lines += ['  %-12s %s' % (label + ':', value)
              for label, value in fields if value is not None]
    for callback in details['callbacks']:
        lines.append('  %-12s job %d (%s) %s' % (
            'callback:', callback['oid'], callback['state'],
            shorten(callback['call'], 60)))
    for key, value in details['annotations'].items():
        lines.append('  %-12s %s = %s' % ('annotation:', key, value))
    if details['traceback']:
        lines.append(details['traceback'].rstrip())
    return '\n'.join(lines)


# -- the commands ------------------------------------------------------------

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


# -- the demo ----------------------------------------------------------------

def cmd_demo(args):
    """``demo``: put example jobs, run a dispatcher until they are done."""
    from zc.asynchronous import configure
    with open_database(args.db, write=True) as db:
        configure.install_queues(db)
        started = time.monotonic()
        put_at = datetime.datetime.now(datetime.timezone.utc)
        demo = put_demo_jobs(db)
        dispatcher = configure.start(db, poll_interval=DEMO_POLL)
        try:
            finished = watch_jobs(db, [oid for oid, what in demo],
                                  Progress(sys.stderr, len(demo)))
        finally:
            dispatcher.stop()
        elapsed = time.monotonic() - started
        with connection(db) as conn:
            rows = [demo_row(get_object(conn, oid), what, put_at)
                    for oid, what in demo]
    print(format_table(['OID', 'JOB', 'STATE', 'STARTED', 'TOOK', 'RESULT'],
                       rows))
    failed = sum(row[2] == 'failed' for row in rows)
    done = sum(row[2] in ('completed', 'failed') for row in rows)
    print('%d jobs in %.1fs: %d succeeded, %d failed%s.' % (
        len(rows), elapsed, done - failed, failed,
        '' if finished else ', %d unfinished' % (len(rows) - done)))
    if not args.db.startswith('memory:'):
        db_option = '' if args.db == DEFAULT_DB else ' --db ' + args.db
        print("They are in %s: see 'zc-async jobs%s' and 'zc-async job "
              "OID%s'." % (args.db, db_option, db_option))
    if not finished:
        raise RuntimeError('the demo jobs did not finish within %ds'
                           % DEMO_TIMEOUT)


def put_demo_jobs(db):
    """Put the example jobs; return ``(oid, description)`` pairs."""
    from zc.asynchronous import examples
    with connection(db) as conn:
        queue = conn.root()[interfaces.KEY]['']
        demo = examples.demo_jobs(queue)
        conn.transaction_manager.commit()
        return [(oid_of(job), what) for what, job in demo]


def watch_jobs(db, oids, progress, timeout=DEMO_TIMEOUT):
    """Wait until the jobs are completed, updating ``progress``.

    Returns whether they all completed within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    with connection(db) as conn:
        try:
            while True:
                try:
                    conn.transaction_manager.begin()
                    states = [job_state(get_object(conn, oid))
                              for oid in oids]
                except ZODB.POSException.ReadConflictError:
                    continue
                done = sum(s in ('completed', 'failed') for s in states)
                progress.update(done, sum(s in ('active', 'callbacks')
                                          for s in states))
                if done == len(oids):
                    return True
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)
        finally:
            progress.close()


def demo_row(job, what, put_at):
    """A row of the demo's summary table."""
    result = describe_result(job.result)
    for callback in job.callbacks:
        result += ' -> ' + describe_result(callback.result)

    def seconds(delta):
        return '-' if delta is None else '%.2fs' % delta.total_seconds()
    start, end = job.active_start, job.active_end
    return [oid_of(job), what, job_state(job),
            '+' + seconds(start and start - put_at),
            seconds(end and start and end - start), shorten(result, 60)]


class Progress:
    """A progress bar on ``stream``.

    On a terminal one line is redrawn; elsewhere a line is written each
    time the count of finished jobs changes.
    """

    width = 30

    def __init__(self, stream, total):
        self.stream = stream
        self.total = total
        self.tty = stream.isatty()
        self.last = None

    def update(self, done, running):
        shown = (done, running) if self.tty else done
        if shown == self.last:
            return
        self.last = shown
        filled = self.width * done // max(self.total, 1)
        text = '[%s%s] %d/%d jobs done, %d running' % (
            '#' * filled, '.' * (self.width - filled), done, self.total,
            running)
        self.stream.write('\r' + text if self.tty else text + '\n')
        self.stream.flush()

    def close(self):
        if self.tty and self.last is not None:
            self.stream.write('\n')
            self.stream.flush()


# -- the parser and main ---------------------------------------------------

class ArgumentParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, '%s: error: %s (see %s --help)\n'
                  % (self.prog, message, self.prog))


def build_parser():
    """The argument parser of ``zc-async``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        '--db', metavar='URI',
        default=os.environ.get(DB_ENVIRON) or DEFAULT_DB,
        help='the database: a zodburi URI (file://, zeo://, memory://) or a '
             'FileStorage path (default: $%s, else %s)'
             % (DB_ENVIRON, DEFAULT_DB))
    common.add_argument(
        '-v', '--verbose', action='store_true',
        help='log more, and show the traceback of an unexpected error')
    reading = argparse.ArgumentParser(add_help=False, parents=[common])
    reading.add_argument('--json', action='store_true',
                         help='print JSON, for scripts')

    parser = ArgumentParser(
        prog=PROG, description='Run zc.asynchronous dispatchers, put jobs '
        'and look at them.  Try: %s demo' % PROG)
    commands = parser.add_subparsers(dest='command', metavar='COMMAND',
                                     required=True)

    run = commands.add_parser(
        'run', parents=[common], help='run a dispatcher until SIGINT or '
        'SIGTERM', description='Run a dispatcher: it claims the jobs of '
        'every queue and runs them in threads.  Logs go to stderr.')
    run.add_argument('--poll', type=_positive(float), default=1.0,
                     metavar='SECONDS', help='seconds between polls '
                     '(default: 1)')
    run.add_argument('--threads', type=_positive(int), default=3,
                     metavar='N', help='worker threads (default: 3)')
    run.add_argument('--prefetch', type=_non_negative_int, default=0,
                     metavar='N', help='jobs claimed ahead of the threads, '
                     'which go back to the queue if this process dies '
                     '(default: 0)')
    run.set_defaults(handler=cmd_run, log_level=logging.INFO)

    put = commands.add_parser(
        'put', parents=[common], help='put a job in a queue, print its oid',
        description='Put a job calling CALLABLE(ARG, ...) in a queue and '
        'print its oid.  Each ARG is a JSON literal (1, 2.5, null, true, '
        '"text", [1, 2], {"a": 1}) or else a string.')
    put.add_argument('callable', metavar='CALLABLE',
                     help='a global callable: package.module.function')
    put.add_argument('args', nargs='*', default=[], metavar='ARG',
                     help='an argument (put -- before any that starts '
                     'with -)')
    put.add_argument('--begin-after', metavar='WHEN',
                     help='not before then: a delay (30s, 5m, 2h, 1d) or an '
                     'ISO 8601 date and time')
    put.add_argument('--queue', default='', metavar='NAME',
                     help="the queue (default: '', the default queue)")
    put.set_defaults(handler=cmd_put)

    status = commands.add_parser(
        'status', parents=[reading], help='queues, dispatchers and counts')
    status.set_defaults(handler=cmd_status)

    jobs = commands.add_parser(
        'jobs', parents=[reading], help='list jobs',
        description='List the pending, running and recently completed jobs.')
    states = jobs.add_mutually_exclusive_group()
    for state, help in (('pending', 'waiting in a queue'),
                        ('active', 'claimed or running'),
                        ('completed', 'completed successfully'),
                        ('failed', 'completed with a failure')):
        states.add_argument('--' + state, dest='state', action='store_const',
                            const=state, help='only jobs ' + help)
    jobs.set_defaults(handler=cmd_jobs, state=None)

    job = commands.add_parser(
        'job', parents=[reading], help='one job: status, times, result',
        description='Show one job: its status, times, and its result or '
        "its failure's traceback.")
    job.add_argument('oid', metavar='OID')
    job.set_defaults(handler=cmd_job)

    demo = commands.add_parser(
        'demo', parents=[common], help='run a batch of example jobs',
        description='Put a batch of example jobs and run a dispatcher until '
        'they are all done.')
    demo.set_defaults(handler=cmd_demo, log_level=logging.CRITICAL)
    return parser


def main(argv=None):
    """Run ``zc-async`` with ``argv`` (default ``sys.argv[1:]``).

    Returns the exit status: 0, 1 when something failed, 2 for bad input.
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error (reported already)
        return exc.code
    level = getattr(args, 'log_level', logging.WARNING)
    if args.verbose:
        level = logging.INFO if level == logging.CRITICAL else logging.DEBUG
    try:
        with log_to_stderr(level), cwd_on_sys_path():
            args.handler(args)
        return 0
    except CommandError as exc:
        print('%s: error: %s' % (PROG, exc), file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print('%s: interrupted' % PROG, file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (``zc-async jobs | head``): say nothing more.
        with contextlib.suppress(Exception):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except Exception as exc:
        if args.verbose:
            traceback.print_exc()
        print('%s: error: %s: %s%s' % (
            PROG, type(exc).__name__, exc,
            '' if args.verbose else ' (-v shows the traceback)'),
            file=sys.stderr)
        return EXIT_FAILED


@contextlib.contextmanager
def log_to_stderr(level):
    """Send this package's log records of ``level`` and up to stderr.

    Other libraries' records go too from WARNING up (and within
    ``level``).  Everything is put back at the end.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        '%(asctime)s %(levelname)s %(name)s: %(message)s'))
    handler.setLevel(level)
    loggers = [logging.getLogger(name)
               for name in ('zc.async', 'zc.asynchronous')]
    saved = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(level)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        for logger, previous in zip(loggers, saved):
            logger.setLevel(previous)


@contextlib.contextmanager
def cwd_on_sys_path():
    """Let callables be imported from the current folder, as ``python -m``.

    The console script does not put the current folder on ``sys.path``;
    ``put``, ``run`` and ``demo`` should find ``tasks.py`` there alike.
    """
    cwd = os.getcwd()
    added = cwd not in sys.path and '' not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)
