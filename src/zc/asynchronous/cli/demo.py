"""The ``demo`` command: put example jobs and run them."""
import datetime
import sys
import time

import ZODB.POSException

from zc.asynchronous import interfaces
from zc.asynchronous.cli.common import DEFAULT_DB
from zc.asynchronous.cli.database import connection, get_object, open_database
from zc.asynchronous.cli.describe import describe_result, job_state, oid_of
from zc.asynchronous.cli.render import format_table, shorten

#: How often the demo's dispatcher polls, and how long the demo may take.
DEMO_POLL = 0.1
DEMO_TIMEOUT = 30


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
