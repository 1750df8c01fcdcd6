"""Section 1: the cost of a job against the commit floor of its storage.

The job path: N jobs, each ``Job(noop)`` with one callback, stored in an
IOBTree under the root, committed, then called in-process (``job()``),
which commits its own transactions.

The floor: the same storage doing the same number of plain ZODB commits,
each writing the same number of records of the same sizes as the job
path's commit in that place, with a trivial persistent class.  What the
floor does not do is everything a job adds around its writes: building the
job objects, the status logic, adapter look-ups, callbacks.  ``job / floor``
is that overhead.

The shape (records and their sizes, commit by commit) is read from the
storage after a few sample jobs, so the floor follows the job path when it
changes.
"""
import os
import time

import BTrees.IOBTree
import persistent
import transaction
import ZODB
import ZODB.FileStorage
import ZODB.MappingStorage

from zcbench import tasks
from zcbench.common import Row, ratio, scratch_dir

SECTION = '1 overhead'


class Rec(persistent.Persistent):
    """The floor's record: a padding payload and references to others."""

    def __init__(self, size=0, kids=()):
        self.data = b'x' * size
        if kids:
            self.kids = list(kids)


def make_db(kind, folder, name):
    """A fresh database of ``kind`` ('mapping' or 'file') in ``folder``."""
    if kind == 'mapping':
        return ZODB.DB(ZODB.MappingStorage.MappingStorage())
    return ZODB.DB(ZODB.FileStorage.FileStorage(
        os.path.join(folder, name + '.fs')))


def _open(db):
    tm = transaction.TransactionManager()
    conn = db.open(transaction_manager=tm)
    return conn, tm


def _container(conn, tm):
    root = conn.root()
    root['jobs'] = container = BTrees.IOBTree.IOBTree()
    tm.commit()
    return container


def run_jobs(db, n, start=0):
    """Create, commit and run ``n`` jobs with one callback; seconds taken."""
    from zc.asynchronous.job import Job
    conn, tm = _open(db)
    try:
        container = conn.root().get('jobs')
        if container is None:
            container = _container(conn, tm)
        t0 = time.perf_counter()
        for i in range(start, start + n):
            job = Job(tasks.noop)
            job.addCallback(tasks.callback)
            container[i] = job
            tm.commit()
            job()
        return time.perf_counter() - t0
    finally:
        tm.abort()
        conn.close()


def transactions(storage):
    """``[[(oid, size), ...], ...]``: the records of each transaction."""
    out = []
    for txn in storage.iterator():
        out.append([(record.oid, len(record.data or b'')) for record in txn])
    return out


def job_shape(samples=4):
    """The commits of one job: ``[[(key, is_new, size), ...], ...]``.

    ``key`` numbers the job's objects in order of first appearance; objects
    that existed before the job (the container) get ``None``.
    """
    db = make_db('mapping', None, None)
    try:
        run_jobs(db, samples)
        txns = transactions(db.storage)
    finally:
        db.close()
    per_job = (len(txns) - 2) // samples   # the root and the container
    if per_job * samples != len(txns) - 2:
        raise RuntimeError('jobs do not commit the same number of times')
    seen = set()
    for txn in txns[:-per_job]:
        seen.update(oid for oid, _ in txn)
    keys = {}
    shape = []
    for txn in txns[-per_job:]:
        commit = []
        for oid, size in txn:
            if oid in seen:
                commit.append((None, False, size))
                continue
            is_new = oid not in keys
            if is_new:
                keys[oid] = len(keys)
            commit.append((keys[oid], is_new, size))
        shape.append(commit)
    return shape


class Floor:
    """Replays a job's commit shape with ``Rec`` objects."""

    def __init__(self, shape):
        self.shape = shape
        self.first = [k for k, new, _ in shape[0] if new]
        self.sizes = {}        # key -> pad length for each write
        self._calibrate()

    def _build(self, pads):
        """The objects of one job, new in the first commit."""
        objs = {key: Rec(pads.get((0, key), 0)) for key in self.first[1:]}
        head = Rec(pads.get((0, self.first[0]), 0),
                   kids=[objs[k] for k in self.first[1:]])
        objs[self.first[0]] = head
        return head, objs

    def _calibrate(self):
        """Find pads whose pickles have the sizes of the job's records."""
        pads = {}
        for attempt in range(3):
            db = make_db('mapping', None, None)
            try:
                conn, tm = _open(db)
                container = _container(conn, tm)
                measured = self._replay_one(conn, tm, container, 0, pads,
                                            record=True)
                conn.close()
            finally:
                db.close()
            done = True
            for where, (got, want) in measured.items():
                if got != want:
                    done = False
                    pad = pads.get(where, 0) + (want - got)
                    pads[where] = max(0, pad)
            if done:
                break
        self.pads = pads

    def _replay_one(self, conn, tm, container, index, pads, record=False):
        measured = {}
        head, objs = self._build(pads)
        for step, commit in enumerate(self.shape):
            touched = []
            for key, is_new, size in commit:
                if key is None:
                    if step == 0:
                        container[index] = head
                    else:
                        container._p_changed = True
                    continue
                obj = objs[key]
                if step > 0:
                    obj.data = b'x' * pads.get((step, key), 0)
                touched.append((step, key, size, obj))
            tm.commit()
            if record:
                for step_, key, size, obj in touched:
                    data, _ = conn.db().storage.load(obj._p_oid)
                    measured[(step_, key)] = (len(data), size)
        return measured

    def run(self, db, n, start=0):
        """The floor for ``n`` jobs; seconds taken."""
        conn, tm = _open(db)
        try:
            container = conn.root().get('jobs')
            if container is None:
                container = _container(conn, tm)
            t0 = time.perf_counter()
            for i in range(start, start + n):
                self._replay_one(conn, tm, container, i, self.pads)
            return time.perf_counter() - t0
        finally:
            tm.abort()
            conn.close()

    def run_merged(self, db, n, start=0):
        """The writes of ``n`` jobs in 3 commits each: put, ACTIVE, rest.

        Not what a job may do (its callback commits on its own), but the
        least a job with crash visibility needs: it shows what removing
        commits could still gain.
        """
        conn, tm = _open(db)
        pads = self.pads
        try:
            container = conn.root().get('jobs')
            if container is None:
                container = _container(conn, tm)
            t0 = time.perf_counter()
            for i in range(start, start + n):
                head, objs = self._build(pads)
                container[i] = head
                tm.commit()
                for step, commit in enumerate(self.shape[1:], 1):
                    for key, is_new, size in commit:
                        if key is not None:
                            objs[key].data = b'x' * pads.get((step, key), 0)
                    if step == 1 or step == len(self.shape) - 1:
                        tm.commit()
            return time.perf_counter() - t0
        finally:
            tm.abort()
            conn.close()


def _per_job_writes(db, n):
    """(commits, records, bytes) per job written to ``db`` by ``n`` jobs."""
    txns = transactions(db.storage)[2:]
    records = sum(len(t) for t in txns)
    size = sum(s for t in txns for _, s in t)
    return len(txns) / n, records / n, size / n


def measure(n, rounds=3):
    """The rows of section 1 for ``n`` jobs, best of ``rounds`` each."""
    import zc.asynchronous.configure
    zc.asynchronous.configure.base()
    shape = job_shape()
    floor = Floor(shape)
    rows = []
    for kind, label in (('mapping', 'MappingStorage'),
                        ('file', 'FileStorage')):
        best = {'job': None, 'floor': None, 'merged': None}
        writes = {}
        with scratch_dir() as folder:
            for r in range(rounds):
                # Interleaved, so that a noisy moment hits all of them.
                for name, fn in (('job', run_jobs), ('floor', floor.run),
                                 ('merged', floor.run_merged)):
                    db = make_db(kind, folder, '%s-%d' % (name, r))
                    try:
                        seconds = fn(db, n)
                        if r == 0 and name != 'merged':
                            writes[name] = _per_job_writes(db, n)
                    finally:
                        db.close()
                    if best[name] is None or seconds < best[name]:
                        best[name] = seconds
        us = {k: v / n * 1e6 for k, v in best.items()}
        commits, records, size = writes['job']
        f_commits, f_records, f_size = writes['floor']
        rows.append(Row(SECTION, label, 'job (1 callback)', us['job'],
                        'us/job', ratio(us['job'], us['floor']),
                        'job / floor',
                        '%d jobs/s; %.0f commits, %.0f records, %.0f B per '
                        'job' % (n / best['job'], commits, records, size)))
        rows.append(Row(SECTION, label, 'floor: same commits+writes',
                        us['floor'], 'us/job', None, '',
                        '%.0f commits, %.0f records, %.0f B per job'
                        % (f_commits, f_records, f_size)))
        rows.append(Row(SECTION, label, 'floor: 3 commits, same writes',
                        us['merged'], 'us/job',
                        ratio(us['job'], us['merged']), 'job / 3-commit',
                        'put, ACTIVE, the rest in one'))
    return rows
