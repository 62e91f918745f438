"""Container health: healthy while the worker's heartbeat file is fresh.

The worker touches ``$HEARTBEAT_FILE`` after every poll (at most WAIT_TIME_SECONDS apart, plus one batch
of inference), so an old or missing file means the loop is stuck or dead. Exit 0 healthy, 1 not.
"""

from __future__ import annotations

import os
import sys
import time


def main() -> int:
    path = os.environ.get("HEARTBEAT_FILE", "/tmp/qa-worker.heartbeat")
    max_age = float(os.environ.get("HEARTBEAT_MAX_AGE_SECONDS", "120"))
    try:
        age = time.time() - os.path.getmtime(path)
    except OSError:
        print(f"no heartbeat at {path}", file=sys.stderr)
        return 1
    if age > max_age:
        print(f"heartbeat is {age:.0f} s old (limit {max_age:.0f} s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
