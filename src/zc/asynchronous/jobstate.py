"""How a job keeps its arguments.

The arguments of a job used to live in two persistent sub-objects, a
``PersistentList`` and a ``PersistentMapping``: two more records in the
job's first commit, two references to pickle each time the job is
written, and, over ZEO, two more loads before a worker can call it.  Most
jobs have a few small arguments and no keyword arguments.

So a job keeps small, simple arguments (``inline_sequence``,
``inline_mapping``) inside its own record, as a tuple and a dict, and
stores no keyword arguments at all when there are none.  Other arguments
get the persistent containers as before, so that a large argument is
written once, not again with every status change.

``job.args`` and ``job.kwargs`` return the persistent container where
there is one, and otherwise a view (``ArgsView``, ``KwargsView``) that
reads the stored value and makes the container on the first change.
Reading never writes the job.

The callbacks queue and the annotations BTree stay separate objects made
with the job: other transactions add callbacks and annotations while the
job runs, and those writes must not touch the job's own record (a
conflict there would make its call run again).
"""
import collections
import collections.abc
import datetime

import persistent

#: At most this many items are kept inline.
INLINE_ITEMS = 8
#: Strings and bytes up to this length are kept inline.
INLINE_LENGTH = 256
_SCALARS = (type(None), bool, int, float, complex, datetime.datetime,
            datetime.date, datetime.time, datetime.timedelta)


def _small(value):
    if isinstance(value, persistent.Persistent):
        return True   # a reference: the object has its own record
    kind = type(value)   # exact types: a subclass may carry a __dict__
    if kind is str or kind is bytes:
        return len(value) <= INLINE_LENGTH
    return kind in _SCALARS


def inline_sequence(values):
    """Whether ``values`` may be kept inline in the job's record."""
    return len(values) <= INLINE_ITEMS and all(_small(v) for v in values)


def inline_mapping(mapping):
    """Whether ``mapping`` may be kept inline in the job's record."""
    return len(mapping) <= INLINE_ITEMS and all(
        type(k) is str and len(k) <= INLINE_LENGTH and _small(v)
        for k, v in mapping.items())


class _View:
    """Reads a job's stored value; makes the real container on a write."""

    __slots__ = ('_job',)

    def __init__(self, job):
        self._job = job

    def _stored(self):
        raise NotImplementedError

    def _own(self):
        """The job's persistent container, made now if need be."""
        raise NotImplementedError

    def __len__(self):
        return len(self._stored())

    def __iter__(self):
        return iter(self._stored())

    def __reduce__(self):
        raise TypeError(
            'a view of the arguments of %r cannot be pickled or stored: '
            'store a copy (list(job.args), dict(job.kwargs))' % (self._job,))

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        import copy
        return copy.deepcopy(self.copy(), memo)


class ArgsView(_View, collections.abc.MutableSequence):
    """``job.args`` while the arguments are inline: a list to its users."""

    __slots__ = ()

    def _stored(self):
        return self._job._args

    def _own(self):
        return self._job._own_args()

    def __getitem__(self, index):
        res = self._stored()[index]
        return list(res) if isinstance(index, slice) else res

    def __setitem__(self, index, value):
        self._own()[index] = value

    def __delitem__(self, index):
        del self._own()[index]

    def insert(self, index, value):
        self._own().insert(index, value)

    # Like a list: equal to lists (a PersistentList is a UserList), not
    # to tuples or strings.

    def __eq__(self, other):
        if isinstance(other, (ArgsView, list, collections.UserList)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None

    def __add__(self, other):
        return list(self) + other

    def __radd__(self, other):
        return other + list(self)

    def __mul__(self, count):
        return list(self) * count

    __rmul__ = __mul__

    def copy(self):
        return list(self)

    def sort(self, *args, **kwargs):
        self._own().sort(*args, **kwargs)

    def __repr__(self):
        return repr(list(self._stored()))


class KwargsView(_View, collections.abc.MutableMapping):
    """``job.kwargs`` while they are inline (or none): a dict to its users."""

    __slots__ = ()

    def _stored(self):
        return self._job._kwargs or {}

    def _own(self):
        return self._job._own_kwargs()

    def __getitem__(self, key):
        return self._stored()[key]

    def __setitem__(self, key, value):
        self._own()[key] = value

    def __delitem__(self, key):
        del self._own()[key]

    def copy(self):
        return dict(self._stored())

    def __or__(self, other):
        return dict(self._stored()) | other

    def __ror__(self, other):
        return other | dict(self._stored())

    def __repr__(self):
        return repr(dict(self._stored()))
