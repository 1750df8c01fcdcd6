"""Method-wrappers (``{}.__setitem__``), which pickle as self plus name."""

METHOD_WRAPPER_TYPE = type({}.__setitem__)


def get_self(wrapper):
    """Return the object a method-wrapper is bound to."""
    if not isinstance(wrapper, METHOD_WRAPPER_TYPE):
        raise TypeError('unsupported type')
    return wrapper.__self__
