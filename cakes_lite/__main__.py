"""``python -m cakes_lite …`` (see :mod:`cakes_lite.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
