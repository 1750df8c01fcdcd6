"""The dispatcher process of the ZEO end-to-end runs.

``python -m zcbench.zc_worker PORT N OUT READY [WORKERS] [SECONDS]``

Connects to the ZEO server on 127.0.0.1:PORT, starts a dispatcher (its own
UUID, ``WORKERS`` worker threads), touches ``READY`` once it has polled,
and waits until it has completed ``N`` jobs, or ``SECONDS`` (default 120)
have passed.  Then it writes ``OUT`` (JSON: for each job it ran, its oid,
the time it was handed to a worker thread and the time it completed, both
``time.time()`` seconds, from the dispatcher's job history), stops the
dispatcher and exits.  It always stops by itself.
"""
import datetime
import json
import logging
import os
import sys
import time
import uuid

from zcbench.common import PREFETCH

EPOCH = datetime.datetime(1970, 1, 1)


def epoch(naive_utc):
    """A naive UTC datetime (the dispatcher's) as ``time.time()`` seconds."""
    if naive_utc is None:
        return None
    return (naive_utc - EPOCH).total_seconds()


def job_times(dispatcher):
    """``{oid: (started, completed)}`` from the dispatcher's history."""
    while True:
        try:
            items = list(dispatcher.jobs.items())
            break
        except RuntimeError:   # changed while copied: try again
            continue
    return {oid: (epoch(info['started']), epoch(info['completed']))
            for (oid, _), info in items}


def completed_count(dispatcher):
    """How many jobs of the history completed (checked every 0.25 s)."""
    while True:
        try:
            return sum(1 for info in list(dispatcher.jobs.values())
                       if info['completed'] is not None)
        except RuntimeError:   # changed while copied: try again
            continue


def main(argv):
    port, n, out, ready = int(argv[0]), int(argv[1]), argv[2], argv[3]
    workers = int(argv[4]) if len(argv) > 4 else 1
    seconds = float(argv[5]) if len(argv) > 5 else 120.0
    logging.basicConfig(level=logging.WARNING)
    import ZEO
    import zc.asynchronous.configure
    from zc.asynchronous import testing
    db = ZEO.DB(('127.0.0.1', port), wait_timeout=30)
    dispatcher = None
    try:
        dispatcher = zc.asynchronous.configure.start(
            db, poll_interval=1, agent_size=workers, prefetch=PREFETCH,
            uuid=uuid.uuid4(),
            jobs_size=n + 100)
        testing.wait_for_poll(dispatcher, seconds=30)
        with open(ready, 'w') as f:
            f.write(str(os.getpid()))
        deadline = time.monotonic() + seconds
        while (completed_count(dispatcher) < n
               and time.monotonic() < deadline):
            time.sleep(0.25)
        times = job_times(dispatcher)
        with open(out + '.tmp', 'w') as f:
            json.dump({'jobs': [[oid, s, c] for oid, (s, c) in times.items()],
                       'polls': dispatcher._poll_count}, f)
        os.rename(out + '.tmp', out)
    finally:
        if dispatcher is not None:
            dispatcher.stop()
        db.close()


if __name__ == '__main__':
    main(sys.argv[1:])
