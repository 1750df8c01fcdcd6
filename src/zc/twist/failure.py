"""Failures that are safe to keep: no live frames, and they pickle.

A Twisted ``Failure`` holds the traceback of the exception it wraps, and so
every frame and every local variable of the call stack, persistent objects
included.  ``zc.twist.Failure`` drops all of that when it is made and keeps
only plain data: for each frame its function name, file name and line
number, and the locals as short reprs at most.  Tracebacks still print, the
failure pickles into the ZODB and reloads in another process with the same
traceback text.
"""
import copyreg

import twisted.python.failure
import zope.interface
from twisted.python import reflect

from zc.twist.interfaces import IFailure

#: Local variable reprs longer than this are cut and marked ``[...]``.
REPR_LIMIT = 21

zope.interface.classImplements(
    twisted.python.failure.Failure, IFailure)


def _short_repr(value, is_repr=False):
    """A short repr of ``value``; ``is_repr``: ``value`` is a repr already."""
    if is_repr and isinstance(value, str):
        if value.endswith('[...]') and len(value) <= REPR_LIMIT + 5:
            return value            # cut already
        text = value
    else:
        text = reflect.safe_repr(value)
    if len(text) > REPR_LIMIT:
        text = text[:REPR_LIMIT] + '[...]'
    return text


def _plain_frames(frames, pickled=False):
    """Frames as plain lists; locals as short reprs, globals dropped.

    The frames of a live failure hold the local values themselves; those of
    a failure that was pickled (``pickled`` true) hold reprs already.
    """
    return [
        [str(name), str(filename), int(lineno),
         [(str(k), _short_repr(v, pickled)) for k, v in local_items],
         []]
        for name, filename, lineno, local_items, _global_items in frames]


def _strip_tracebacks(exc):
    """Clear ``__traceback__`` on ``exc`` and its cause and context chain."""
    seen = set()
    while isinstance(exc, BaseException) and id(exc) not in seen:
        seen.add(id(exc))
        exc.__traceback__ = None
        for linked in (exc.__cause__,):
            if isinstance(linked, BaseException):
                _strip_tracebacks(linked)
        exc = exc.__context__


def _sanitized_state(failure):
    """The public-key state of a Twisted failure, with nothing live in it."""
    frames = failure.frames      # computed lazily from tb: read before tb goes
    parents = failure.parents
    state = dict(failure.__dict__)
    state.pop('_frames', None)
    state.pop('_parents', None)
    state['frames'] = _plain_frames(frames, getattr(failure, 'pickled', 0))
    state['parents'] = list(parents)
    state['stack'] = []
    state['tb'] = None
    state['pickled'] = 1
    state['sanitized'] = True
    _strip_tracebacks(state.get('value'))
    return state


class Failure(twisted.python.failure.Failure):
    """A Twisted Failure without live frames, stored and pickled as itself.

    Made like any Twisted Failure (``Failure()`` inside an ``except`` block,
    or ``Failure(exc)``); it is sanitized at once.  ``tb`` is None, frames
    are plain lists, and the exception's own ``__traceback__`` chain is
    cleared.  ``stack`` is always empty and reading it gives no warning.
    """

    # Pickles (and reprs) name the class where users import it from.
    __module__ = 'zc.twist'

    sanitized = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._adopt(_sanitized_state(self))

    def _adopt(self, state):
        state = dict(state)
        state.pop('stack', None)
        state['_frames'] = state.pop('frames', [])
        state['_parents'] = state.pop('parents', None)
        state['tb'] = None
        self.__dict__.clear()
        self.__dict__.update(state)

    # Twisted's property is deprecated (and empty); keep the old attribute
    # readable without the warning.
    @property
    def stack(self):
        return []

    @stack.setter
    def stack(self, value):
        pass

    def cleanFailure(self):
        """Nothing to clean: the failure was sanitized when made."""

    def __getstate__(self):
        state = dict(self.__dict__)
        state['frames'] = state.pop('_frames', [])
        state['parents'] = state.pop('_parents', None)
        state['stack'] = []
        state['tb'] = None
        state['pickled'] = 1
        state['sanitized'] = True
        return state

    def __setstate__(self, state):
        self._adopt(state)

    def __reduce__(self):
        # Twisted's __reduce__ names the base class; name ours, and use
        # NEWOBJ, which both the stdlib and ZODB's pickler handle.
        return (copyreg.__newobj__, (type(self),), self.__getstate__())

    def __repr__(self):
        return '<%s %s>' % (reflect.qual(type(self)), reflect.qual(self.type))

    __str__ = twisted.python.failure.Failure.__str__


def sanitize(failure):
    """Return a ``zc.twist.Failure`` for any Twisted Failure.

    A zc.twist Failure is returned as it is; any other is copied, without
    its traceback and live frames, into a new one.
    """
    if isinstance(failure, Failure):
        return failure
    result = Failure.__new__(Failure)
    result._adopt(_sanitized_state(failure))
    return result
