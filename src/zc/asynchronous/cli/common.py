"""What every part of the ``zc-async`` command line shares."""
import os

PROG = 'zc-async'
#: The database used when neither --db nor $ZC_ASYNC_DB names one.
DEFAULT_DB = os.path.join('var', 'Data.fs')

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class CommandError(Exception):
    """Bad input: reported as one line on stderr, with exit status 2."""
