"""Section 2's floors: the least the storage itself allows, in the same run.

A job that survives a crash needs at least two durable commits of its
own: its put, and the commit that completes it (a dispatcher's worker
also marks its next job ACTIVE in that one, so the crash story needs no
third).  The floors time just those commits, with a trivial persistent
object and nothing else, on the storages of the zc.asynchronous cases:

* FileStorage, one process, one thread: N times a new object committed,
  then changed and committed.  A FileStorage commits one transaction at a
  time (its commit lock), so the one process of the embedded case cannot
  do better than this, whatever its threads: it bounds ``e2e jobs/s``.
* ZEO, paced like the paced pass: from one client, a commit of a new
  object (the put) then a commit that changes it (the claim that marks it
  ACTIVE), one pair at a time at ``PACED_RATE``.  The pair is the least a
  job's put->start can take over ZEO: ``paced put->start p50`` cannot go
  below it.
"""
import os
import time

import persistent
import transaction

from zcbench.common import Row, percentile, ratio
from zcbench.e2e import PACED_RATE, SECTION, ZEOServer, pace, paced_n


class Thing(persistent.Persistent):
    """The floor's job: one small record."""

    state = 'new'


def _two_commits(tm, container, key):
    thing = container[key] = Thing()
    tm.commit()                 # the put
    thing.state = 'done'
    tm.commit()                 # the completion (or the claim)


def filestorage(n, folder):
    """Jobs/s of the FileStorage floor: 2 commits per job, one thread."""
    import BTrees.IOBTree
    import ZODB
    import ZODB.FileStorage
    db = ZODB.DB(ZODB.FileStorage.FileStorage(
        os.path.join(folder, 'floor.fs')))
    try:
        tm = transaction.TransactionManager()
        conn = db.open(transaction_manager=tm)
        container = conn.root()['things'] = BTrees.IOBTree.IOBTree()
        tm.commit()
        t0 = time.perf_counter()
        for i in range(n):
            _two_commits(tm, container, i)
        seconds = time.perf_counter() - t0
        conn.close()
    finally:
        db.close()
    return n / seconds


def zeo(n, folder):
    """p50 and p99 ms of the ZEO floor: a put and a claim commit, paced."""
    import BTrees.IOBTree
    import ZEO
    server = ZEOServer(folder, 'floor').start()
    db = None
    try:
        db = ZEO.DB(('127.0.0.1', server.port), wait_timeout=30)
        tm = transaction.TransactionManager()
        conn = db.open(transaction_manager=tm)
        container = conn.root()['things'] = BTrees.IOBTree.IOBTree()
        tm.commit()
        times = []
        t0 = time.time()
        for i in range(paced_n(n)):
            pace(t0, i, PACED_RATE)
            start = time.perf_counter()
            _two_commits(tm, container, i)
            times.append((time.perf_counter() - start) * 1000.0)
        conn.close()
    finally:
        if db is not None:
            db.close()
        server.stop()
    return percentile(times, 50), percentile(times, 99), len(times)


def measure(n, folder, huey=None):
    """The floor rows; ``huey`` is Huey's summary (for the ratios)."""
    huey = huey or {}
    rows = []
    try:
        rate = filestorage(n, folder)
    except Exception as exc:
        rows.append(Row(SECTION, 'floor FileStorage', 'skipped', None,
                        note='FAILED: %s' % (exc,)))
    else:
        base = huey.get('e2e jobs/s')
        rows.append(Row(
            SECTION, 'floor FileStorage', 'e2e jobs/s', rate, 'jobs/s',
            ratio(rate, base), 'vs Huey' if base else '',
            'the bound of one process: 2 plain commits per job (a put, a '
            'completion), one thread, %d jobs' % n))
    try:
        p50, p99, count = zeo(n, folder)
    except Exception as exc:
        rows.append(Row(SECTION, 'floor ZEO', 'skipped', None,
                        note='FAILED: %s' % (exc,)))
    else:
        for metric, value in (('paced put->start p50', p50),
                              ('paced put->start p99', p99)):
            base = huey.get(metric)
            rows.append(Row(
                SECTION, 'floor ZEO', metric, value, 'ms',
                ratio(value, base), 'vs Huey' if base else '',
                'the least over ZEO: a put commit then a claim commit, '
                '%d pairs at %.0f/s' % (count, PACED_RATE)))
    return rows
