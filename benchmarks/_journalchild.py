"""One journal resume in a fresh process: ``python -m benchmarks._journalchild PATH``.

Loads the journal (from its checkpoint if one matches, else line by line) and prints one
JSON line: seconds to load, what it found, and the peak RSS (``ru_maxrss``).
"""

from __future__ import annotations

import sys
import time

from benchmarks._common import child_report
from freepik_bg import Journal


def main(argv: list[str]) -> None:
    started = time.perf_counter()
    journal = Journal(argv[0])
    elapsed = time.perf_counter() - started
    counts = {"completed": float(journal.completed), "torn": float(journal.torn_lines)}
    child_report(counts, journal.completed, elapsed)


if __name__ == "__main__":
    main(sys.argv[1:])
