"""kumolab-serverless: the Lab 4 client (mirrors the textbook's scripts).

    kumolab-serverless invoke                       # one synchronous invocation, prints the payload
    kumolab-serverless invoke_many 20 --concurrency 10   # N at once; reports how many ran concurrently
    kumolab-serverless write 3000                   # N random people, batch writes
    kumolab-serverless query_under 20               # people with age < 20 (add --inclusive for <=)
    kumolab-serverless clear                        # delete every item (paginated)

Names and endpoints come from results/<owner>/serverless/outputs.json (written by playbooks/serverless.yml).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from kumolab.serverless.outputs import aws_client, aws_resource, outputs

FIRST_NAMES = [
    "Haruto",
    "Yui",
    "Sota",
    "Hina",
    "Yuto",
    "Mei",
    "Riku",
    "Aoi",
    "Kaito",
    "Sakura",
    "Emma",
    "Liam",
    "Olivia",
    "Noah",
    "Ava",
    "Lucas",
    "Mia",
    "Leo",
    "Sofia",
    "Ren",
]
LAST_NAMES = [
    "Sato",
    "Suzuki",
    "Takahashi",
    "Tanaka",
    "Watanabe",
    "Ito",
    "Yamamoto",
    "Nakamura",
    "Kobayashi",
    "Kato",
    "Smith",
    "Garcia",
    "Muller",
    "Rossi",
    "Kim",
    "Nguyen",
    "Silva",
    "Dubois",
]


def invoke_once(client, function: str) -> dict:
    resp = client.invoke(FunctionName=function, InvocationType="RequestResponse", Payload=b"{}")
    payload = json.loads(resp["Payload"].read() or b"null")
    if resp.get("FunctionError"):
        raise RuntimeError(f"{function} failed: {payload}")
    return payload


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals that contain one point in time."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    best = current = 0
    for _, delta in events:
        current += delta
        best = max(best, current)
    return best


def invoke_many(client, function: str, n: int, concurrency: int) -> dict:
    started = time.time()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(lambda _: invoke_once(client, function), range(n)))
    intervals = [(r["started_at"], r["finished_at"]) for r in results]
    return {
        "invocations": n,
        "concurrency_requested": concurrency,
        "max_concurrently_running": max_overlap(intervals),
        "wall_seconds": round(time.time() - started, 2),
        "sum_of_durations_seconds": round(sum(e - s for s, e in intervals), 2),
        "sushi": sorted({r["sushi"] for r in results}),
    }


def random_person() -> dict:
    return {
        "item_id": str(uuid.uuid4()),
        "first_name": random.choice(FIRST_NAMES),
        "last_name": random.choice(LAST_NAMES),
        "age": random.randint(1, 50),
    }


def write_people(table, n: int) -> int:
    with table.batch_writer() as batch:  # groups puts into BatchWriteItem calls of 25, retrying unprocessed items
        for _ in range(n):
            batch.put_item(Item=random_person())
    return n


def query_under(table, age: int, inclusive: bool = False) -> list[dict]:
    """Every person younger than ``age`` (``age < bound``; ``<=`` with inclusive), following every page.

    A Scan returns at most 1 MB per call; the textbook read only the first page. We follow
    LastEvaluatedKey until there is none. (A Scan with a filter still reads the whole table - for
    frequent queries by age, add a GSI; for a lab-sized table this is fine.)
    """
    from boto3.dynamodb.conditions import Attr

    condition = Attr("age").lte(age) if inclusive else Attr("age").lt(age)
    items, kwargs = [], {"FilterExpression": condition}
    while True:
        page = table.scan(**kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def clear(table, key: str = "item_id") -> int:
    deleted, kwargs = 0, {"ProjectionExpression": "#k", "ExpressionAttributeNames": {"#k": key}}
    with table.batch_writer() as batch:
        while True:
            page = table.scan(**kwargs)
            for item in page.get("Items", []):
                batch.delete_item(Key={key: item[key]})
                deleted += 1
            if "LastEvaluatedKey" not in page:
                return deleted
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _table(out: dict, name: str | None):
    return aws_resource("dynamodb", out).Table(name or out["table_name"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kumolab-serverless", description=__doc__.splitlines()[0])
    parser.add_argument("--function", help="function name (default: from outputs.json)")
    parser.add_argument("--table", help="table name (default: from outputs.json)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("invoke", help="invoke once, synchronously, and print the payload")
    p_many = sub.add_parser("invoke_many", help="invoke N times concurrently")
    p_many.add_argument("n", type=int)
    p_many.add_argument("--concurrency", type=int, default=10)
    p_write = sub.add_parser("write", help="bulk-write N random people")
    p_write.add_argument("n", type=int)
    p_query = sub.add_parser("query_under", help="people younger than AGE (age < AGE)")
    p_query.add_argument("age", type=int)
    p_query.add_argument("--inclusive", action="store_true", help="use age <= AGE instead")
    p_query.add_argument("--show", type=int, default=5, help="print this many of them")
    sub.add_parser("clear", help="delete every item of the table")
    args = parser.parse_args(argv)

    out = outputs("serverless") if not (args.function and args.table) else {}
    try:
        if args.command in ("invoke", "invoke_many"):
            client = aws_client("lambda", out, endpoint_key="lambda_endpoint_url")
            function = args.function or out["function_name"]
            if args.command == "invoke":
                print(json.dumps(invoke_once(client, function), indent=2))
            else:
                if args.n < 1 or args.concurrency < 1:
                    parser.error("N and --concurrency must be at least 1")
                print(json.dumps(invoke_many(client, function, args.n, args.concurrency), indent=2))
            return 0
        table = _table(out, args.table)
        if args.command == "write":
            started = time.time()
            write_people(table, args.n)
            print(f"wrote {args.n} people to {table.name} in {time.time() - started:.1f} s")
        elif args.command == "query_under":
            people = query_under(table, args.age, args.inclusive)
            op = "<=" if args.inclusive else "<"
            print(f"{len(people)} people with age {op} {args.age} (scan followed every page)")
            for person in people[: args.show]:
                print(f"  {person['first_name']} {person['last_name']}, {int(person['age'])}")
        else:
            print(f"deleted {clear(table)} items from {table.name}")
    except RuntimeError as exc:
        print(f"kumolab-serverless: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
