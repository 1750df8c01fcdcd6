"""The benchmarks of zc.asynchronous, side by side in one run.

    python bench/run.py            # the full run (N = 2,000; 1k/10k/100k)
    python bench/run.py --quick    # a smaller one (N = 300; 1k/10k)

Sections (see the modules of ``bench/zcbench``):

1. overhead: N jobs with one callback, run in-process, against the commit
   floor (the same commits of the same records with a trivial class), on
   MappingStorage and FileStorage;
2. end to end: N no-op jobs through zc.asynchronous on FileStorage
   (embedded dispatcher) and ZEO (a server, a putting process, a
   dispatcher process), and through Huey (SqliteHuey) and RQ
   (SimpleWorker), in the same run;
3. scale: put and claim with 1k, 10k and 100k jobs pending; storage bytes
   per completed job.

Everything is printed as one table, then the targets of the benchmark
issue and whether this run met them.  ``--json FILE`` also writes the rows
as JSON.  Servers (ZEO, redis) and workers are started on 127.0.0.1 and
stopped by pid before it exits; scratch files go to a temporary folder.
"""
import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from zcbench import common  # noqa: E402
from zcbench.common import Row, render_table  # noqa: E402

#: The targets of the benchmark issue.
TARGET_P50_START_MS = 5.0
TARGET_OVERHEAD = 1.2


def machine_info():
    """What the figures were measured on: a dict of short strings."""
    info = {'nproc': str(os.cpu_count()), 'python': platform.python_version()}
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    info['cpu'] = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    from importlib import metadata
    for name in ('zc.asynchronous', 'ZODB', 'ZEO', 'persistent', 'BTrees',
                 'transaction', 'zc.queue', 'Twisted', 'huey', 'rq', 'redis'):
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            info[name] = 'not installed'
    try:
        info['load'] = '%.2f %.2f %.2f' % os.getloadavg()
    except OSError:
        pass
    return info


def target_rows(rows):
    """The issue's targets, judged from this run's rows."""
    def find(section, case, metric):
        for row in rows:
            if (row.section.startswith(section) and row.case == case
                    and row.metric == metric):
                return row
        return None
    out = []
    # The storages' own floors (zcbench.floors), said beside the targets.
    floors = {'zc FileStorage embedded': ('floor FileStorage', 'e2e jobs/s'),
              'zc ZEO 2 processes': ('floor ZEO', 'paced put->start p50')}
    for case in ('zc FileStorage embedded', 'zc ZEO 2 processes'):
        floor = find('2', *floors[case])
        floor_note = ''
        if floor is not None and floor.value is not None:
            floor_note = '; the storage floor: %s %s' % (
                common.fmt_number(floor.value), floor.unit)
        e2e = find('2', case, 'e2e jobs/s')
        huey = find('2', 'Huey SqliteHuey', 'e2e jobs/s')
        if e2e is not None and huey is not None and huey.value:
            met = e2e.value >= huey.value
            out.append(Row('targets', case, 'e2e >= Huey', e2e.ratio, 'x',
                           note='%s: %.0f vs %.0f jobs/s%s'
                           % ('met' if met else 'NOT met', e2e.value,
                              huey.value, floor_note if case.startswith(
                                  'zc File') else '')))
        for metric, label in (('put->start p50', 'live'),
                              ('paced put->start p50', 'paced')):
            p50 = find('2', case, metric)
            if p50 is not None and p50.value is not None:
                met = p50.value <= TARGET_P50_START_MS
                out.append(Row('targets', case,
                               'p50 put->start <= 5 ms, %s' % label,
                               p50.value, 'ms',
                               note=('met' if met else 'NOT met') + (
                                   floor_note if label == 'paced'
                                   and case.startswith('zc ZEO') else '')))
    for case in ('MappingStorage', 'FileStorage'):
        job = find('1', case, 'job (1 callback)')
        if job is not None and job.ratio is not None:
            met = job.ratio <= TARGET_OVERHEAD
            out.append(Row('targets', case, 'job / floor <= 1.2',
                           job.ratio, 'x', note='met' if met else 'NOT met'))
    return out


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true',
                        help='smaller N and levels (a minute or so)')
    parser.add_argument('--n', type=int, default=None,
                        help='jobs in sections 1 and 2 (default 2,000; '
                        '300 with --quick)')
    parser.add_argument('--levels', default=None,
                        help='pending levels of section 3, comma-separated '
                        '(default 1000,10000,100000; 1000,10000 with '
                        '--quick)')
    parser.add_argument('--rounds', type=int, default=None,
                        help='rounds of section 1, best kept (3; 1 quick)')
    parser.add_argument('--workers', type=int, default=1,
                        help='worker threads of the dispatcher (1, like '
                        "Huey's one worker)")
    parser.add_argument('--sections', default='1,2,3',
                        help='which sections to run, e.g. 2 or 1,3')
    parser.add_argument('--prefetch', type=int, default=None,
                        help="the dispatchers' prefetch (default 16)")
    parser.add_argument('--no-peers', action='store_true',
                        help='skip Huey and RQ')
    parser.add_argument('--json', default=None,
                        help='also write the rows to this JSON file')
    args = parser.parse_args(argv)
    if args.n is None:
        args.n = 300 if args.quick else 2000
    if args.levels is None:
        args.levels = '1000,10000' if args.quick else '1000,10000,100000'
    args.levels = tuple(int(x) for x in args.levels.split(',') if x)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    args.sections = {s.strip() for s in args.sections.split(',')}
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.prefetch is not None:
        os.environ['ZCBENCH_PREFETCH'] = str(args.prefetch)
        common.PREFETCH = args.prefetch
    import logging
    logging.basicConfig(level=logging.ERROR)
    info = machine_info()
    started = time.time()
    rows = []
    with common.scratch_dir() as folder:
        # Queue.put records the instance UUID: keep its file out of the cwd.
        os.environ['ZC_ASYNC_UUID'] = os.path.join(folder, 'uuid.txt')
        live_fs = None
        if '1' in args.sections:
            from zcbench import overhead
            rows += overhead.measure(args.n, rounds=args.rounds)
        if '2' in args.sections:
            from zcbench import e2e
            sub = os.path.join(folder, 'e2e')
            os.mkdir(sub)
            e2e_rows, results = e2e.measure(
                args.n, sub, peers=not args.no_peers, workers=args.workers)
            rows += e2e_rows
            for case, runs, note in results:
                if case == 'zc FileStorage embedded' and runs is not None:
                    live_fs = runs['live']
        if '3' in args.sections:
            from zcbench import scale
            sub = os.path.join(folder, 'scale')
            os.mkdir(sub)
            rows += scale.measure(sub, levels=args.levels,
                                  m=50 if args.quick else 200)
            if '2' in args.sections:
                rows += scale.storage_rows(live_fs)
    rows += target_rows(rows)
    elapsed = time.time() - started
    try:
        info['load after'] = '%.2f %.2f %.2f' % os.getloadavg()
    except OSError:
        pass
    print('zc.asynchronous benchmarks: N = %d, levels %s, %d worker(s), '
          'prefetch %d, %.0f s' % (
              args.n, ','.join(str(x) for x in args.levels), args.workers,
              common.PREFETCH, elapsed))
    print('; '.join('%s %s' % item for item in info.items()))
    print()
    print(render_table(rows))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'machine': info, 'n': args.n, 'elapsed': elapsed,
                       'rows': [vars(r) for r in rows]}, f, indent=1)
    return rows


if __name__ == '__main__':
    main()
