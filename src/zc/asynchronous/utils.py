"""Small pieces the persistent classes share: a base class, time keys, reprs."""
import datetime
import logging
import types

import persistent
import pytz
import ZODB.utils

#: Start and stop of dispatchers, errors and failed jobs.
log = logging.getLogger('zc.async.events')
#: Polls, job starts and successes: verbose.
tracelog = logging.getLogger('zc.async.trace')

EPOCH_MAX = datetime.datetime.max
_UTC = datetime.timezone.utc
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=pytz.UTC)
_MICROSECOND = datetime.timedelta(microseconds=1)


def dt_to_micros(dt):
    """An aware datetime as whole microseconds since the epoch (UTC).

    Jobs keep their start and end times this way: an int pickles in a
    fraction of the time a datetime with its tzinfo takes, and a job is
    written several times in its life.

    >>> t = datetime.datetime(2006, 8, 10, 15, 44, 22, 211, pytz.UTC)
    >>> dt_to_micros(t)
    1155224662000211
    >>> micros_to_dt(dt_to_micros(t)) == t
    True
    """
    return (dt - EPOCH) // _MICROSECOND


def micros_to_dt(value):
    """The aware (pytz UTC) datetime of ``dt_to_micros``; None stays None.

    A datetime (as jobs stored by earlier versions hold) is returned as it
    is.
    """
    if value is None or isinstance(value, datetime.datetime):
        return value
    return EPOCH + datetime.timedelta(microseconds=value)


def now():
    """The current time as a timezone-aware UTC datetime (pytz's UTC)."""
    # The stdlib's UTC converts in C; pytz's fromutc is Python code.
    return datetime.datetime.now(_UTC).replace(tzinfo=pytz.UTC)


class Base(persistent.Persistent):
    """A persistent object that knows its container.

    ``parent`` is the object this one lives in (a queue, an agent, a job);
    ``__parent__`` is the same thing under the name the ZCA and the
    ``zc.twist.connection`` adapter look for.
    """

    parent = None

    @property
    def __parent__(self):
        return self.parent

    @__parent__.setter
    def __parent__(self, value):
        self.parent = value


def dt_to_long(dt):
    """Encode a datetime as an int key that is smaller for later times.

    BTrees keyed this way iterate newest first.  The four lowest bits are
    always zero, free for a caller that needs to make keys unique.  Aware
    datetimes are converted to UTC first; naive ones are taken as UTC.
    """
    if dt.tzinfo is not None:
        dt = dt.astimezone(pytz.UTC).replace(tzinfo=None)
    delta = EPOCH_MAX - dt
    return ((delta.days << 41) | (delta.seconds << 24)
            | (delta.microseconds << 4))


def long_to_dt(value):
    """Decode a key made by ``dt_to_long`` into a naive UTC datetime."""
    microseconds = (value >> 4) & 0xFFFFF
    seconds = (value >> 24) & 0x1FFFF
    days = value >> 41
    return EPOCH_MAX - datetime.timedelta(days, seconds, microseconds)


_NAMED_TYPES = (types.FunctionType, types.BuiltinFunctionType, type)


def custom_repr(obj):
    """A short repr: persistent objects by class, oid and database.

    ``module.Class (oid 3, db 'unnamed')`` for a persistent object
    (``(oid ?, db ?)`` before it is added to a database), ``module.name``
    for functions, builtins and classes, and ``repr()`` for anything else.
    """
    if isinstance(obj, persistent.Persistent):
        cls = type(obj)
        oid = obj._p_oid
        jar = obj._p_jar
        if oid is None or jar is None:
            where = '(oid ?, db ?)'
        else:
            where = '(oid %d, db %r)' % (
                ZODB.utils.u64(oid), jar.db().database_name)
        return '%s.%s %s' % (cls.__module__, cls.__qualname__, where)
    if isinstance(obj, _NAMED_TYPES):
        module = getattr(obj, '__module__', None)
        name = getattr(obj, '__qualname__', None) or obj.__name__
        return '%s.%s' % (module, name) if module else name
    return repr(obj)
