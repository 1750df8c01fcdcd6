"""How a job stores its arguments and times (zc.asynchronous.jobstate)."""
import datetime
import operator

import persistent.list
import persistent.mapping
import pytest
import pytz
import transaction

from zc.asynchronous import jobstate, utils
from zc.asynchronous.job import Job


def positional(*args):
    return args


def both(*args, **kwargs):
    return (args, kwargs)


def pair(job, n):
    return (job, n)


def store(conn, job, key='job'):
    conn.root()[key] = job
    conn.transaction_manager.commit()
    return job


def records(db):
    """The number of records of the last transaction."""
    *_, last = db.storage.iterator()
    return len(list(last))


def test_small_arguments_live_in_the_job_record(db, conn):
    job = store(conn, Job(operator.add, 2, 3))
    assert job._args == (2, 3)
    assert job._kwargs is None
    # The job, its callbacks queue and annotations, and the root: no list
    # or mapping of arguments.
    assert records(db) == 4
    assert job() == 5


def test_large_or_odd_arguments_get_their_own_record():
    big = 'x' * (jobstate.INLINE_LENGTH + 1)
    assert isinstance(Job(len, big)._args, persistent.list.PersistentList)
    assert isinstance(Job(len, [1, 2])._args, persistent.list.PersistentList)
    many = list(range(jobstate.INLINE_ITEMS + 1))
    assert isinstance(Job(max, *many)._args, persistent.list.PersistentList)
    assert isinstance(Job(dict, a=[1])._kwargs,
                      persistent.mapping.PersistentMapping)
    assert Job(dict, a=1, b='two')._kwargs == {'a': 1, 'b': 'two'}


def test_reading_arguments_does_not_write_the_job(conn):
    job = store(conn, Job(operator.add, 2, 3))
    assert job.args == [2, 3]
    assert list(job.args) == [2, 3] and job.args[1] == 3 and len(job.args) == 2
    assert repr(job.args) == '[2, 3]'
    assert job.kwargs == {} and repr(job.kwargs) == '{}'
    assert 'x' not in job.kwargs
    assert not job._p_changed


@pytest.mark.parametrize('change, expected', [
    (lambda args: args.append(4), [2, 3, 4]),
    (lambda args: args.insert(0, 1), [1, 2, 3]),
    (lambda args: args.__setitem__(1, 30), [2, 30]),
    (lambda args: args.__delitem__(0), [3]),
    (lambda args: args.extend([5, 6]), [2, 3, 5, 6]),
])
def test_changing_arguments_makes_a_persistent_list(db, conn, change,
                                                     expected):
    job = store(conn, Job(positional, 2, 3))
    change(job.args)
    assert isinstance(job._args, persistent.list.PersistentList)
    assert job.args == expected
    conn.transaction_manager.commit()
    other = db.open(transaction_manager=transaction.TransactionManager())
    try:
        assert list(other.root()['job'].args) == expected
    finally:
        other.close()


def test_changing_kwargs_makes_a_persistent_mapping(db, conn):
    job = store(conn, Job(dict, a=1))
    view = job.kwargs
    view['b'] = 2
    assert isinstance(job._kwargs, persistent.mapping.PersistentMapping)
    view['c'] = 3       # the same view now writes to the mapping
    del job.kwargs['a']
    conn.transaction_manager.commit()
    assert job() == {'b': 2, 'c': 3}


def test_assigning_and_adding_arguments(conn):
    job = store(conn, Job(both))
    job.args += [1]
    job.args = (7, 8)
    job.kwargs = {'x': 1}
    assert job._args == (7, 8) and job._kwargs == {'x': 1}
    job.args = ['y' * 1000]
    assert isinstance(job._args, persistent.list.PersistentList)
    job.args = [7, 8]
    conn.transaction_manager.commit()
    assert job() == ((7, 8), {'x': 1})


def test_bind_keeps_the_job_inline(conn):
    job = store(conn, Job.bind(pair, 4))
    assert job._args == (job, 4)
    assert job()[0] is job


def test_jobs_of_earlier_versions_load():
    """A state with ``args`` and ``kwargs`` containers, and datetimes."""
    job = Job.__new__(Job)
    start = datetime.datetime(2026, 1, 2, 3, 4, 5, 6, pytz.UTC)
    job.__setstate__({
        'args': persistent.list.PersistentList([1, 2]),
        'kwargs': persistent.mapping.PersistentMapping({'k': 3}),
        '_callable_root': operator.add, '_active_start': start})
    assert job.args == [1, 2] and dict(job.kwargs) == {'k': 3}
    assert job.active_start == start
    assert 'args' not in job.__dict__


def test_times_are_stored_as_microseconds_and_read_as_datetimes(conn, clock):
    job = store(conn, Job(operator.add, 1, 1))
    job()
    assert isinstance(job._active_start, int)
    assert job.active_start == clock.when == job.active_end
    assert job.active_start.tzinfo is pytz.UTC
    assert utils.micros_to_dt(None) is None


def test_now_is_pytz_utc():
    before = datetime.datetime.now(datetime.timezone.utc)
    now = utils.now()
    assert now.tzinfo is pytz.UTC
    assert abs(now - before) < datetime.timedelta(seconds=5)


def test_inline_arguments_act_like_a_list_and_a_dict(conn):
    job = store(conn, Job(both, 3, 1, 2, a=1))
    args, kwargs = job.args, job.kwargs
    assert args + [9] == [3, 1, 2, 9] and [9] + args == [9, 3, 1, 2]
    assert args * 2 == [3, 1, 2] * 2 == 2 * args
    assert args.copy() == [3, 1, 2] and type(args.copy()) is list
    assert args == [3, 1, 2] and args == persistent.list.PersistentList(
        [3, 1, 2])
    # Like a list, not equal to a tuple or a string.
    assert args != (3, 1, 2)
    assert Job(both, 'a', 'b').args != 'ab'
    assert kwargs.copy() == {'a': 1} and kwargs | {'b': 2} == {'a': 1, 'b': 2}
    assert {'b': 2} | kwargs == {'a': 1, 'b': 2}
    assert not job._p_changed
    args.sort()
    assert job.args == [1, 2, 3]
    assert isinstance(job._args, persistent.list.PersistentList)


def test_a_view_is_not_stored_by_mistake(conn):
    import copy
    import pickle
    job = store(conn, Job(both, 1, 2))
    with pytest.raises(TypeError, match='store a copy'):
        pickle.dumps(job.args)
    with pytest.raises(TypeError, match='store a copy'):
        pickle.dumps(job.kwargs)
    conn.root()['oops'] = job.args
    with pytest.raises(TypeError, match='store a copy'):
        conn.transaction_manager.commit()
    conn.transaction_manager.abort()
    assert copy.deepcopy(job.args) == [1, 2]
    assert type(copy.copy(job.kwargs)) is dict


def test_an_assigned_persistent_mapping_is_kept(conn):
    job = store(conn, Job(both))
    mapping = persistent.mapping.PersistentMapping()
    job.kwargs = mapping
    mapping['x'] = 1
    assert job.kwargs is mapping
    job.kwargs = {}
    assert job._kwargs is None and job.kwargs == {}


def test_only_exact_scalar_types_are_inline():
    class Tagged(int):
        pass
    value = Tagged(3)
    value.payload = ['x'] * 1000
    assert isinstance(Job(both, value)._args, persistent.list.PersistentList)
    assert isinstance(Job(both, 3)._args, tuple)


def test_a_job_whose_module_is_gone_still_stores_and_comes_back(db):
    """Loaded where its callable's module is missing, a job keeps the
    callable's name: it can be changed and stored again, says what is
    missing when called, and runs where the module is back."""
    import sys
    import types

    from zc.asynchronous.interfaces import COMPLETED
    module = types.ModuleType('vanishing_jobstate')
    exec('def work(n):\n    return n * 2\n', module.__dict__)
    sys.modules['vanishing_jobstate'] = module
    tm1 = transaction.TransactionManager()
    conn1 = db.open(transaction_manager=tm1)
    conn1.root()['job'] = Job(module.work, 21)
    tm1.commit()
    del sys.modules['vanishing_jobstate']
    # (conn1 stays open, so that the next connections load afresh, as
    # another process would.)
    try:
        tm2 = transaction.TransactionManager()
        conn2 = db.open(transaction_manager=tm2)
        lost = conn2.root()['job']
        assert 'vanishing_jobstate.work' in repr(lost)
        lost.annotations['seen'] = True
        lost.args.append(0)          # writes the job record again
        tm2.commit()
        failure = lost()
        assert isinstance(failure.value, ImportError)
        assert 'vanishing_jobstate.work' in str(failure.value)
    finally:
        sys.modules['vanishing_jobstate'] = module
    try:
        tm3 = transaction.TransactionManager()
        conn3 = db.open(transaction_manager=tm3)
        back = conn3.root()['job']
        assert back.callable is module.work
        assert back.status == COMPLETED     # it failed, in the other life
        assert list(back.args) == [21, 0]
        conn3.close()
    finally:
        del sys.modules['vanishing_jobstate']
        conn1.close()
        conn2.close()


class LoudJob(Job):
    calls = []

    def __call__(self, *args, **kwargs):
        LoudJob.calls.append(args)
        return super().__call__(*args, **kwargs)


def test_a_callback_of_a_job_subclass_is_called_through_its_call(conn):
    LoudJob.calls = []
    job = store(conn, Job(positional, 42))
    job.addCallback(LoudJob(positional))
    conn.transaction_manager.commit()
    job()
    assert LoudJob.calls == [((42,),)]
