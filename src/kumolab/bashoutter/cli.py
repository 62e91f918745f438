"""kumolab-bashoutter: the Lab 5 client.

    kumolab-bashoutter post_many 100 --concurrency 32   # concurrent POST /haiku; success/failure counts
    kumolab-bashoutter list                             # GET /haiku
    kumolab-bashoutter clear_database                   # delete every haiku (DynamoDB, paginated)

The API URL and table come from results/<owner>/bashoutter/outputs.json (written by playbooks/bashoutter.yml);
``--api-url`` / ``--table`` override them. Throttled requests (429, the stage's rate limit) are retried
with backoff like the AWS SDKs do, and reported separately.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from kumolab.serverless.cli import clear
from kumolab.serverless.outputs import aws_resource, outputs

KIGO = [
    "furuike ya",
    "kawazu tobikomu",
    "mizu no oto",
    "natsukusa ya",
    "tsuwamonodomo ga",
    "yume no ato",
    "shizukasa ya",
    "iwa ni shimiiru",
    "semi no koe",
    "samidare wo",
    "atsumete hayashi",
    "mogamigawa",
]


class ApiClient:
    """A keep-alive HTTP connection per thread to the stage URL."""

    def __init__(self, api_url: str, timeout: float = 60):
        parts = urlsplit(api_url.rstrip("/"))
        self.scheme, self.netloc, self.base = parts.scheme, parts.netloc, parts.path
        self.timeout = timeout
        self.local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            conn = self.local.conn = cls(self.netloc, timeout=self.timeout)
        return conn

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in range(2):
            conn = self._conn()
            try:
                conn.request(method, self.base + path, body=data, headers=headers)
                resp = conn.getresponse()
                return resp.status, dict(resp.getheaders()), resp.read()
            except (http.client.HTTPException, ConnectionError, OSError):
                conn.close()
                self.local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def random_haiku(i: int) -> dict:
    return {
        "username": f"poet{i % 100}",
        "first": random.choice(KIGO),
        "second": random.choice(KIGO),
        "third": random.choice(KIGO),
    }


def post_many(api: ApiClient, n: int, concurrency: int, max_retries: int = 8) -> dict:
    counts = {"succeeded": 0, "failed": 0, "throttled_retries": 0}
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def one(i: int) -> None:
        status = 0
        for attempt in range(max_retries + 1):
            try:
                status, _, _ = api.request("POST", "/haiku", random_haiku(i))
            except OSError:
                status = 0
            if status != 429:
                break
            with lock:
                counts["throttled_retries"] += 1
            time.sleep(min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.0))
        with lock:
            counts["succeeded" if status == 201 else "failed"] += 1
            statuses[status] = statuses.get(status, 0) + 1

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, range(n)))
    seconds = time.perf_counter() - started
    return dict(
        counts,
        requested=n,
        concurrency=concurrency,
        seconds=round(seconds, 2),
        posts_per_second=round(n / seconds, 1) if seconds else None,
        statuses=statuses,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kumolab-bashoutter", description=__doc__.splitlines()[0])
    parser.add_argument("--api-url", help="stage URL, e.g. https://abc.execute-api.ap-northeast-1.amazonaws.com/prod")
    parser.add_argument("--table", help="DynamoDB table name")
    sub = parser.add_subparsers(dest="command", required=True)
    p_post = sub.add_parser("post_many", help="post N random haiku concurrently")
    p_post.add_argument("n", type=int)
    p_post.add_argument("--concurrency", type=int, default=32)
    sub.add_parser("list", help="print the haiku (newest first)")
    sub.add_parser("clear_database", help="delete every haiku")
    args = parser.parse_args(argv)

    out = {} if (args.api_url and args.table) else outputs("bashoutter")
    if args.command == "clear_database":
        table = aws_resource("dynamodb", out).Table(args.table or out["table_name"])
        print(f"deleted {clear(table)} haiku from {table.name}")
        return 0
    api = ApiClient(args.api_url or out["api_url"])
    if args.command == "list":
        status, _, body = api.request("GET", "/haiku")
        if status != 200:
            print(f"GET /haiku answered {status}: {body[:300]!r}", file=sys.stderr)
            return 1
        for haiku in json.loads(body):
            print(
                f"{haiku['created_at']}  {haiku['username']}: {haiku['first']} / {haiku['second']} / "
                f"{haiku['third']}  ({haiku['likes']} likes)"
            )
        return 0
    if args.n < 1 or args.concurrency < 1:
        parser.error("N and --concurrency must be at least 1")
    result = post_many(api, args.n, args.concurrency)
    print(json.dumps(result, indent=2))
    return 0 if result["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
