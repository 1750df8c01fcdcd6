"""The dispatcher's invalidation watcher: wake-ups, prefetch, catch-up."""
import threading

import ZODB.utils

from zc.asynchronous.dispatcher import _InvalidationWatcher


class FakeStorage:
    def __init__(self):
        self.prefetched = []

    def prefetch(self, oids, tid):
        self.prefetched.append((sorted(oids), tid))


class FakeAdapter:
    def __init__(self):
        self._instances = set()
        self._lock = threading.Lock()


class FakeDB:
    def __init__(self, storage):
        self.storage = storage
        self._mvcc_storage = FakeAdapter()


class FakeConn:
    def __init__(self, start):
        self._storage = type('Instance', (), {'_start': start})()


def p(n):
    return ZODB.utils.p64(n)


def make(storage=None):
    wakes = []
    db = FakeDB(storage or FakeStorage())
    watcher = _InvalidationWatcher(db, lambda: wakes.append(1))
    assert watcher in db._mvcc_storage._instances
    return watcher, db.storage, wakes


def test_wakes_on_watched_objects_only():
    watcher, storage, wakes = make()
    watcher._invalidate(p(5), [p(1)])        # before the first poll: any
    assert len(wakes) == 1
    watcher.oids = frozenset([p(1)])
    watcher._invalidate(p(6), [p(2)])
    assert len(wakes) == 1
    watcher._invalidate(p(7), [p(2), p(1)])
    assert len(wakes) == 2
    assert watcher.tid == p(7)


def test_prefetches_the_commit_that_wakes_as_a_new_view_will_load_it():
    watcher, storage, wakes = make()
    watcher.oids = frozenset([p(1)])
    watcher._invalidate(p(10), [p(1), p(3)])
    watcher._invalidate(p(11), [p(4)])       # not watched: no prefetch
    big = [p(n) for n in range(1, watcher.PREFETCH_LIMIT + 2)]
    watcher._invalidate(p(12), big)           # too many objects
    assert storage.prefetched == [([p(1), p(3)], p(11))]
    assert len(wakes) == 2


def test_storages_without_prefetch_still_wake():
    watcher, storage, wakes = make(storage=object())
    watcher.oids = frozenset([p(1)])
    watcher._invalidate(p(10), [p(1)])
    assert wakes == [1]


def test_a_view_that_misses_the_waking_commit_is_older():
    watcher, storage, wakes = make()
    assert not watcher.view_is_older(FakeConn(p(5)))   # nothing woke it
    watcher._invalidate(p(10), [p(1)])
    assert watcher.view_is_older(FakeConn(p(10)))      # sees up to 9
    assert not watcher.view_is_older(FakeConn(p(11)))  # sees 10
    assert not watcher.view_is_older(FakeConn(None))   # not an MVCC view
    watcher._invalidate(p(8), [p(1)])                  # out of order
    assert watcher.tid == p(10)


def test_no_prefetch_nor_wake_when_the_dispatcher_does_not_want_one():
    """Every pool stocked, say: the commit's objects are not loaded now
    (the next put would only change them again)."""
    storage = FakeStorage()
    wakes = []
    wanted = [False]
    watcher = _InvalidationWatcher(FakeDB(storage), lambda: wakes.append(1),
                                   lambda: wanted[0])
    watcher.oids = frozenset([p(1)])
    watcher._invalidate(p(10), [p(1)])
    assert wakes == [] and storage.prefetched == [] and watcher.tid is None
    wanted[0] = True
    watcher._invalidate(p(11), [p(1)])
    assert wakes == [1] and storage.prefetched == [([p(1)], p(12))]


def test_an_error_in_the_watcher_does_not_escape(caplog):
    """It runs inside the MVCC adapter's loop over the connections: an
    error must not keep the others from hearing of the commit."""
    def broken():
        raise RuntimeError('broken')
    watcher = _InvalidationWatcher(FakeDB(FakeStorage()), lambda: None,
                                   broken)
    watcher.oids = frozenset([p(1)])
    watcher._invalidate(p(10), [p(1)])      # does not raise
    assert 'wake-up on a commit failed' in caplog.text


def test_a_poll_gives_up_on_a_commit_the_database_never_shows(caplog):
    """A storage that went back in time (a ZEO server restored from a
    backup): the poll waits at most CATCH_UP_SECONDS once, then forgets
    that commit, instead of waiting in every poll."""
    import types
    from zc.asynchronous.dispatcher import Dispatcher
    watcher, storage, wakes = make()
    watcher._invalidate(p(10), [p(1)])
    conn = FakeConn(p(5))
    begins = []
    fake = types.SimpleNamespace(_watcher=watcher, conn=conn,
                                 CATCH_UP_SECONDS=0.01)
    tm = types.SimpleNamespace(begin=lambda: begins.append(1))
    Dispatcher._catch_up(fake, tm)
    assert begins and watcher.tid is None
    assert 'never showed the commit' in caplog.text
    begins.clear()
    Dispatcher._catch_up(fake, tm)     # nothing to wait for now
    assert begins == []


def test_a_poll_syncs_again_until_its_view_shows_the_waking_commit():
    import types
    from zc.asynchronous.dispatcher import Dispatcher
    watcher, storage, wakes = make()
    watcher._invalidate(p(10), [p(1)])
    conn = FakeConn(p(9))

    def begin():          # the third sync sees the commit
        begins.append(1)
        if len(begins) == 3:
            conn._storage._start = p(11)
    begins = []
    fake = types.SimpleNamespace(_watcher=watcher, conn=conn,
                                 CATCH_UP_SECONDS=5)
    Dispatcher._catch_up(fake, types.SimpleNamespace(begin=begin))
    assert len(begins) == 3 and watcher.tid == p(10)
    watcher._invalidateCache()
    assert watcher.tid is None


def test_giving_up_keeps_a_newer_commit():
    """A commit that arrives while a poll waits for an older one is not
    forgotten with it."""
    import types
    from zc.asynchronous.dispatcher import Dispatcher
    watcher, storage, wakes = make()
    watcher._invalidate(p(10), [p(1)])
    conn = FakeConn(p(5))

    def begin():
        watcher._invalidate(p(20), [p(1)])   # from ZEO's I/O thread
    fake = types.SimpleNamespace(_watcher=watcher, conn=conn,
                                 CATCH_UP_SECONDS=0.01)
    Dispatcher._catch_up(fake, types.SimpleNamespace(begin=begin))
    assert watcher.tid == p(20)
