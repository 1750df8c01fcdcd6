"""``python -m zc.asynchronous``: the ``zc-async`` command line."""
import sys

from zc.asynchronous.cli import main

if __name__ == '__main__':
    sys.exit(main())
