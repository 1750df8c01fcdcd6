"""Reading the input: callables, job arguments, times and oids."""
import contextlib
import datetime
import importlib
import json
import os
import pickle
import re
import sys

from zc.asynchronous.cli.common import CommandError


def resolve_callable(name):
    """Import the global callable ``name``: ``pkg.module.function``.

    ``pkg.module:object.method`` says where the module name ends.  The
    callable must be something a job can store: reachable by its name
    (pickled by reference), so a dispatcher can import it again.
    """
    module_name, sep, attributes = name.partition(':')
    parts = module_name.split('.') + (attributes.split('.') if sep else [])
    if not all(part.isidentifier() for part in parts):
        raise CommandError('%r is not a dotted name (such as '
                           'package.module.function)' % name)
    if sep:
        splits = [len(module_name.split('.'))]
    else:
        splits = range(len(parts) - 1, 0, -1)
        if len(parts) < 2:
            raise CommandError('%r names no module: use module.function'
                               % name)
    for split in splits:
        found = _import_module('.'.join(parts[:split]))
        if found is not None:
            break
    else:
        raise CommandError('cannot import %s: no module named %r'
                           % (name, parts[0]))
    obj = found
    for position in range(split, len(parts)):
        try:
            obj = getattr(obj, parts[position])
        except AttributeError:
            raise CommandError('cannot import %s: %s has no attribute %r' % (
                name, '.'.join(parts[:position]), parts[position]))
    if not callable(obj):
        raise CommandError('%s is not callable' % name)
    try:
        pickle.dumps(obj)
    except Exception as exc:
        raise CommandError('%s cannot be stored in a job: %s' % (name, exc))
    return obj


def _import_module(module_name):
    """The module, or None when no module has that name."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ''
        if module_name == missing or module_name.startswith(missing + '.'):
            return None
        raise CommandError('cannot import %s: %s' % (module_name, exc))
    except Exception as exc:
        raise CommandError('cannot import %s: %s: %s'
                           % (module_name, type(exc).__name__, exc))


def parse_argument(text):
    """A job argument: the JSON literal ``text`` is, else ``text`` itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


_DELAY = re.compile(r'^\+?(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)$')
_SECONDS = {'': 1, 's': 1, 'm': 60, 'h': 3600, 'd': 86400}


def parse_when(text, now=None):
    """A ``--begin-after`` value as an aware datetime.

    A delay from now (``90``, ``90s``, ``+5m``, ``2h``, ``1d``), or an ISO
    8601 date and time (local time unless it has an offset or ``Z``).
    """
    if now is None:
        now = datetime.datetime.now(datetime.timezone.utc)
    match = _DELAY.match(text.strip())
    if match:
        number, unit = match.groups()
        return now + datetime.timedelta(
            seconds=float(number) * _SECONDS[unit])
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise CommandError(
            '--begin-after %r is neither a delay (such as 30s, 5m, 2h) nor '
            'an ISO 8601 date and time' % text)
    if when.tzinfo is None:
        when = when.astimezone()  # local time
    return when


def parse_oid(text):
    """An oid as an int: decimal as ``put`` prints it, or 0x hex."""
    try:
        if text.lower().startswith('0x'):
            oid = int(text, 16)
        else:
            oid = int(text, 10)
    except ValueError:
        oid = -1
    if not 0 <= oid < 2 ** 64:
        raise CommandError('%r is not an oid (an integer such as the one '
                           "'zc-async put' prints)" % text)
    return oid


@contextlib.contextmanager
def cwd_on_sys_path():
    """Let callables be imported from the current folder, as ``python -m``.

    The console script does not put the current folder on ``sys.path``;
    ``put``, ``run`` and ``demo`` should find ``tasks.py`` there alike.
    """
    cwd = os.getcwd()
    added = cwd not in sys.path and '' not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)
