"""The ``zc-async`` command line: run a dispatcher, put jobs, look at them.

``zc-async COMMAND [OPTIONS]`` (or ``python -m zc.asynchronous``), where
COMMAND is one of

* ``run``: run a dispatcher until SIGINT or SIGTERM;
* ``put CALLABLE [ARG ...]``: put a job in a queue, print its oid;
* ``status``, ``jobs`` and ``job OID``: look at queues, dispatchers and
  jobs (``--json`` for scripts);
* ``demo``: put a batch of example jobs and run them.

``--db`` names the database: a zodburi URI (``file://``, ``zeo://``,
``memory://``) or the path of a FileStorage; the default is
``$ZC_ASYNC_DB``, else ``var/Data.fs``, created when first written to.
The read commands open the storage read-only, so a FileStorage that a
dispatcher holds can still be read.

Bad input (an unknown callable, a malformed URI, a database locked by
another process, an oid that is not there) ends the command before
anything is written, with a one-line message on stderr and exit status 2.
"""
import contextlib
import logging
import os
import sys
import traceback

from zc.asynchronous.cli.common import (
    EXIT_BAD_INPUT, EXIT_FAILED, PROG, CommandError)
from zc.asynchronous.cli.inputs import cwd_on_sys_path
from zc.asynchronous.cli.parser import build_parser, log_to_stderr

__all__ = ['main']


def main(argv=None):
    """Run ``zc-async`` with ``argv`` (default ``sys.argv[1:]``).

    Returns the exit status: 0, 1 when something failed, 2 for bad input.
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error (reported already)
        return exc.code
    level = getattr(args, 'log_level', logging.WARNING)
    if args.verbose:
        level = logging.INFO if level == logging.CRITICAL else logging.DEBUG
    try:
        with log_to_stderr(level), cwd_on_sys_path():
            args.handler(args)
        return 0
    except CommandError as exc:
        print('%s: error: %s' % (PROG, exc), file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print('%s: interrupted' % PROG, file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (``zc-async jobs | head``): say nothing more.
        with contextlib.suppress(Exception):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except Exception as exc:
        if args.verbose:
            traceback.print_exc()
        print('%s: error: %s: %s%s' % (
            PROG, type(exc).__name__, exc,
            '' if args.verbose else ' (-v shows the traceback)'),
            file=sys.stderr)
        return EXIT_FAILED
