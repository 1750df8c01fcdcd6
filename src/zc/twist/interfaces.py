"""The interface of a failure, as jobs and callbacks test for it."""
import zope.interface


class IFailure(zope.interface.Interface):
    """A Twisted Failure (the marker the job uses to tell results apart).

    ``twisted.python.failure.Failure`` is declared to implement it by
    ``zc.twist.failure``.
    """

    type = zope.interface.Attribute('the exception class')
    value = zope.interface.Attribute('the exception instance')

    def getTraceback(elideFrameworkCode=0, detail='default'):
        """Return the traceback as text."""

    def printTraceback(file=None, elideFrameworkCode=0, detail='default'):
        """Print the traceback to ``file`` (stderr by default)."""

    def check(*errorTypes):
        """Return the first of ``errorTypes`` the failure matches, or None."""

    def trap(*errorTypes):
        """Like check, but re-raise the failure when nothing matches."""
