"""``python -m freepik_bg.testing``: serve the emulator until Ctrl-C."""

from __future__ import annotations

import sys

from freepik_bg.testing._cli import main

if __name__ == "__main__":
    sys.exit(main())
