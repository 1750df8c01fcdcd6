"""A failed job, written to a FileStorage, read back by another process.

The stored Failure must come back, in a fresh interpreter that never saw
the original exception or its frames, as a ``zc.twist.Failure`` whose
printed traceback is the same text.  The callables come from the standard
library, so the second process needs nothing from the tests.
"""
import json
import subprocess
import sys
import textwrap

import transaction

from zc.asynchronous.interfaces import COMPLETED
from zc.asynchronous.job import Job

READER = textwrap.dedent('''
    import json, sys
    import ZODB, ZODB.FileStorage
    path, names = sys.argv[1], sys.argv[2:]
    db = ZODB.DB(ZODB.FileStorage.FileStorage(path, read_only=True))
    conn = db.open()
    out = {}
    for name in names:
        job = conn.root()[name]
        res = job.result
        out[name] = {
            'class': '%s.%s' % (type(res).__module__, type(res).__qualname__),
            'repr': repr(res),
            'traceback': res.getTraceback(),
            'tb': repr(res.tb),
            'frames': len(res.frames),
            'status': job.status,
            'value': repr(res.value),
            'checks': res.check(json.JSONDecodeError) is not None,
        }
    conn.close()
    db.close()
    # Nothing but the report on stdout.
    sys.stdout.write(json.dumps(out))
''')


def read_in_another_process(path, *names):
    proc = subprocess.run(
        [sys.executable, '-c', READER, path] + list(names),
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_failure_reloads_in_another_process(filedb):
    conn = filedb.open(transaction_manager=transaction.TransactionManager())
    root = conn.root()
    raised = root['raised'] = Job(json.loads, '{not json')
    failed = root['failed'] = Job(json.loads, '[]')
    conn.transaction_manager.commit()
    raised()
    failed.fail(RuntimeError('stopped by hand'))
    assert raised.status == failed.status == COMPLETED
    expected = {
        name: (job.result.getTraceback(), repr(job.result.value),
               len(job.result.frames))
        for name, job in (('raised', raised), ('failed', failed))}
    assert 'json/decoder.py' in expected['raised'][0].replace('\\', '/')
    assert expected['raised'][2] > 2
    assert expected['failed'][2] == 0
    conn.close()
    filedb.close()

    report = read_in_another_process(filedb.path, 'raised', 'failed')
    for name, (traceback_text, value_repr, frames) in expected.items():
        seen = report[name]
        assert seen['class'] == 'zc.twist.Failure'
        assert seen['status'] == COMPLETED
        assert seen['tb'] == 'None'
        assert seen['traceback'] == traceback_text
        assert seen['value'] == value_repr
        assert seen['frames'] == frames
    assert seen['repr'] == '<zc.twist.Failure builtins.RuntimeError>'
    assert report['raised']['repr'] == (
        '<zc.twist.Failure json.decoder.JSONDecodeError>')
    assert report['raised']['checks'] is True
    assert report['failed']['checks'] is False
    assert 'RuntimeError: stopped by hand' in report['failed']['traceback']
