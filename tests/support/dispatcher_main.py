"""A dispatcher process for tests: ZEO client, short intervals, SIGTERM stops.

Prints ``ready UUID`` once its dispatcher has polled.
"""
import argparse
import logging
import signal
import sys
import threading

import ZEO.ClientStorage
import ZODB

import zc.asynchronous.configure
import zc.asynchronous.testing


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('address')
    parser.add_argument('--poll', type=float, default=0.2)
    parser.add_argument('--threads', type=int, default=3)
    parser.add_argument('--ping-interval', type=float, default=0.2)
    parser.add_argument('--ping-death-interval', type=float, default=1.5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format='%(asctime)s %(name)s %(levelname)s %(message)s')
    host, port = args.address.rsplit(':', 1)
    db = ZODB.DB(ZEO.ClientStorage.ClientStorage((host, int(port))))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    dispatcher = zc.asynchronous.configure.start(
        db, poll_interval=args.poll, agent_size=args.threads,
        ping_interval=args.ping_interval,
        ping_death_interval=args.ping_death_interval)
    zc.asynchronous.testing.wait_for_poll(dispatcher, 1, 20)
    print('ready', dispatcher.UUID, flush=True)
    while not stop.wait(0.1):
        pass
    dispatcher.stop()
    db.close()


if __name__ == '__main__':
    main()
