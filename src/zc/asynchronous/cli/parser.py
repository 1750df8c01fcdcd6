"""The argument parser of ``zc-async``, and its logging set-up."""
import argparse
import contextlib
import logging
import os
import sys

from zc.asynchronous.cli.commands import (
    cmd_job, cmd_jobs, cmd_put, cmd_run, cmd_status)
from zc.asynchronous.cli.common import DEFAULT_DB, EXIT_BAD_INPUT, PROG
from zc.asynchronous.cli.demo import cmd_demo

DB_ENVIRON = 'ZC_ASYNC_DB'


def _non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError('%r is not a whole number >= 0'
                                         % text)
    return value


def _positive(convert):
    def check(text):
        try:
            value = convert(text)
        except ValueError:
            value = 0
        if not value > 0:
            raise argparse.ArgumentTypeError('%r is not a positive number'
                                             % text)
        return value
    check.__name__ = convert.__name__
    return check


class ArgumentParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, '%s: error: %s (see %s --help)\n'
                  % (self.prog, message, self.prog))


def build_parser():
    """The argument parser of ``zc-async``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        '--db', metavar='URI',
        default=os.environ.get(DB_ENVIRON) or DEFAULT_DB,
        help='the database: a zodburi URI (file://, zeo://, memory://) or a '
             'FileStorage path (default: $%s, else %s)'
             % (DB_ENVIRON, DEFAULT_DB))
    common.add_argument(
        '-v', '--verbose', action='store_true',
        help='log more, and show the traceback of an unexpected error')
    reading = argparse.ArgumentParser(add_help=False, parents=[common])
    reading.add_argument('--json', action='store_true',
                         help='print JSON, for scripts')

    parser = ArgumentParser(
        prog=PROG, description='Run zc.asynchronous dispatchers, put jobs '
        'and look at them.  Try: %s demo' % PROG)
    commands = parser.add_subparsers(dest='command', metavar='COMMAND',
                                     required=True)

    run = commands.add_parser(
        'run', parents=[common], help='run a dispatcher until SIGINT or '
        'SIGTERM', description='Run a dispatcher: it claims the jobs of '
        'every queue and runs them in threads.  Logs go to stderr.')
    run.add_argument('--poll', type=_positive(float), default=1.0,
                     metavar='SECONDS', help='seconds between polls '
                     '(default: 1)')
    run.add_argument('--threads', type=_positive(int), default=3,
                     metavar='N', help='worker threads (default: 3)')
    run.add_argument('--prefetch', type=_non_negative_int, default=0,
                     metavar='N', help='jobs claimed ahead of the threads, '
                     'which go back to the queue if this process dies '
                     '(default: 0)')
    run.set_defaults(handler=cmd_run, log_level=logging.INFO)

    put = commands.add_parser(
        'put', parents=[common], help='put a job in a queue, print its oid',
        description='Put a job calling CALLABLE(ARG, ...) in a queue and '
        'print its oid.  Each ARG is a JSON literal (1, 2.5, null, true, '
        '"text", [1, 2], {"a": 1}) or else a string.')
    put.add_argument('callable', metavar='CALLABLE',
                     help='a global callable: package.module.function')
    put.add_argument('args', nargs='*', default=[], metavar='ARG',
                     help='an argument (put -- before any that starts '
                     'with -)')
    put.add_argument('--begin-after', metavar='WHEN',
                     help='not before then: a delay (30s, 5m, 2h, 1d) or an '
                     'ISO 8601 date and time')
    put.add_argument('--queue', default='', metavar='NAME',
                     help="the queue (default: '', the default queue)")
    put.set_defaults(handler=cmd_put)

    status = commands.add_parser(
        'status', parents=[reading], help='queues, dispatchers and counts')
    status.set_defaults(handler=cmd_status)

    jobs = commands.add_parser(
        'jobs', parents=[reading], help='list jobs',
        description='List the pending, running and recently completed jobs.')
    states = jobs.add_mutually_exclusive_group()
    for state, help in (('pending', 'waiting in a queue'),
                        ('active', 'claimed or running'),
                        ('completed', 'completed successfully'),
                        ('failed', 'completed with a failure')):
        states.add_argument('--' + state, dest='state', action='store_const',
                            const=state, help='only jobs ' + help)
    jobs.set_defaults(handler=cmd_jobs, state=None)

    job = commands.add_parser(
        'job', parents=[reading], help='one job: status, times, result',
        description='Show one job: its status, times, and its result or '
        "its failure's traceback.")
    job.add_argument('oid', metavar='OID')
    job.set_defaults(handler=cmd_job)

    demo = commands.add_parser(
        'demo', parents=[common], help='run a batch of example jobs',
        description='Put a batch of example jobs and run a dispatcher until '
        'they are all done.')
    demo.set_defaults(handler=cmd_demo, log_level=logging.CRITICAL)
    return parser


@contextlib.contextmanager
def log_to_stderr(level):
    """Send this package's log records of ``level`` and up to stderr.

    Other libraries' records go too from WARNING up (and within
    ``level``).  Everything is put back at the end.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        '%(asctime)s %(levelname)s %(name)s: %(message)s'))
    handler.setLevel(level)
    loggers = [logging.getLogger(name)
               for name in ('zc.async', 'zc.asynchronous')]
    saved = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(level)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        for logger, previous in zip(loggers, saved):
            logger.setLevel(previous)
