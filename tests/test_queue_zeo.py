"""The same races over ZEO, with two client processes.

A ZEO server runs in a subprocess on 127.0.0.1 and a free port, over a
FileStorage, and resolves conflicts there (so zc.queue, BTrees and
zope.minmax must be importable by the server, as the docs say).  Two
client processes put 250 jobs each at once; then two client processes,
each the agent of its own dispatcher, claim them all at once.  Every wait
is bounded; the server and the clients are stopped by pid at the end.
"""
import itertools
import json
import os
import select
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
import transaction

from zc.asynchronous import interfaces
from zc.asynchronous.agent import Agent
from zc.asynchronous.queue import Queue, Queues

ZEO = pytest.importorskip('ZEO')

UUID1 = uuid.UUID('d10f43dc-ffdf-11dc-abd4-0017f2c49bdd')
UUID2 = uuid.UUID('e10f43dc-ffdf-11dc-abd4-0017f2c49bdd')
TIMEOUT = 60
JOBS_PER_CLIENT = 250

SERVER = textwrap.dedent('''
    import sys
    import ZEO
    address, stop = ZEO.server(path=sys.argv[1], port=0)
    print('%s %d' % address, flush=True)
    sys.stdin.read()  # until the test closes our stdin
    stop()
''')

CLIENT = textwrap.dedent('''
    import json, operator, sys, time, uuid
    import transaction, ZEO, ZODB.POSException
    import zc.asynchronous.configure
    from zc.asynchronous.job import Job

    mode, host, port, arg = sys.argv[1:5]
    zc.asynchronous.configure.base()
    db = ZEO.DB((host, int(port)), wait_timeout=30)
    conn = db.open(transaction_manager=transaction.TransactionManager())
    tm = conn.transaction_manager
    conflicts = 0

    def retry(call):
        global conflicts
        for attempt in range(1000):
            try:
                res = call()
                tm.commit()
                return res
            except ZODB.POSException.ConflictError:
                tm.abort()
                conflicts += 1
        raise SystemExit('no commit after 1000 attempts')

    queue = conn.root()['zc.async']['']
    tm.abort()
    print('ready', flush=True)
    assert sys.stdin.readline().strip() == 'go'
    deadline = time.monotonic() + 50
    oids = []
    if mode == 'put':
        for i in range(int(arg)):
            job = retry(lambda: queue.put(Job(operator.add, port, i)))
            oids.append(job._p_oid.hex())
    else:
        uid = uuid.UUID(arg)
        retry(lambda: queue.dispatchers.ping(uid))
        agent = queue.dispatchers[uid]['main']
        while time.monotonic() < deadline:
            job = retry(agent.claimJob)
            if job is not None:
                oids.append(job._p_oid.hex())
                continue
            tm.begin()
            if not len(queue):
                break
    print(json.dumps({'oids': oids, 'conflicts': conflicts}), flush=True)
    conn.close()
    db.close()
''')


def read_line(process, timeout):
    """A line of ``process``'s stdout, waiting at most ``timeout`` s."""
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    if not ready:
        raise AssertionError('no output from pid %d in %ss'
                             % (process.pid, timeout))
    line = process.stdout.readline()
    if not line:
        raise AssertionError('pid %d exited: %s' % (
            process.pid, process.stderr.read() if process.stderr else ''))
    return line.strip()


def stop(process, timeout=10):
    if process.stdin and not process.stdin.closed:
        process.stdin.close()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, 9)
        process.wait(timeout)


@pytest.fixture
def zeo_address(tmp_path):
    server = subprocess.Popen(
        [sys.executable, '-c', SERVER, str(tmp_path / 'Data.fs')],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        cwd=tmp_path)
    try:
        host, port = read_line(server, TIMEOUT).split()
        yield host, int(port)
    finally:
        stop(server)
    assert server.returncode == 0


@pytest.fixture
def client_script(tmp_path):
    path = tmp_path / 'client.py'
    path.write_text(CLIENT)
    return str(path)


def run_clients(script, address, mode, args, tmp_path):
    """Start one client per arg, release them together, return results."""
    host, port = address
    clients = []
    try:
        for n, arg in enumerate(args):
            env = dict(os.environ)
            env['ZC_ASYNC_UUID'] = str(tmp_path / ('uuid-%s-%d.txt'
                                                   % (mode, n)))
            clients.append(subprocess.Popen(
                [sys.executable, script, mode, host, str(port), str(arg)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path))
        for client in clients:
            assert read_line(client, TIMEOUT) == 'ready'
        for client in clients:  # go, all at once
            client.stdin.write('go\n')
            client.stdin.flush()
        results = [json.loads(read_line(client, TIMEOUT))
                   for client in clients]
        for client in clients:
            client.stdin.close()
            assert client.wait(TIMEOUT) == 0, client.stderr.read()
        return results
    finally:
        for client in clients:
            if client.poll() is None:
                os.kill(client.pid, 9)
                client.wait(10)
            for stream in (client.stdout, client.stderr):
                stream.close()


def test_two_processes_put_then_claim(zeo_address, client_script, tmp_path):
    db = ZEO.DB(zeo_address, wait_timeout=30)
    try:
        conn = db.open(transaction_manager=transaction.TransactionManager())
        root = conn.root()
        root[interfaces.KEY] = Queues()
        root[interfaces.KEY][''] = queue = Queue()
        for uid in (UUID1, UUID2):
            da = queue.dispatchers.register(uid)
            da['main'] = Agent(size=100000)
            da.activate()
        conn.transaction_manager.commit()

        start = time.monotonic()
        puts = run_clients(client_script, zeo_address, 'put',
                           [JOBS_PER_CLIENT, JOBS_PER_CLIENT], tmp_path)
        put_time = time.monotonic() - start
        put_oids = puts[0]['oids'] + puts[1]['oids']
        assert len(put_oids) == len(set(put_oids)) == 2 * JOBS_PER_CLIENT

        conn.transaction_manager.begin()
        assert len(queue) == 2 * JOBS_PER_CLIENT
        assert sorted(j._p_oid.hex() for j in queue) == sorted(put_oids)
        # every job names the process that put it
        origins = [j.assignerUUID for j in queue]
        assert len(set(origins)) == 2 and None not in origins
        # the two processes really overlapped: their jobs interleave, and
        # none was lost in the merges the server made
        switches = sum(1 for a, b in itertools.pairwise(origins) if a != b)
        assert switches >= 2

        start = time.monotonic()
        claims = run_clients(client_script, zeo_address, 'claim',
                             [UUID1, UUID2], tmp_path)
        claim_time = time.monotonic() - start
        one, two = (set(c['oids']) for c in claims)
        assert len(one) == len(claims[0]['oids'])
        assert len(two) == len(claims[1]['oids'])
        assert not one & two, 'a job was claimed by both processes'
        assert one | two == set(put_oids), 'a job was never claimed'

        conn.transaction_manager.begin()
        assert len(queue) == 0
        for uid, mine in ((UUID1, claims[0]), (UUID2, claims[1])):
            agent = queue.dispatchers[uid]['main']
            assert [j._p_oid.hex() for j in agent] == mine['oids']
            assert all(j.status == interfaces.ASSIGNED for j in agent)
        print('ZEO: puts %.2fs (%d conflicts), claims %.2fs (%d+%d, '
              '%d conflicts)' % (
                  put_time, puts[0]['conflicts'] + puts[1]['conflicts'],
                  claim_time, len(one), len(two),
                  claims[0]['conflicts'] + claims[1]['conflicts']))
        conn.close()
    finally:
        db.close()
