"""A smoke test of the benchmarks: ``bench/run.py`` with a tiny N.

It checks that one run prints one table whose zc.asynchronous rows all
have numbers (timing is not checked: figures come from the bench itself,
never from a timed test).  Peers that are not installed are skipped by the
bench, with a note, and are not required here.
"""
import json
import math
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
BENCH = ROOT / 'bench'

#: (section prefix, case, metric) of the rows that must carry a number.
REQUIRED = [
    ('1', 'MappingStorage', 'job (1 callback)'),
    ('1', 'MappingStorage', 'floor: same commits+writes'),
    ('1', 'FileStorage', 'job (1 callback)'),
    ('1', 'FileStorage', 'floor: same commits+writes'),
] + [
    ('2', case, metric)
    for case in ('zc FileStorage embedded', 'zc ZEO 2 processes')
    for metric in ('enqueue/s', 'drain/s', 'e2e jobs/s', 'put->start p50',
                   'put->start p99', 'put->done p50', 'put->done p99')
] + [
    ('2', 'floor FileStorage', 'e2e jobs/s'),
    ('2', 'floor ZEO', 'paced put->start p50'),
] + [
    ('3', '100 pending', 'put + commit'),
    ('3', '100 pending', 'claim + commit'),
    ('3', '1,000 pending', 'put + commit'),
    ('3', '1,000 pending', 'claim + commit'),
    ('3', 'FileStorage', 'bytes per completed job'),
]


def table_value(table, section, case, metric):
    """The value cell of the row (section, case, metric) of a printed table.

    Raises AssertionError when the row is missing; returns the cell text.
    """
    for line in table.splitlines():
        cells = [c for c in line.split('  ') if c.strip()]
        cells = [c.strip() for c in cells]
        if (len(cells) >= 4 and cells[0].startswith(section)
                and cells[1] == case and cells[2] == metric):
            return cells[3]
    raise AssertionError('no row %r / %r / %r in the table'
                         % (section, case, metric))


def as_number(cell):
    """The number a value cell shows (``1,234``, ``0.5``), or ValueError."""
    return float(cell.replace(',', ''))


def check(table, rows, required=REQUIRED):
    """Every required row is in the table and in the JSON, with a number."""
    by_key = {(r['section'].split()[0], r['case'], r['metric']): r
              for r in rows}
    for section, case, metric in required:
        cell = table_value(table, section, case, metric)
        shown = as_number(cell)   # '-' (no figure) fails here
        value = by_key[(section, case, metric)]['value']
        assert isinstance(value, (int, float)) and math.isfinite(value), (
            section, case, metric, value)
        assert value > 0, (section, case, metric, value)
        assert shown == pytest.approx(value, rel=0.01, abs=0.001), (
            'the table shows %s for %s / %s, the JSON %r'
            % (cell, case, metric, value))


def test_check_fails_on_a_table_without_numbers():
    """The check itself can fail: a row without a figure shows '-'."""
    sys.path.insert(0, str(BENCH))
    try:
        from zcbench.common import Row, render_table
    finally:
        sys.path.remove(str(BENCH))
    rows = [Row('1 overhead', 'MappingStorage', 'job (1 callback)', None,
                'us/job')]
    table = render_table(rows)
    with pytest.raises(ValueError):
        check(table, [vars(r) for r in rows], REQUIRED[:1])
    with pytest.raises(AssertionError):
        check(table, [vars(r) for r in rows], REQUIRED[1:2])
    rows[0].value = 12.5
    check(render_table(rows), [vars(r) for r in rows], REQUIRED[:1])


def test_bench_quick_run(tmp_path):
    out = tmp_path / 'bench.json'
    proc = subprocess.run(
        [sys.executable, str(BENCH / 'run.py'), '--quick', '--n', '20',
         '--levels', '100,1000', '--rounds', '1', '--json', str(out)],
        capture_output=True, text=True, timeout=240, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = proc.stdout
    assert 'zc.asynchronous benchmarks: N = 20' in table
    data = json.loads(out.read_text())
    assert data['n'] == 20
    check(table, data['rows'])
    # The ratio of a job to its floor is printed next to it.
    job = [r for r in data['rows'] if r['metric'] == 'job (1 callback)']
    assert len(job) == 2 and all(r['ratio'] > 0 for r in job)
    # Peers either ran or say why not; nothing is left half done.
    for row in data['rows']:
        if row['section'].startswith('2') and row['metric'] == 'skipped':
            assert row['note'], row
            assert not row['case'].startswith('zc'), row
    # No file is left in the folder it ran in (scratch files are removed).
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bench.json']
