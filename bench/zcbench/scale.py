"""Section 3: the cost of put and of claim as the queue grows.

A FileStorage queue is filled (in batches, untimed) to each level of
pending jobs; at each level ``M`` puts, each in its own transaction, then
``M`` claims (``queue.claim()``, each in its own transaction) are timed
(the median of each), so the queue is back at the level afterwards.  Flat
means the cost at 100k pending is about the cost at 1k: the ratio column
divides by the first level.

Storage bytes per completed job come from the FileStorage of the live
end-to-end pass (section 2), before and after packing.
"""
import os
import time

from zcbench import tasks
from zcbench.common import Row, percentile, ratio

SECTION = '3 scale'
LEVELS = (1000, 10000, 100000)
BATCH = 500


def _fill(queue, tm, count):
    from zc.asynchronous.job import Job
    done = 0
    while done < count:
        for i in range(min(BATCH, count - done)):
            queue.put(Job(tasks.noop))
        done += min(BATCH, count - done)
        tm.commit()


def _timed(op, m, seconds):
    """The median seconds of ``op()`` over ``m`` calls, or fewer (at least
    3) once they have taken ``seconds`` in all; ``(median, calls)``.

    The median, so that a moment of noise on a shared machine (another
    process's fsync, say) does not move the figure.
    """
    times = []
    start = time.perf_counter()
    while len(times) < m:
        t0 = time.perf_counter()
        op()
        times.append(time.perf_counter() - t0)
        if len(times) >= 3 and time.perf_counter() - start > seconds:
            break
    return percentile(times, 50), len(times)


def _put_op(queue, tm):
    from zc.asynchronous.job import Job

    def op():
        queue.put(Job(tasks.noop))
        tm.commit()
    return op


def _claim_op(queue, tm):
    def op():
        if queue.claim() is None:
            raise RuntimeError('the queue ran dry')
        tm.commit()
    return op


def measure(folder, levels=LEVELS, m=200, seconds=5.0):
    """Rows of put and claim cost at each level of pending jobs."""
    import transaction
    import ZODB
    import ZODB.FileStorage
    import zc.asynchronous.configure
    from zc.asynchronous.queue import getDefaultQueue
    zc.asynchronous.configure.base()
    path = os.path.join(folder, 'scale.fs')
    db = ZODB.DB(ZODB.FileStorage.FileStorage(path))
    rows = []
    try:
        zc.asynchronous.configure.install_queues(db)
        tm = transaction.TransactionManager()
        conn = db.open(transaction_manager=tm)
        queue = getDefaultQueue(conn)
        pending = 0
        first = {}
        for level in levels:
            t0 = time.perf_counter()
            _fill(queue, tm, level - pending)
            pending = level
            fill_seconds = time.perf_counter() - t0
            if len(queue) != pending:
                raise RuntimeError('queue holds %d jobs, not %d'
                                   % (len(queue), pending))
            put, puts = _timed(_put_op(queue, tm), m, seconds)
            # As many claims as puts (unless they are slow): the queue is
            # back at ``level``.
            claim, claims = _timed(_claim_op(queue, tm), puts, seconds)
            put *= 1000.0
            claim *= 1000.0
            pending += puts - claims
            first.setdefault('put', put)
            first.setdefault('claim', claim)
            label = '%s pending' % format(level, ',')
            rows.append(Row(SECTION, label, 'put + commit', put, 'ms',
                            ratio(put, first['put']),
                            'vs %s' % format(levels[0], ','),
                            'median of %d; filling took %.1f s'
                            % (puts, fill_seconds)))
            rows.append(Row(SECTION, label, 'claim + commit', claim, 'ms',
                            ratio(claim, first['claim']),
                            'vs %s' % format(levels[0], ','),
                            'median of %d' % claims))
        tm.abort()
        conn.close()
    finally:
        db.close()
    return rows


def storage_rows(live_run):
    """Bytes per completed job, from the live FileStorage pass."""
    if live_run is None or getattr(live_run, 'bytes_grown', None) is None:
        return [Row(SECTION, 'FileStorage', 'bytes per completed job', None,
                    note='the FileStorage pass did not run')]
    return [
        Row(SECTION, 'FileStorage', 'bytes per completed job',
            live_run.bytes_grown, 'B',
            note='growth of Data.fs over the live pass / N (unpacked: '
                 'every commit of the job, its claim and its put)'),
        Row(SECTION, 'FileStorage', 'bytes per kept job, packed',
            live_run.bytes_packed, 'B',
            note='after pack, / the %d completed jobs the agents keep'
                 % live_run.kept),
    ]
