"""``python -m freepik_bg`` runs the ``freepik-bg`` command line."""

import sys

from ._entry import main

if __name__ == "__main__":
    sys.exit(main())
