"""Helpers the benchmark sections share: timing, statistics, the table.

Every section returns a list of ``Row`` objects; ``run.py`` prints them all
as one table, so that the figures of one run sit side by side.
"""
import contextlib
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

#: The bench/ folder (holding this package), first on the ``sys.path``
#: of the worker processes.
BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Jobs each zc.asynchronous agent claims beyond its worker threads (the
#: dispatcher's ``prefetch``): a worker that finishes finds the next job
#: waiting, and one poll commit claims several jobs.  ``run.py
#: --prefetch N`` changes it (through the environment, so that the
#: dispatcher processes see it too).
PREFETCH = int(os.environ.get('ZCBENCH_PREFETCH', '16'))


class Row:
    """One line of the table.

    ``value`` is the figure (a number, or None when it could not be had);
    ``ratio`` compares it with ``ratio_of`` (a short text naming what it is
    compared with).  ``note`` says why a figure is missing or how it was
    made.
    """

    def __init__(self, section, case, metric, value, unit='',
                 ratio=None, ratio_of='', note=''):
        self.section = section
        self.case = case
        self.metric = metric
        self.value = value
        self.unit = unit
        self.ratio = ratio
        self.ratio_of = ratio_of
        self.note = note

    def __repr__(self):
        return '<Row %s | %s | %s = %r>' % (
            self.section, self.case, self.metric, self.value)


def ratio(a, b):
    """``a / b``, or None when either is missing or ``b`` is zero.

    >>> ratio(3.0, 2.0)
    1.5
    >>> ratio(1.0, 0) is None
    True
    """
    if a is None or b is None or b == 0:
        return None
    return a / b


def percentile(values, p):
    """The ``p``-th percentile (0 to 100) of ``values``, nearest rank.

    >>> percentile([5, 1, 4, 2, 3], 50)
    3
    >>> percentile(list(range(1, 101)), 99)
    99
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def fmt_number(value):
    """A figure as the table shows it: 3 significant digits, at least.

    >>> fmt_number(1234.567), fmt_number(12.3456), fmt_number(0.012345)
    ('1,235', '12.3', '0.0123')
    >>> fmt_number(None)
    '-'
    """
    if value is None:
        return '-'
    if isinstance(value, int) and not isinstance(value, bool):
        return '{:,}'.format(value)
    value = float(value)
    if abs(value) >= 100:
        return '{:,.0f}'.format(value)
    if abs(value) >= 10:
        return '{:.1f}'.format(value)
    if abs(value) >= 1:
        return '{:.2f}'.format(value)
    return '{:.3g}'.format(value)


def fmt_ratio(value):
    """``1.23x``, or '' when there is no ratio."""
    if value is None:
        return ''
    return '{:.2f}x'.format(value)


def render_table(rows):
    """The rows as one fixed-width text table (a string)."""
    header = ('section', 'case', 'metric', 'value', 'unit', 'ratio',
              'ratio of', 'note')
    lines = [header]
    for row in rows:
        lines.append((row.section, row.case, row.metric,
                      fmt_number(row.value), row.unit, fmt_ratio(row.ratio),
                      row.ratio_of, row.note))
    widths = [max(len(str(line[i])) for line in lines)
              for i in range(len(header))]
    right = {3, 5}   # numbers are right-aligned
    out = []
    for index, line in enumerate(lines):
        cells = []
        for i, cell in enumerate(line):
            cell = str(cell)
            cells.append(cell.rjust(widths[i]) if i in right
                         else cell.ljust(widths[i]))
        out.append('  '.join(cells).rstrip())
        if index == 0:
            out.append('  '.join('-' * w for w in widths))
    return '\n'.join(out)


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def wait_for_port(port, seconds=20.0, proc=None):
    """Wait until something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError('server exited with %s before listening'
                               % proc.returncode)
        with contextlib.closing(socket.socket()) as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(('127.0.0.1', port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError('nothing listens on 127.0.0.1:%d after %s s'
                       % (port, seconds))


def wait_until(condition, seconds, poll=0.005, message='timed out'):
    """Call ``condition`` until it is true; raise after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(message)
        time.sleep(poll)


def start_process(args, log_path, env=None):
    """Start ``args`` with output to ``log_path``; return the Popen."""
    full_env = dict(os.environ)
    full_env['PYTHONPATH'] = os.pathsep.join(
        [BENCH_DIR] + [p for p in [full_env.get('PYTHONPATH')] if p])
    if env:
        full_env.update(env)
    log = open(log_path, 'wb')
    try:
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=full_env)
    finally:
        log.close()


def stop_process(proc, seconds=10.0):
    """Stop ``proc`` (our child) by its pid: SIGTERM, then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(seconds)


def tail(path, lines=20):
    """The last lines of a log file, for error messages."""
    try:
        with open(path, 'rb') as f:
            text = f.read().decode('utf-8', 'replace')
    except OSError:
        return ''
    return '\n'.join(text.splitlines()[-lines:])


@contextlib.contextmanager
def scratch_dir(prefix='zc-async-bench-'):
    """A temporary folder, removed afterwards."""
    path = tempfile.mkdtemp(prefix=prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


PYTHON = sys.executable
