"""The peers of section 2: Huey with SqliteHuey, RQ with a SimpleWorker.

Each returns ``{'backlog': Pass, 'live': Pass}`` like the zc.asynchronous
cases, or a string saying why the peer was skipped.

* Huey: one consumer process, one worker thread, polling every 1 ms when
  idle (``-d 0.001 -m 0.005``, so that its latency is not its default
  0.1 to 10 s back-off), results stored, SQLite in WAL mode with its
  default synchronous setting.
* RQ: a redis-server on 127.0.0.1 and a free port, in memory (no RDB, no
  AOF: RQ does not fsync), and one ``SimpleWorker`` process.
"""
import datetime
import os
import shutil
import time

from zcbench import tasks
from zcbench.common import (
    PYTHON, free_port, start_process, stop_process, tail, wait_for_port,
    wait_until)
from zcbench.e2e import PASS_SECONDS, PASSES, Pass, pace, paced_n

HUEY_OPTIONS = ['-w', '1', '-k', 'thread', '-d', '0.001', '-m', '0.005',
                '-b', '1.1', '-n', '-C', '-q']


def _lines(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except OSError:
        return []


def huey_sqlite(n, folder):
    try:
        import huey  # noqa: F401
    except ImportError:
        return 'huey is not installed (pip install -e ".[bench]")'
    from zcbench import huey_tasks
    runs = {}
    for name, rate in PASSES:
        count = paced_n(n) if rate else n
        db_path = os.path.join(folder, 'huey-%s.db' % name)
        done_path = os.path.join(folder, 'huey-%s-done.txt' % name)
        log = os.path.join(folder, 'huey-%s.log' % name)
        huey_tasks.use_db(db_path)
        consumer = None

        def start():
            return start_process(
                [PYTHON, '-m', 'huey.bin.huey_consumer',
                 'zcbench.huey_tasks.huey'] + HUEY_OPTIONS, log,
                env={'ZCBENCH_HUEY_DB': db_path,
                     'ZCBENCH_HUEY_DONE': done_path})
        try:
            run = Pass()
            if name != 'backlog':
                consumer = start()
                warm = huey_tasks.started_at(None)
                try:
                    wait_until(lambda: _lines(done_path)
                               or consumer.poll() is not None, 60)
                except TimeoutError:
                    pass
                if not _lines(done_path):
                    raise RuntimeError('the Huey consumer did not start: %s'
                                       % tail(log))
                warm.get()
            results = []
            t0 = time.time()
            for i in range(count):
                pace(t0, i, rate)
                put_time = time.time()
                results.append((put_time, huey_tasks.started_at(put_time)))
            run.enqueue_seconds = time.time() - t0
            if name == 'backlog':
                consumer = start()
            expected = count + (0 if name == 'backlog' else 1)
            wait_until(lambda: len(_lines(done_path)) >= expected
                       or consumer.poll() is not None, PASS_SECONDS,
                       poll=0.02)
            dones = {}
            for line in _lines(done_path):
                task_id, when = line.split()
                dones[task_id] = float(when)
            for put_time, result in results:
                run.puts[result.id] = put_time
                if result.id in dones:
                    run.dones[result.id] = dones[result.id]
                value = result.get()
                if value is not None:
                    run.starts[result.id] = value
        finally:
            stop_process(consumer)
        run.check()
        runs[name] = run
    return runs


def rq_simple(n, folder):
    try:
        import redis
        import rq
    except ImportError:
        return 'rq/redis are not installed (pip install -e ".[bench]")'
    server_bin = shutil.which('redis-server')
    if server_bin is None:
        return 'no redis-server (apt-get install -y redis-server)'
    port = free_port()
    log = os.path.join(folder, 'redis.log')
    server = start_process(
        [server_bin, '--port', str(port), '--bind', '127.0.0.1',
         '--save', '', '--appendonly', 'no', '--dir', folder,
         '--daemonize', 'no'], log)
    runs = {}
    try:
        try:
            wait_for_port(port, 20, server)
        except Exception:
            return 'redis-server did not start: %s' % tail(log, 3)
        connection = redis.Redis(host='127.0.0.1', port=port)
        for name, rate in PASSES:
            count = paced_n(n) if rate else n
            connection.flushall()
            queue = rq.Queue('zcbench', connection=connection)
            wlog = os.path.join(folder, 'rq-%s.log' % name)
            expected = count + (0 if name == 'backlog' else 1)

            def start():
                return start_process(
                    [PYTHON, '-m', 'zcbench.rq_worker', str(port),
                     'zcbench', str(expected)], wlog)
            worker = None
            try:
                run = Pass()
                if name != 'backlog':
                    worker = start()
                    warm = queue.enqueue(tasks.started_at, None)
                    try:
                        wait_until(
                            lambda: warm.get_status(refresh=True)
                            == 'finished' or worker.poll() is not None, 60)
                    except TimeoutError:
                        pass
                    if warm.get_status(refresh=True) != 'finished':
                        raise RuntimeError('the RQ worker did not start: %s'
                                           % tail(wlog))
                jobs = []
                t0 = time.time()
                for i in range(count):
                    pace(t0, i, rate)
                    put_time = time.time()
                    jobs.append((put_time,
                                 queue.enqueue(tasks.started_at, put_time)))
                run.enqueue_seconds = time.time() - t0
                if name == 'backlog':
                    worker = start()
                wait_until(lambda: worker.poll() is not None,
                           PASS_SECONDS, poll=0.02)
                ids = [job.id for _, job in jobs]
                fetched = rq.job.Job.fetch_many(ids, connection=connection)
                for (put_time, _), job in zip(jobs, fetched):
                    run.puts[job.id] = put_time
                    if job is None:
                        continue
                    value = job.return_value()
                    if value is not None:
                        run.starts[job.id] = value
                    ended = job.ended_at
                    if ended is not None:
                        if ended.tzinfo is None:   # naive UTC
                            ended = ended.replace(tzinfo=datetime.timezone.utc)
                        run.dones[job.id] = ended.timestamp()
            finally:
                stop_process(worker)
            run.check()
            runs[name] = run
    finally:
        stop_process(server)
    return runs
