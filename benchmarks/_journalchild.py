"""One journal resume in a fresh process: ``python -m benchmarks._journalchild PATH``.

Loads the journal (from its checkpoint if one matches, else line by line) and prints one
JSON line: seconds to load, what it found, and the peak RSS (``ru_maxrss``).
"""

from __future__ import annotations

import json
import resource
import sys
import time

from freepik_bg import Journal


def _peak_rss_mib() -> float:
    # VmHWM starts afresh at exec; ru_maxrss keeps the forking parent's peak (Linux), which
    # here is the benchmark process that generated the journal.
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str]) -> None:
    started = time.perf_counter()
    journal = Journal(argv[0])
    elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {
                "completed": journal.completed,
                "torn": journal.torn_lines,
                "elapsed": elapsed,
                "peak_rss_mib": _peak_rss_mib(),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
