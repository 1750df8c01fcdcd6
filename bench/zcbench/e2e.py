"""Section 2: end to end, N no-op jobs, zc.asynchronous and its peers.

Every system runs the same two passes over N jobs whose callable returns
``time.time()``:

* backlog: N jobs are put with no worker running (``enqueue/s``), then the
  worker starts and runs them all (``drain/s``: N over the time from the
  first job's start to the last one's completion);
* live: the worker runs while one producer puts N jobs, one put per
  transaction, as fast as it can (``e2e jobs/s``: N over the time from the
  first put to the last completion), and each job's latency is taken from
  its put to the start of its callable and to its completion; when the
  worker is slower than the producer this latency is mostly the time a
  job waits behind the others;
* paced: the same, with puts paced at ``PACED_RATE`` jobs/s (``paced_n(N)``
  jobs), a rate every system here keeps up with, so the latency is that of
  getting one job from its put to a worker.

"Completed" is when the worker has made the end of the job durable: for
zc.asynchronous when ``job()`` returned, after the commit of the result and
COMPLETED (the dispatcher's job history); for Huey the ``SIGNAL_COMPLETE``
sent once the result is stored; for RQ the job's ``ended_at``.

The zc.asynchronous cases: FileStorage, one process that puts and embeds
its dispatcher (a FileStorage belongs to one process); ZEO, a ZEO server
process, this process putting, one dispatcher process running the jobs.
"""
import json
import os
import sys
import time
import uuid

from zcbench import tasks
from zcbench.common import (
    PREFETCH,
    PYTHON, Row, free_port, percentile, ratio, start_process, stop_process,
    tail, wait_for_port, wait_until)

SECTION = '2 end to end'
#: How long one pass may take before it is given up.
PASS_SECONDS = 120
#: Puts per second of the paced pass: well below what each system here
#: drains (ZEO, the slowest, drains about 100 jobs/s on 2 cores).
PACED_RATE = 25.0
#: The passes: name and put rate (None: as fast as possible).
PASSES = (('backlog', None), ('live', None), ('paced', PACED_RATE))


def paced_n(n):
    """How many jobs the paced pass puts: N / 20, from 20 to 100."""
    return max(min(n, 20), min(n // 20, 100))


def pace(t0, i, rate):
    """Sleep until the ``i``-th put of a pass paced at ``rate`` is due."""
    if rate:
        delay = t0 + i / rate - time.time()
        if delay > 0:
            time.sleep(delay)


class Pass:
    """The timestamps of one pass: by job id, put, start and completion."""

    def __init__(self):
        self.puts = {}
        self.starts = {}
        self.dones = {}
        self.enqueue_seconds = None
        self.notes = []

    @property
    def n(self):
        return len(self.puts)

    def check(self):
        missing = [k for k in self.puts
                   if k not in self.starts or k not in self.dones]
        if missing:
            raise RuntimeError('%d of %d jobs have no start or completion '
                               'time' % (len(missing), self.n))

    def enqueue_rate(self):
        return ratio(self.n, self.enqueue_seconds)

    def drain_rate(self):
        span = max(self.dones.values()) - min(self.starts.values())
        return ratio(self.n, span)

    def e2e_rate(self):
        span = max(self.dones.values()) - min(self.puts.values())
        return ratio(self.n, span)

    def latencies(self, which):
        ends = self.starts if which == 'start' else self.dones
        return [(ends[k] - self.puts[k]) * 1000.0 for k in self.puts]


def summary(backlog, live, paced):
    """The figures of one system: a dict of name -> value."""
    start = live.latencies('start')
    done = live.latencies('done')
    paced_start = paced.latencies('start')
    paced_done = paced.latencies('done')
    return {
        'paced put->start p50': percentile(paced_start, 50),
        'paced put->start p99': percentile(paced_start, 99),
        'paced put->done p50': percentile(paced_done, 50),
        'paced put->done p99': percentile(paced_done, 99),
        'enqueue/s': backlog.enqueue_rate(),
        'drain/s': backlog.drain_rate(),
        'e2e jobs/s': live.e2e_rate(),
        'live enqueue/s': live.enqueue_rate(),
        'put->start p50': percentile(start, 50),
        'put->start p99': percentile(start, 99),
        'put->done p50': percentile(done, 50),
        'put->done p99': percentile(done, 99),
    }


METRICS = (
    ('enqueue/s', 'jobs/s', 'backlog: puts, no worker'),
    ('drain/s', 'jobs/s', 'backlog: first start to last completion'),
    ('e2e jobs/s', 'jobs/s', 'live: first put to last completion'),
    ('put->start p50', 'ms', 'live'),
    ('put->start p99', 'ms', 'live'),
    ('put->done p50', 'ms', 'live'),
    ('put->done p99', 'ms', 'live'),
    ('paced put->start p50', 'ms', 'paced'),
    ('paced put->start p99', 'ms', 'paced'),
    ('paced put->done p50', 'ms', 'paced'),
    ('paced put->done p99', 'ms', 'paced'),
)


# -- zc.asynchronous ---------------------------------------------------------

def _put_jobs(db, n, rate=None):
    """Put ``n`` jobs, one commit each; ``(Pass, tm, conn)``.

    A put that meets a conflict (the queue bucket a dispatcher emptied, for
    instance) is retried, as an application would.
    """
    import transaction
    import ZODB.POSException
    import ZODB.utils
    from zc.asynchronous.job import Job
    from zc.asynchronous.queue import getDefaultQueue
    tm = transaction.TransactionManager()
    conn = db.open(transaction_manager=tm)
    run = Pass()
    conflicts = 0
    queue = getDefaultQueue(conn)
    t0 = time.time()
    for i in range(n):
        pace(t0, i, rate)
        for attempt in range(20):
            put_time = time.time()
            try:
                job = queue.put(Job(tasks.started_at, put_time))
                tm.commit()
                break
            except ZODB.POSException.ConflictError:
                tm.abort()
                conflicts += 1
                queue = getDefaultQueue(conn)
        else:
            raise RuntimeError('20 conflicts in a row putting a job')
        run.puts[ZODB.utils.u64(job._p_oid)] = put_time
    run.enqueue_seconds = time.time() - t0
    if conflicts:
        run.notes.append('%d put conflicts retried' % conflicts)
    return run, tm, conn


def _read_starts(run, tm, conn):
    """Each job's result (the start time of its callable), from the DB."""
    import ZODB.utils
    tm.begin()
    for oid in run.puts:
        job = conn.get(ZODB.utils.p64(oid))
        if isinstance(job.result, float):
            run.starts[oid] = job.result


class _Progress:
    """Waits for the jobs of a pass to complete, cheaply.

    Jobs complete in about the order they were put, so it keeps a cursor
    into that order and only looks past it: each check costs about the
    number of jobs completed since the last one, not the number of jobs.
    """

    def __init__(self, keys):
        self.keys = list(keys)
        self.cursor = 0

    def left(self, is_done):
        keys = self.keys
        while self.cursor < len(keys) and is_done(keys[self.cursor]):
            self.cursor += 1
        return len(keys) - self.cursor


def _embedded_times(run, dispatcher):
    from zcbench.zc_worker import job_times
    for oid, (started, completed) in job_times(dispatcher).items():
        if oid in run.puts and completed is not None:
            run.dones[oid] = completed


def describe_queue(tm, conn):
    """What the default queue and its agents hold, for an error message."""
    from zc.asynchronous.queue import getDefaultQueue
    try:
        tm.begin()
        queue = getDefaultQueue(conn)
        parts = ['%d jobs in the queue' % len(queue)]
        for da in queue.dispatchers.values():
            for name, agent in da.items():
                parts.append('agent %s of %s (activated %s, size %d) holds %s'
                             % (name, da.UUID, da.activated, agent.size,
                                [(j._p_oid and int.from_bytes(j._p_oid, 'big'),
                                  j.status) for j in agent]))
        return '; '.join(parts)
    except Exception as exc:
        return 'could not look at the queue: %r' % (exc,)


def _wait_embedded(run, dispatcher, db, tm, conn):
    dbname = db.database_name
    jobs = dispatcher.jobs

    def is_done(oid):
        info = jobs.get((oid, dbname))
        return info is not None and info['completed'] is not None
    progress = _Progress(run.puts)
    try:
        wait_until(lambda: progress.left(is_done) == 0, PASS_SECONDS,
                   poll=0.05)
    except TimeoutError:
        raise RuntimeError(
            'the dispatcher completed %d of %d jobs in %d s: %s'
            % (progress.cursor, run.n, PASS_SECONDS,
               describe_queue(tm, conn)))


def _kept_jobs(conn):
    """How many completed jobs the agents of the default queue keep."""
    from zc.asynchronous.queue import getDefaultQueue
    queue = getDefaultQueue(conn)
    return sum(len(agent.completed) for da in queue.dispatchers.values()
               for agent in da.values())


def _commits(db):
    """How many transactions the database holds (FileStorage or ZEO)."""
    return sum(1 for _ in db.storage.iterator())


def zc_filestorage(n, folder, workers=1):
    """The passes on a FileStorage with an embedded dispatcher."""
    import ZODB
    import ZODB.FileStorage
    import zc.asynchronous.configure
    runs = {}
    for name, rate in PASSES:
        count = paced_n(n) if rate else n
        path = os.path.join(folder, 'zc-%s.fs' % name)
        db = ZODB.DB(ZODB.FileStorage.FileStorage(path))
        dispatcher = conn = None
        try:
            zc.asynchronous.configure.base()
            zc.asynchronous.configure.install_queues(db)

            def start():
                from zc.asynchronous import testing
                d = zc.asynchronous.configure.start(
                    db, poll_interval=1, agent_size=workers, prefetch=PREFETCH,
                    uuid=uuid.uuid4(), jobs_size=n + 100)
                testing.wait_for_poll(d, seconds=30)
                return d
            if name != 'backlog':
                dispatcher = start()
            size_before = os.path.getsize(path)
            commits_before = _commits(db)
            run, tm, conn = _put_jobs(db, count, rate)
            if name == 'backlog':
                dispatcher = start()
            _wait_embedded(run, dispatcher, db, tm, conn)
            _embedded_times(run, dispatcher)
            _read_starts(run, tm, conn)
            run.notes.append('%d polls' % dispatcher._poll_count)
            dispatcher.stop()
            dispatcher = None
            run.commits = (_commits(db) - commits_before) / count
            if name == 'live':
                run.bytes_grown = (os.path.getsize(path) - size_before) / count
                db.pack(time.time())
                tm.begin()
                run.kept = _kept_jobs(conn)
                run.bytes_packed = ratio(os.path.getsize(path), run.kept)
            tm.abort()
            conn.close()
            conn = None
        finally:
            if dispatcher is not None:
                dispatcher.stop()
            if conn is not None:
                conn.transaction_manager.abort()
                conn.close()
            db.close()
        run.notes.append('%.2f commits/job' % run.commits)
        run.check()
        runs[name] = run
    return runs


class ZEOServer:
    """A ZEO server subprocess on 127.0.0.1 and a free port."""

    def __init__(self, folder, name):
        self.path = os.path.join(folder, name + '.fs')
        self.port = free_port()
        self.log = os.path.join(folder, name + '-zeo.log')
        self.proc = None

    def start(self):
        self.proc = start_process(
            [PYTHON, '-m', 'ZEO.runzeo', '-a', '127.0.0.1:%d' % self.port,
             '-f', self.path], self.log)
        try:
            wait_for_port(self.port, 30, self.proc)
        except Exception:
            self.stop()
            raise RuntimeError('ZEO server did not start: %s'
                               % tail(self.log))
        return self

    def stop(self):
        stop_process(self.proc)


def zc_zeo(n, folder, workers=1):
    """The passes on ZEO: a server, this process putting, one worker."""
    import ZEO
    import zc.asynchronous.configure
    runs = {}
    for name, rate in PASSES:
        count = paced_n(n) if rate else n
        server = ZEOServer(folder, 'zeo-%s' % name).start()
        worker = None
        db = conn = None
        out = os.path.join(folder, 'zeo-%s-times.json' % name)
        ready = os.path.join(folder, 'zeo-%s-ready' % name)
        log = os.path.join(folder, 'zeo-%s-worker.log' % name)

        def start_worker():
            proc = start_process(
                [PYTHON, '-m', 'zcbench.zc_worker', str(server.port),
                 str(count), out, ready, str(workers), str(PASS_SECONDS)],
                log)
            try:
                wait_until(lambda: os.path.exists(ready)
                           or proc.poll() is not None, 60, poll=0.02)
            except TimeoutError:
                pass
            if not os.path.exists(ready):
                stop_process(proc)
                raise RuntimeError('the dispatcher process did not start: '
                                   '%s' % tail(log))
            return proc
        try:
            db = ZEO.DB(('127.0.0.1', server.port), wait_timeout=30)
            zc.asynchronous.configure.base()
            zc.asynchronous.configure.install_queues(db)
            if name != 'backlog':
                worker = start_worker()
            commits_before = _commits(db)
            run, tm, conn = _put_jobs(db, count, rate)
            if name == 'backlog':
                worker = start_worker()
            wait_until(lambda: os.path.exists(out) or worker.poll()
                       is not None, PASS_SECONDS + 30, poll=0.02)
            if not os.path.exists(out):
                raise RuntimeError('the dispatcher process wrote no times: '
                                   '%s' % tail(log))
            with open(out) as f:
                data = json.load(f)
            for oid, started, completed in data['jobs']:
                if oid in run.puts and completed is not None:
                    run.dones[oid] = completed
            if len(run.dones) < run.n:
                raise RuntimeError(
                    'the dispatcher process completed %d of %d jobs in %d '
                    's: %s' % (len(run.dones), run.n, PASS_SECONDS,
                               describe_queue(tm, conn)))
            _read_starts(run, tm, conn)
            run.notes.append('%d polls' % data['polls'])
            tm.abort()
            run.commits = (_commits(db) - commits_before) / count
        finally:
            if worker is not None:
                try:
                    worker.wait(30)
                except Exception:
                    pass
                stop_process(worker)
            if conn is not None:
                conn.transaction_manager.abort()
                conn.close()
            if db is not None:
                db.close()
            server.stop()
        run.notes.append('%.2f commits/job' % run.commits)
        run.check()
        runs[name] = run
    return runs


# -- the rows ----------------------------------------------------------------

def rows_for(results, baseline='Huey SqliteHuey'):
    """Rows for ``results`` (``[(case, runs or None, note)]``).

    Each figure is divided by the baseline's (Huey's) in the ratio column:
    above 1 is better for rates, worse for latencies.
    """
    summaries = {}
    for case, runs, note in results:
        if runs is not None:
            summaries[case] = summary(
                runs['backlog'], runs['live'], runs['paced'])
    base = summaries.get(baseline)
    rows = []
    for case, runs, note in results:
        if runs is None:
            rows.append(Row(SECTION, case, 'skipped', None, note=note))
            continue
        figures = summaries[case]
        for metric, unit, how in METRICS:
            notes = [how]
            if metric == 'enqueue/s':
                notes += runs['backlog'].notes
            elif metric == 'e2e jobs/s':
                notes.append('live enqueue %.0f/s' % figures['live enqueue/s'])
                notes += runs['live'].notes
            elif metric == 'paced put->start p50':
                notes.append('%d jobs at %.0f/s' % (runs['paced'].n,
                                                    PACED_RATE))
            r = None
            if base is not None and case != baseline:
                r = ratio(figures[metric], base[metric])
            rows.append(Row(SECTION, case, metric, figures[metric], unit, r,
                            'vs Huey' if r is not None else '',
                            '; '.join(notes)))
    return rows


def measure(n, folder, peers=True, workers=1):
    """Run every system; the rows of section 2."""
    from zcbench import peers as peer_module
    results = []
    for case, fn in (('zc FileStorage embedded', zc_filestorage),
                     ('zc ZEO 2 processes', zc_zeo)):
        sub = os.path.join(folder, fn.__name__)
        os.mkdir(sub)
        try:
            results.append((case, fn(n, sub, workers), ''))
        except Exception as exc:
            results.append((case, None, 'FAILED: %s' % (exc,)))
            print('%s failed: %r' % (case, exc), file=sys.stderr)
    if peers:
        for case, fn in (('Huey SqliteHuey', peer_module.huey_sqlite),
                         ('RQ SimpleWorker', peer_module.rq_simple)):
            sub = os.path.join(folder, fn.__name__)
            os.mkdir(sub)
            try:
                runs = fn(n, sub)
                note = ''
                if isinstance(runs, str):
                    runs, note = None, runs
                results.append((case, runs, note))
            except Exception as exc:
                results.append((case, None, 'FAILED: %s' % (exc,)))
                print('%s failed: %r' % (case, exc), file=sys.stderr)
    from zcbench import floors
    huey = None
    for case, runs, note in results:
        if case == 'Huey SqliteHuey' and runs is not None:
            huey = summary(runs['backlog'], runs['live'], runs['paced'])
    sub = os.path.join(folder, 'floors')
    os.mkdir(sub)
    return rows_for(results) + floors.measure(n, sub, huey), results
