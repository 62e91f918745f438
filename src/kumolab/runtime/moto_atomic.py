"""Run moto's server with DynamoDB writes made atomic, as they are on AWS.

moto's DynamoDB backend has no locking: ``UpdateItem`` with ``ADD`` reads the old value and writes the
new one in Python, so two concurrent requests on moto's threaded server can both read N and both write
N+1 — a lost update that AWS never produces (seen here: 1,000 concurrent likes counted 999). This
wrapper serialises moto's DynamoDB item writes (and the conditional checks inside them) with one lock;
reads stay concurrent. Use it instead of ``python -m moto.server``:

    python -m kumolab.runtime.moto_atomic -H 127.0.0.1 -p 5127
"""

from __future__ import annotations

import functools
import sys
import threading

WRITE_OPERATIONS = ("put_item", "update_item", "delete_item", "batch_write_item", "transact_write_items")
_LOCK = threading.RLock()


def install() -> None:
    """Wrap moto's DynamoDB write handlers in one lock (idempotent)."""
    from moto.dynamodb.responses import DynamoHandler

    for name in WRITE_OPERATIONS:
        method = getattr(DynamoHandler, name, None)
        if method is None or getattr(method, "_kumolab_atomic", False):
            continue

        @functools.wraps(method)
        def locked(self, *args, __method=method, **kwargs):
            with _LOCK:
                return __method(self, *args, **kwargs)

        locked._kumolab_atomic = True  # type: ignore[attr-defined]
        setattr(DynamoHandler, name, locked)


def main(argv: list[str] | None = None) -> None:
    install()
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
