"""zc.twist.Failure and sanitize: no live frames, readable, picklable."""
import copy
import inspect
import pickle
import subprocess
import sys
import textwrap
import types
import warnings

import pytest
import transaction
import twisted.python.failure
import ZODB
import ZODB.FileStorage

import zc.twist
from zc.twist.interfaces import IFailure

LIVE_TYPES = (types.FrameType, types.TracebackType)


def find_live(obj, path='failure', seen=None):
    """Paths, under ``obj``, to frames or tracebacks.

    Follows containers, instance dicts, and the exception chain
    (``__traceback__``, ``__cause__``, ``__context__``, ``args``).
    """
    if seen is None:
        seen = set()
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, LIVE_TYPES):
        return [path]
    found = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            found += find_live(k, '%s key %r' % (path, k), seen)
            found += find_live(v, '%s[%r]' % (path, k), seen)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for i, v in enumerate(obj):
            found += find_live(v, '%s[%d]' % (path, i), seen)
    if isinstance(obj, BaseException):
        for name in ('__traceback__', '__cause__', '__context__'):
            found += find_live(getattr(obj, name), path + '.' + name, seen)
        found += find_live(obj.args, path + '.args', seen)
    if not isinstance(obj, type) and hasattr(obj, '__dict__'):
        try:
            d = vars(obj)
        except TypeError:
            d = {}
        if isinstance(d, dict):
            found += find_live(d, path + '.__dict__', seen)
    return found


def inner():
    raise RuntimeError('Bad Things Happened Here')


INNER_RAISE_LINE = inspect.getsourcelines(inner)[1] + 1


def outer():
    try:
        inner()
    except RuntimeError as exc:
        raise ValueError('while handling') from exc


def chained_context():
    try:
        inner()
    except RuntimeError:
        raise KeyError('implicitly chained')


def make(func, factory=zc.twist.Failure, **kwargs):
    try:
        func()
    except BaseException:
        return factory(**kwargs)
    raise AssertionError('did not raise')


def test_finder_sees_live_frames_of_a_plain_twisted_failure():
    # The checker itself must be able to fail.
    plain = make(outer, twisted.python.failure.Failure)
    assert find_live(plain)


@pytest.mark.parametrize('func', [inner, outer, chained_context])
def test_no_live_frames_anywhere(func):
    failure = make(func)
    assert failure.tb is None
    assert failure.value.__traceback__ is None
    assert find_live(failure) == []


def test_cause_and_context_chains_are_cleared():
    failure = make(outer)
    cause = failure.value.__cause__
    assert isinstance(cause, RuntimeError)
    assert cause.__traceback__ is None
    failure = make(chained_context)
    context = failure.value.__context__
    assert isinstance(context, RuntimeError)
    assert context.__traceback__ is None


def test_frames_are_plain_data():
    failure = make(outer)
    assert failure.frames, 'frames were lost'
    for frame in failure.frames:
        name, filename, lineno, local_items, global_items = frame
        assert type(name) is str
        assert type(filename) is str
        assert type(lineno) is int
        assert global_items == []
        for key, value in local_items:
            assert type(key) is str and type(value) is str


def test_captured_locals_are_short_reprs():
    def with_locals():
        text = 'y' * 200
        number = 12345  # noqa: F841
        obj = object()  # noqa: F841
        raise KeyError(text)

    failure = make(with_locals, captureVars=True)
    local_items = dict(failure.frames[-1][3])
    assert local_items['number'] == '12345'
    assert local_items['text'] == "'" + 'y' * 20 + '[...]'
    assert local_items['obj'].startswith('<object object at')
    assert len(local_items['obj']) <= 21 + len('[...]')
    assert all(frame[4] == [] for frame in failure.frames)  # no globals
    assert find_live(failure) == []


def test_traceback_shows_file_line_and_function():
    text = make(inner).getTraceback()
    assert text.startswith('Traceback (most recent call last):\n')
    assert 'File "%s", line %d, in inner' % (__file__, INNER_RAISE_LINE) in text
    assert "raise RuntimeError('Bad Things Happened Here')" in text
    assert ', in make\n' in text
    assert text.rstrip().endswith(
        'builtins.RuntimeError: Bad Things Happened Here')
    text = make(outer).getTraceback()
    assert ', in outer\n' in text
    assert text.rstrip().endswith('builtins.ValueError: while handling')


def test_failure_of_an_exception_never_raised_has_no_frames():
    failure = zc.twist.Failure(RuntimeError('failed'))
    assert failure.frames == []
    assert 'Failure: builtins.RuntimeError: failed' in failure.getTraceback()


def test_repr():
    assert repr(make(inner)) == '<zc.twist.Failure builtins.RuntimeError>'
    assert repr(make(outer)) == '<zc.twist.Failure builtins.ValueError>'


def test_str_mentions_type_and_frames():
    text = str(make(inner))
    assert text.startswith('[Failure instance: Traceback: ')
    assert "<class 'RuntimeError'>: Bad Things Happened Here" in text
    assert ':inner' in text


def test_check_trap_and_interface():
    failure = make(inner)
    assert failure.check(KeyError, RuntimeError) is RuntimeError
    assert failure.check(KeyError) is None
    assert failure.trap(RuntimeError) is RuntimeError
    with pytest.raises(RuntimeError):
        failure.trap(KeyError)
    assert IFailure.providedBy(failure)
    assert IFailure.providedBy(make(inner, twisted.python.failure.Failure))


def test_stack_gives_no_deprecation_warning():
    failure = make(inner)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert failure.stack == []
        failure.stack = ['ignored']
        assert failure.stack == []
        failure.getTraceback()
        pickle.loads(pickle.dumps(failure)).stack


def test_twisted_stack_does_warn():
    # The control: without the override, reading stack warns.
    plain = make(inner, twisted.python.failure.Failure)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        with pytest.raises(DeprecationWarning):
            plain.stack


def test_cleanFailure_keeps_frames():
    failure = make(outer)
    before = failure.getTraceback()
    failure.cleanFailure()
    assert failure.getTraceback() == before


@pytest.mark.parametrize('protocol', range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_stdlib_pickle_round_trip(protocol):
    failure = make(outer)
    copy_ = pickle.loads(pickle.dumps(failure, protocol))
    assert type(copy_) is zc.twist.Failure
    assert repr(copy_) == '<zc.twist.Failure builtins.ValueError>'
    assert copy_.getTraceback() == failure.getTraceback()
    assert copy_.tb is None
    assert copy_.check(ValueError) is ValueError
    assert find_live(copy_) == []
    assert pickle.loads(pickle.dumps(copy_)).getTraceback() == \
        failure.getTraceback()


def test_deepcopy():
    failure = make(outer)
    duplicate = copy.deepcopy(failure)
    assert type(duplicate) is zc.twist.Failure
    assert duplicate.getTraceback() == failure.getTraceback()


def test_zodb_round_trip_in_process():
    failure = make(outer)
    db = ZODB.DB(None)
    try:
        tm1 = transaction.TransactionManager()
        conn1 = db.open(transaction_manager=tm1)
        conn1.root()['failure'] = failure
        tm1.commit()
        conn2 = db.open(transaction_manager=transaction.TransactionManager())
        loaded = conn2.root()['failure']
        assert loaded is not failure
        assert type(loaded) is zc.twist.Failure
        assert loaded.getTraceback() == failure.getTraceback()
        assert loaded.tb is None
        conn1.close()
        conn2.close()
    finally:
        db.close()


RELOAD_SCRIPT = textwrap.dedent('''
    import sys
    import ZODB, ZODB.FileStorage
    db = ZODB.DB(ZODB.FileStorage.FileStorage(sys.argv[1], read_only=True))
    conn = db.open()
    failure = conn.root()['failure']
    sys.stdout.write(repr(failure) + '\\n')
    sys.stdout.write('%s.%s\\n' % (type(failure).__module__,
                                   type(failure).__qualname__))
    sys.stdout.write('tb=%r\\n' % (failure.tb,))
    sys.stdout.write(failure.getTraceback())
    conn.close()
    db.close()
''')


def test_zodb_round_trip_in_another_process(tmp_path):
    failure = make(outer)
    path = str(tmp_path / 'Data.fs')
    db = ZODB.DB(ZODB.FileStorage.FileStorage(path))
    try:
        tm = transaction.TransactionManager()
        conn = db.open(transaction_manager=tm)
        conn.root()['failure'] = failure
        tm.commit()
        conn.close()
    finally:
        db.close()
    script = tmp_path / 'reload.py'
    script.write_text(RELOAD_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), path], capture_output=True,
        text=True, timeout=120, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    expected = ('<zc.twist.Failure builtins.ValueError>\n'
                'zc.twist.Failure\n'
                'tb=None\n' + failure.getTraceback())
    assert proc.stdout == expected


def test_sanitize_plain_twisted_failure():
    plain = make(outer, twisted.python.failure.Failure)
    assert plain.tb is not None
    expected_text = plain.getTraceback()
    expected_names = [f[0] for f in plain.frames]
    clean = zc.twist.sanitize(plain)
    assert type(clean) is zc.twist.Failure
    assert clean is not plain
    assert clean.tb is None
    assert [f[0] for f in clean.frames] == expected_names
    assert clean.getTraceback() == expected_text
    assert clean.value.__traceback__ is None
    assert clean.value.__cause__.__traceback__ is None
    assert find_live(clean) == []
    assert repr(clean) == '<zc.twist.Failure builtins.ValueError>'
    assert type(pickle.loads(pickle.dumps(clean))) is zc.twist.Failure


def test_sanitize_keeps_zc_twist_failures():
    failure = make(inner)
    assert zc.twist.sanitize(failure) is failure


def test_sanitize_with_captured_vars():
    def with_locals():
        secret = 'z' * 50  # noqa: F841
        raise KeyError('k')
    plain = make(with_locals, twisted.python.failure.Failure,
                 captureVars=True)
    clean = zc.twist.sanitize(plain)
    assert dict(clean.frames[-1][3])['secret'] == "'" + 'z' * 20 + '[...]'
    assert find_live(clean) == []


def test_sanitize_unpickled_twisted_failure_keeps_its_reprs():
    # An unpickled Twisted failure holds reprs already: not repr'd again.
    def with_locals():
        word = 'abc'  # noqa: F841
        raise KeyError('k')
    plain = make(with_locals, twisted.python.failure.Failure,
                 captureVars=True)
    state = plain.__getstate__()
    revived = twisted.python.failure.Failure.__new__(
        twisted.python.failure.Failure)
    revived.__setstate__(state)
    assert revived.pickled
    clean = zc.twist.sanitize(revived)
    assert dict(clean.frames[-1][3])['word'] == "'abc'"
