"""The queue's FIFO: zc.queue's CompositeQueue with a claim of flat cost."""
import pytest
import transaction

from zc.asynchronous.fifo import FIFO


@pytest.fixture
def stored(conn):
    fifo = conn.root()['fifo'] = FIFO()
    for n in range(100):
        fifo.put(n)
    conn.transaction_manager.commit()
    return fifo


def test_pull_keeps_first_in_first_out_order(stored):
    assert [stored.pull() for _ in range(100)] == list(range(100))
    with pytest.raises(IndexError):
        stored.pull()


def test_pull_by_index_and_from_the_end(stored):
    assert stored.pull(20) == 20
    assert stored.pull(-1) == 99
    assert stored.pull(0) == 0
    assert list(stored)[:3] == [1, 2, 3]
    assert len(stored) == 97
    with pytest.raises(IndexError):
        stored.pull(97)


def test_a_claim_touches_only_the_first_bucket(stored, conn):
    buckets = stored._data
    assert len(buckets) == 7            # 100 items in buckets of 15
    conn.cacheMinimize()                 # every bucket a ghost again
    assert stored.pull() == 0
    # The list of buckets was not rewritten, and only the first bucket
    # was loaded: the cost of a claim does not grow with the queue.
    assert not stored._p_changed
    assert buckets[0]._p_changed         # the bucket pulled from
    assert all(b._p_changed is None for b in buckets[1:])   # ghosts


def test_an_emptied_bucket_is_dropped(stored, conn):
    for _ in range(15):
        stored.pull()
    assert stored._p_changed
    assert len(stored._data) == 6 and stored.pull() == 15
    conn.transaction_manager.commit()


def test_concurrent_put_and_claim_on_different_buckets_merge(db, stored):
    tm2 = transaction.TransactionManager()
    conn2 = db.open(transaction_manager=tm2)
    try:
        other = conn2.root()['fifo']
        assert stored.pull() == 0        # claims from the first bucket
        other.put(100)                   # puts into the last
        stored._p_jar.transaction_manager.commit()
        tm2.commit()
        stored._p_jar.transaction_manager.begin()
        assert list(stored)[0] == 1 and list(stored)[-1] == 100
        assert len(stored) == 100
    finally:
        tm2.abort()
        conn2.close()


def _two_connections(db):
    tms = [transaction.TransactionManager() for _ in range(2)]
    conns = [db.open(transaction_manager=tm) for tm in tms]
    return tms, conns


def test_a_put_merges_with_the_claim_that_empties_a_short_queue(filedb):
    # The common case when a dispatcher keeps up: one job waits, the
    # dispatcher claims it while an application puts the next.  zc.queue's
    # CompositeQueue makes that a ConflictError; the FIFO merges it.
    tms, conns = _two_connections(filedb)
    conns[0].root()['fifo'] = fifo = FIFO()
    fifo.put('first')
    tms[0].commit()
    tms[1].begin()
    claimer = conns[1].root()['fifo']
    assert claimer.pull() == 'first'      # empties the only bucket
    fifo.put('second')                    # and, concurrently, a put
    tms[1].commit()
    tms[0].commit()                       # resolves instead of conflicting
    tms[1].begin()
    assert list(claimer) == ['second']
    for conn in conns:
        conn.close()


def test_a_put_into_a_bucket_dropped_meanwhile_still_conflicts(filedb):
    # A put whose snapshot still sees, as its tail, a bucket that a claim
    # emptied and dropped must not merge: its item would be lost.
    tms, conns = _two_connections(filedb)
    conns[0].root()['fifo'] = fifo = FIFO(compositeSize=2)
    fifo.put(1)
    tms[0].commit()
    tms[1].begin()
    stale = conns[1].root()['fifo']
    assert list(stale) == [1]             # the put's snapshot: one bucket
    fifo.put(2)
    fifo.put(3)                           # a second bucket
    tms[0].commit()
    assert fifo.pull() == 1 and fifo.pull() == 2   # first bucket dropped
    assert len(fifo._data) == 1
    tms[0].commit()
    stale.put('late')                     # into the dropped bucket
    import ZODB.POSException
    with pytest.raises(ZODB.POSException.ConflictError):
        tms[1].commit()
    tms[1].abort()
    stale.put('late')                     # retried: lands in the live tail
    tms[1].commit()
    tms[0].begin()
    assert list(fifo) == [3, 'late']
    for conn in conns:
        conn.close()
