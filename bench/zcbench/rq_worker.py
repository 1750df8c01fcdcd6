"""The RQ worker process: ``python -m zcbench.rq_worker PORT QUEUE N``.

A ``SimpleWorker`` (it runs jobs in its own process, no fork per job) on
the Redis at 127.0.0.1:PORT, that exits by itself after N jobs.
"""
import sys


def main(argv):
    import redis
    import rq
    port, queue_name, n = int(argv[0]), argv[1], int(argv[2])
    connection = redis.Redis(host='127.0.0.1', port=port)
    queue = rq.Queue(queue_name, connection=connection)
    worker = rq.SimpleWorker([queue], connection=connection)
    worker.work(max_jobs=n, logging_level='WARNING')


if __name__ == '__main__':
    main(sys.argv[1:])
