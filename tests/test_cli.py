"""The ``zc-async`` command line, driven as a subprocess.

Each command runs as ``python -m zc.asynchronous`` in the test's folder,
with its instance UUID file there too.  Bad input must end with one line
on stderr, exit status 2 and the database as it was.
"""
import contextlib
import datetime
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest
import ZODB
import ZODB.FileStorage
import ZODB.utils

from zc.asynchronous import interfaces

EXAMPLES = 'zc.asynchronous.examples'
TIMEOUT = 60


def environment(folder):
    env = dict(os.environ, ZC_ASYNC_UUID=str(folder / 'uuid.txt'))
    env.pop('ZC_ASYNC_DB', None)
    return env


def zc_async(folder, *args, command=None, **environ):
    """Run the command line in ``folder``; return the CompletedProcess."""
    command = command or [sys.executable, '-m', 'zc.asynchronous']
    return subprocess.run(
        command + list(args), cwd=folder,
        env=dict(environment(folder), **environ), capture_output=True,
        text=True, timeout=TIMEOUT)


def ok(folder, *args):
    """Run a command that must succeed; return its stdout."""
    res = zc_async(folder, *args)
    assert res.returncode == 0, res.stderr
    assert 'Traceback' not in res.stderr
    return res.stdout


def read_json(folder, *args):
    return json.loads(ok(folder, *args, '--json'))


def put(folder, *args):
    """Put a job; return its oid."""
    return int(ok(folder, 'put', *args))


@contextlib.contextmanager
def read_db(path):
    """The FileStorage at ``path``, opened read-only (so it takes no lock)."""
    db = ZODB.DB(ZODB.FileStorage.FileStorage(str(path), read_only=True))
    conn = db.open()
    try:
        yield conn
    finally:
        conn.close()
        db.close()


def wait_until(condition, seconds=20, message='condition never met'):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.1)


def job_states(path, oids):
    with read_db(path) as conn:
        return [conn.get(ZODB.utils.p64(oid)).status for oid in oids]


@contextlib.contextmanager
def running(folder, *args):
    """A ``zc-async run`` subprocess, killed at the end if still alive."""
    log = open(folder / 'run.log', 'w+')
    process = subprocess.Popen(
        [sys.executable, '-m', 'zc.asynchronous', 'run', *args], cwd=folder,
        env=environment(folder), stdout=log, stderr=subprocess.STDOUT,
        text=True)
    process.log = log
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        log.close()


def stop(process):
    """SIGTERM ``process``; return its exit status and its log."""
    process.send_signal(signal.SIGTERM)
    status = process.wait(15)
    process.log.seek(0)
    return status, process.log.read()


@pytest.fixture(scope='module')
def template(tmp_path_factory):
    """A database with the default queue and one pending job."""
    folder = tmp_path_factory.mktemp('template')
    put(folder, EXAMPLES + '.add', '1', '2')
    return folder / 'var' / 'Data.fs'


@pytest.fixture
def database(tmp_path, template):
    """A copy of the template database in the test's folder."""
    path = tmp_path / 'var' / 'Data.fs'
    path.parent.mkdir()
    shutil.copy(template, path)
    return path


# -- the basics --------------------------------------------------------------

def test_help_lists_every_command(tmp_path):
    out = ok(tmp_path, '--help')
    for command in ('run', 'put', 'status', 'jobs', 'job', 'demo'):
        assert '\n    %s ' % command in out


def test_a_command_is_required(tmp_path):
    res = zc_async(tmp_path)
    assert res.returncode == 2
    assert res.stderr.count('\n') == 1
    assert 'required: COMMAND' in res.stderr


# -- demo --------------------------------------------------------------------

def test_demo_runs_the_example_jobs_and_keeps_them(tmp_path):
    started = time.monotonic()
    res = zc_async(tmp_path, 'demo')
    assert res.returncode == 0, res.stderr
    assert time.monotonic() - started < 15
    assert '8/8 jobs done' in res.stderr
    assert 'Traceback' not in res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split() == ['OID', 'JOB', 'STATE', 'STARTED', 'TOOK',
                                'RESULT']
    rows = {line.split('  ')[1].strip(): line for line in lines[1:9]}
    assert rows['add(2, 3), callback doubles'].endswith('5 -> 10')
    assert rows['slow_square(4)'].endswith(' 16')
    failed = rows['fail(), callback handles it']
    assert ' failed ' in failed
    assert failed.endswith("ValueError: on purpose -> 'handled ValueError'")
    assert rows['count_words_later(): a job'].endswith(' 9')
    scheduled = rows['seconds_since(put), 1s later']
    assert float(scheduled.split()[-1]) >= 1.0
    assert lines[9].startswith('8 jobs in ')
    assert lines[9].endswith(': 7 succeeded, 1 failed.')
    assert (tmp_path / 'var' / 'Data.fs').exists()

    # The jobs stay in the database: the 8 and the job one of them put.
    jobs = read_json(tmp_path, 'jobs')
    assert sorted(job['state'] for job in jobs) == ['completed'] * 8 + [
        'failed']
    (failure,) = read_json(tmp_path, 'jobs', '--failed')
    assert failure['call'] == EXAMPLES + ".fail('on purpose')"
    assert failure['error'] == 'ValueError: on purpose'
    status = read_json(tmp_path, 'status')
    (queue,) = status['queues']
    assert queue['jobs'] == dict(pending=0, assigned=0, active=0,
                                 completed=8, failed=1)
    (dispatcher,) = queue['dispatchers']
    assert dispatcher['state'] == 'stopped'


def test_demo_runs_again_on_a_used_database(tmp_path):
    ok(tmp_path, 'demo')
    out = ok(tmp_path, 'demo')
    assert ': 7 succeeded, 1 failed.' in out
    assert len(read_json(tmp_path, 'jobs', '--completed')) == 16


def test_demo_in_memory_writes_no_database(tmp_path):
    out = ok(tmp_path, 'demo', '--db', 'memory://')
    assert ': 7 succeeded, 1 failed.' in out
    assert not (tmp_path / 'var').exists()


# -- put ---------------------------------------------------------------------

def test_put_stores_a_pending_job_with_json_arguments(tmp_path):
    oid = put(tmp_path, EXAMPLES + '.add', '[1, 2]', '{"a": 1}', 'hello',
              '3.5', 'null', 'true', '-1', '"7"')
    with read_db(tmp_path / 'var' / 'Data.fs') as conn:
        job = conn.get(ZODB.utils.p64(oid))
        assert job.status == interfaces.PENDING
        assert job.queue.name == ''
        assert job.callable.__module__ == EXAMPLES
        assert job.callable.__name__ == 'add'
        assert list(job.args) == [[1, 2], {'a': 1}, 'hello', 3.5, None,
                                  True, -1, '7']
    (listed,) = read_json(tmp_path, 'jobs', '--pending')
    assert listed['oid'] == oid
    assert read_json(tmp_path, 'jobs', '--completed') == []
    details = read_json(tmp_path, 'job', str(oid))
    assert details['state'] == 'pending'
    assert details['assigner'] == (tmp_path / 'uuid.txt').read_text(
    ).split()[0]


def test_put_begin_after_a_delay_or_a_date(tmp_path):
    before = datetime.datetime.now(datetime.timezone.utc)
    later = put(tmp_path, EXAMPLES + '.add', '1', '2', '--begin-after', '2h')
    dated = put(tmp_path, EXAMPLES + '.add', '1', '2',
                '--begin-after', '2030-01-02T03:04:05+01:00')
    with read_db(tmp_path / 'var' / 'Data.fs') as conn:
        begin = conn.get(ZODB.utils.p64(later)).begin_after
        delay = begin - before
        assert datetime.timedelta(hours=2) <= delay < datetime.timedelta(
            hours=2, minutes=1)
        assert conn.get(ZODB.utils.p64(dated)).begin_after == (
            datetime.datetime(2030, 1, 2, 2, 4, 5,
                              tzinfo=datetime.timezone.utc))
    table = ok(tmp_path, 'jobs', '--pending')
    assert 'begins in 1h' in table
    assert 'begins in ' in table.splitlines()[2]


def test_the_database_can_be_named_in_the_environment(tmp_path):
    res = zc_async(tmp_path, 'put', EXAMPLES + '.add', '1', '2',
                   ZC_ASYNC_DB='jobs.fs')
    assert res.returncode == 0, res.stderr
    oid = int(res.stdout)
    assert (tmp_path / 'jobs.fs').exists()
    assert not (tmp_path / 'var').exists()
    res = zc_async(tmp_path, 'jobs', '--json', ZC_ASYNC_DB='jobs.fs')
    assert [job['oid'] for job in json.loads(res.stdout)] == [oid]
    # --db wins over the environment.
    res = zc_async(tmp_path, 'jobs', '--db', 'var/Data.fs',
                   ZC_ASYNC_DB='jobs.fs')
    assert 'no database at var/Data.fs' in res.stderr


def test_the_console_script_imports_callables_from_the_folder(tmp_path):
    script = pathlib.Path(sys.executable).parent / 'zc-async'
    if not script.exists():
        pytest.skip('no zc-async console script beside %s' % sys.executable)
    (tmp_path / 'tasks.py').write_text('def add(a, b):\n    return a + b\n')
    res = zc_async(tmp_path, 'put', 'tasks.add', '1', '2',
                   command=[str(script)])
    assert res.returncode == 0, res.stderr
    assert int(res.stdout) > 0


# -- run ---------------------------------------------------------------------

def test_run_does_the_jobs_until_sigterm(database):
    folder = database.parent.parent
    (first,) = read_json(folder, 'jobs', '--pending')
    failing = put(folder, EXAMPLES + '.fail', 'boom')
    oids = [first['oid'], failing]
    with running(folder, '--poll', '0.2', '--threads', '2',
                 '--prefetch', '1') as process:
        wait_until(lambda: job_states(database, oids) == [
            interfaces.COMPLETED] * 2, message='the jobs never completed')
        # A running dispatcher holds the FileStorage: reading works, writing
        # is refused.
        (queue,) = read_json(folder, 'status')['queues']
        (dispatcher,) = queue['dispatchers']
        assert dispatcher['state'] == 'alive'
        assert dispatcher['agents'][0]['size'] == 2
        res = zc_async(folder, 'put', EXAMPLES + '.add', '1', '2')
        assert res.returncode == 2
        assert 'locked by another process' in res.stderr
        status, log = stop(process)
    assert status == 0, log
    assert 'SIGTERM received: stopping dispatcher' in log
    assert log.rstrip().endswith('stopped')

    done = read_json(folder, 'job', str(first['oid']))
    assert (done['state'], done['result'], done['error']) == (
        'completed', 3, None)
    assert done['started'] <= done['ended'] <= done['completed']
    failed = read_json(folder, 'job', str(failing))
    assert failed['state'] == 'failed'
    assert failed['error'] == 'ValueError: boom'
    assert failed['traceback'].rstrip().endswith('ValueError: boom')
    text = ok(folder, 'job', str(failing))
    assert text.startswith('job %d: failed\n' % failing)
    assert 'Traceback (most recent call last):' in text
    (queue,) = read_json(folder, 'status')['queues']
    assert queue['dispatchers'][0]['state'] == 'stopped'
    assert queue['jobs']['completed'] == 1
    assert queue['jobs']['failed'] == 1


def test_a_killed_dispatcher_shows_as_dead(database):
    folder = database.parent.parent
    with running(folder, '--poll', '0.2') as process:
        wait_until(lambda: read_json(folder, 'jobs', '--completed'),
                   message='the job never completed')
        process.kill()
        process.wait(10)
    (queue,) = read_json(folder, 'status')['queues']
    assert queue['dispatchers'][0]['state'] == 'alive'  # for a minute
    # Make it look a minute older: its pings are overdue at once.
    db = ZODB.DB(ZODB.FileStorage.FileStorage(str(database)))
    try:
        with db.transaction() as conn:
            for da in conn.root()[interfaces.KEY][''].dispatchers.values():
                da.ping_death_interval = datetime.timedelta(0)
    finally:
        db.close()
    (queue,) = read_json(folder, 'status')['queues']
    assert queue['dispatchers'][0]['state'] == 'dead'
    assert ': dead, activated ' in ok(folder, 'status')


def test_run_and_put_on_zeo_share_the_database(tmp_path):
    ZEO = pytest.importorskip('ZEO')
    address, stop_server = ZEO.server(path=str(tmp_path / 'zeo.fs'))
    try:
        uri = 'zeo://%s:%s' % address
        with running(tmp_path, '--db', uri, '--poll', '0.2') as process:
            oid = put(tmp_path, EXAMPLES + '.add', '40', '2', '--db', uri)
            wait_until(lambda: read_json(
                tmp_path, 'job', str(oid), '--db', uri)['state']
                == 'completed', message='the job never completed')
            status, log = stop(process)
        assert status == 0, log
        assert read_json(tmp_path, 'job', str(oid), '--db', uri)[
            'result'] == 42
    finally:
        stop_server()


# -- bad input ---------------------------------------------------------------

BAD_INPUT = [
    (['put', 'no_such_module.f'], "no module named 'no_such_module'"),
    (['put', EXAMPLES + '.nope'], "has no attribute 'nope'"),
    (['put', EXAMPLES + '.SLOW_SECONDS'], 'is not callable'),
    (['put', 'add'], 'names no module'),
    (['put', EXAMPLES + '.add', '--queue', 'other'], "no queue named 'other'"),
    (['put', EXAMPLES + '.add', '--begin-after', 'soon'],
     "--begin-after 'soon' is neither"),
    (['put', EXAMPLES + '.add', '--db', 'nosuch://x'],
     "unknown database URI scheme 'nosuch'"),
    (['put', EXAMPLES + '.add', '--db', 'zeo://localhost:notaport'],
     'malformed database URI'),
    (['status', '--db', 'file://var/Data.fs?bogus=1'],
     'malformed database URI'),
    (['jobs', '--db', 'var'], 'cannot open the database var'),
    (['job', '999999'], 'no object with oid 999999'),
    (['job', 'abc'], "'abc' is not an oid"),
    (['job', '0'], 'object 0 is not a job'),
    (['run', '--threads', '0'], "'0' is not a positive number"),
    (['run', '--prefetch', '-1'], "'-1' is not a whole number >= 0"),
    (['jobs', '--failed', '--pending'], 'not allowed with'),
]


@pytest.mark.parametrize('args, message', BAD_INPUT,
                         ids=[' '.join(args) for args, m in BAD_INPUT])
def test_bad_input_is_one_line_and_changes_nothing(database, args, message):
    before = database.read_bytes()
    res = zc_async(database.parent.parent, *args)
    assert res.returncode == 2
    assert res.stderr.count('\n') == 1, res.stderr
    assert message in res.stderr
    assert 'Traceback' not in res.stderr
    assert res.stdout == ''
    assert database.read_bytes() == before


def test_a_locked_database_is_refused_for_writing_only(database):
    folder = database.parent.parent
    before = database.read_bytes()
    storage = ZODB.FileStorage.FileStorage(str(database))  # takes the lock
    try:
        for args in (['put', EXAMPLES + '.add', '1', '2'], ['run'], ['demo']):
            res = zc_async(folder, *args)
            assert res.returncode == 2, args
            assert res.stderr.count('\n') == 1
            assert ('the database var/Data.fs is locked by another process'
                    in res.stderr)
        assert read_json(folder, 'status')['queues'][0]['jobs'][
            'pending'] == 1
    finally:
        storage.close()
    assert database.read_bytes() == before


def test_no_database_is_made_by_reading_or_by_bad_input(tmp_path):
    for args in (['status'], ['jobs'], ['job', '1']):
        res = zc_async(tmp_path, *args)
        assert res.returncode == 2
        assert res.stderr.startswith('zc-async: error: no database at ')
    res = zc_async(tmp_path, 'put', EXAMPLES + '.nope')
    assert res.returncode == 2
    assert not (tmp_path / 'var').exists()
