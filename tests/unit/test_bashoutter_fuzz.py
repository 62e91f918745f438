"""Fuzz the four Bashoutter handlers: no input gives a 5xx, every 4xx is a JSON error (security review L1, issue 13).

Two generators drive the handlers in-process, against the emulator's DynamoDB (no HTTP server, so it is cheap;
tests/integration/test_bashoutter_contract.py runs schemathesis over HTTP through the local stage):

- schemathesis: positive and negative cases generated from files/api/bashoutter.openapi.yaml for each Lambda-backed
  operation, turned into API Gateway proxy events as the stage builds them;
- hypothesis: what the spec cannot express - every code point including lone surrogates, controls and bidi
  overrides, huge and negative lengths (bodies, Content-Length headers, ``limit``), odd query values, odd ids and
  malformed events (pathParameters or queryStringParameters of the wrong type, bodies that are not strings, ...).

For every case: a proxy response, status < 500 and documented for the operation, the CORS header, a body that is
valid UTF-8; for a 4xx, a JSON object with a string ``message``. The numbers (cases run, status counts) are printed
and written to test-artifacts/bashoutter_fuzz.json.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import sys
import time
import uuid
from collections import Counter

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kumolab.paths import REPO_ROOT

HANDLER_DIR = REPO_ROOT / "files" / "lambda" / "bashoutter"
OPENAPI = REPO_ROOT / "files" / "api" / "bashoutter.openapi.yaml"
ARTIFACT = REPO_ROOT / "test-artifacts" / "bashoutter_fuzz.json"
#: Lambda-backed operations (the OPTIONS preflights are mock integrations: no handler).
OPERATIONS = {
    "get_haiku": ("/haiku", "get"),
    "post_haiku": ("/haiku", "post"),
    "patch_haiku": ("/haiku/{item_id}", "patch"),
    "delete_haiku": ("/haiku/{item_id}", "delete"),
}
#: Items that exist, so that generated PATCH/DELETE also reach the 200/204 paths.
KNOWN_IDS = [f"fuzz-known-{i}" for i in range(8)] + [uuid.UUID(int=i + 1).hex for i in range(4)]
#: Cases per generator; KUMOLAB_FUZZ_SCALE=10 runs ten times as many (the defaults keep the file well under 60 s).
SCALE = float(os.environ.get("KUMOLAB_FUZZ_SCALE", "1"))
SCHEMATHESIS_EXAMPLES = max(1, int(25 * SCALE))  # per operation and generation mode: 4 x 2 x 25 = 200
HYPOTHESIS_EXAMPLES = max(1, int(300 * SCALE))
FUZZ_SETTINGS = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "print_blob": True,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
}

SPEC = yaml.safe_load(OPENAPI.read_text())
DOCUMENTED = {
    name: {int(code) for code in SPEC["paths"][path][method]["responses"]}
    for name, (path, method) in OPERATIONS.items()
}
STATS: dict[str, Counter] = {}
SECONDS: Counter = Counter()  # time spent in the handlers, per generator


@pytest.fixture(scope="module")
def handlers(emulator, monkeypatch_module):
    from support.runtime_fixtures import create_haiku_table

    from kumolab.local import settings
    from kumolab.local.runtime.aws import AwsConfig

    aws = AwsConfig.from_environment(region="ap-northeast-1")
    table = f"fuzz-haiku-{uuid.uuid4().hex[:8]}"
    create_haiku_table(aws, table)
    monkeypatch_module.setenv("TABLE_NAME", table)
    # What the local runtime gives a handler: the emulator's profile (the handlers' boto3 reads it).
    monkeypatch_module.setenv("AWS_PROFILE", settings.profile_name())
    monkeypatch_module.setenv("AWS_REGION", "ap-northeast-1")
    monkeypatch_module.syspath_prepend(str(HANDLER_DIR))
    for name in ("haiku_common", *OPERATIONS):
        sys.modules.pop(name, None)  # a fresh copy: another test module may have imported them with its own table
    mods = {name: importlib.import_module(name) for name in ("haiku_common", *OPERATIONS)}
    mods["haiku_common"]._TABLES.clear()
    # boto3's default session reads the AWS config file once; another test in this worker may have made it
    # while AWS_CONFIG_FILE named a private file without the emulator's profile.
    import boto3

    boto3.DEFAULT_SESSION = None
    yield mods
    for name in mods:
        sys.modules.pop(name, None)
    aws.client("dynamodb").delete_table(TableName=table)


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture
def known_items(handlers):
    """(Re)write the KNOWN_IDS items; generated DELETEs remove some of them."""
    tbl = handlers["haiku_common"].table()
    with tbl.batch_writer() as batch:
        for i, item_id in enumerate(KNOWN_IDS):
            batch.put_item(
                Item={
                    "item_id": item_id,
                    "username": "fuzz",
                    "first": "a",
                    "second": "b",
                    "third": "c",
                    "likes": i,
                    "created_at": f"2020-01-01T00:00:{i:02d}.000Z",
                }
            )


def check(name: str, resp) -> int:
    """The invariants; returns the status."""
    assert isinstance(resp, dict) and type(resp.get("statusCode")) is int, resp
    status = resp["statusCode"]
    assert status < 500, resp
    assert status in DOCUMENTED[name], f"{status} is not documented for {name}: {resp}"
    assert resp["headers"]["Access-Control-Allow-Origin"] == "*"
    assert isinstance(resp["body"], str)
    resp["body"].encode("utf-8")  # no lone surrogates: API Gateway must be able to send it
    if status >= 400:
        assert resp["headers"]["Content-Type"] == "application/json"
        out = json.loads(resp["body"])
        assert isinstance(out, dict) and isinstance(out.get("message"), str) and out["message"], resp
    return status


def run_case(generator: str, handlers: dict, name: str, event) -> None:
    started = time.perf_counter()
    resp = handlers[name].handler(event, None)
    SECONDS[generator] += time.perf_counter() - started
    STATS.setdefault(generator, Counter())[f"{name} {check(name, resp)}"] += 1


def report(capsys, generator: str) -> None:
    counts = STATS.get(generator, Counter())
    by_status = Counter()
    for key, n in counts.items():
        by_status[key.split()[1]] += n
    line = (
        f"bashoutter fuzz ({generator}): {sum(counts.values())} cases, statuses {dict(sorted(by_status.items()))}, "
        f"per handler {dict(sorted(counts.items()))}, {SECONDS[generator]:.1f} s in the handlers"
    )
    with capsys.disabled():
        print(f"\n{line}")
    ARTIFACT.parent.mkdir(exist_ok=True)
    data = json.loads(ARTIFACT.read_text()) if ARTIFACT.exists() else {}
    data[generator] = {
        "cases": sum(counts.values()),
        "statuses": dict(by_status),
        "per_handler": dict(counts),
        "handler_seconds": round(SECONDS[generator], 2),
        "at_least_500": sum(n for key, n in counts.items() if int(key.split()[1]) >= 500),
    }
    ARTIFACT.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


# -- schemathesis ---------------------------------------------------------------------------------------------


def _wire(value) -> str:
    """A query value as it arrives in queryStringParameters (always a string)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def event_from_case(case) -> dict:
    """The proxy event the stage builds for a schemathesis case (as kumolab.local.runtime.apigateway does)."""
    from schemathesis.core import NotSet

    query: dict[str, str] = {}
    for key, value in (case.query or {}).items():
        values = value if isinstance(value, list) else [value]
        values = [v for v in values if v is not None]
        if values:
            query[str(key)] = _wire(values[-1])  # API Gateway keeps the last value of a repeated parameter
    body, is_b64 = None, False
    raw = case.body
    if isinstance(raw, (bytes, bytearray)):  # the stage passes UTF-8 as text, anything else base64-encoded
        try:
            body = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            body, is_b64 = base64.b64encode(raw).decode(), True
    elif isinstance(raw, str):
        body = raw
    elif raw is not None and not isinstance(raw, NotSet):
        body = json.dumps(raw, default=lambda o: o.decode("latin-1") if isinstance(o, bytes) else str(o))
    path = {k: _wire(v) for k, v in (case.path_parameters or {}).items()}
    return {
        "resource": case.path,
        "path": case.formatted_path if hasattr(case, "formatted_path") else case.path,
        "httpMethod": case.method.upper(),
        "headers": {
            "Content-Type": case.media_type or "application/json",
            **{k: _wire(v) for k, v in (case.headers or {}).items()},
        },
        "queryStringParameters": query or None,
        "pathParameters": path or None,
        "body": body,
        "isBase64Encoded": is_b64,
        "requestContext": {"stage": "prod"},
    }


def test_schemathesis_cases_from_the_openapi_file_never_get_a_5xx(handlers, known_items, capsys):
    import schemathesis

    STATS.pop("schemathesis", None)

    def fuzz(name: str, strategy):
        @settings(max_examples=SCHEMATHESIS_EXAMPLES, **FUZZ_SETTINGS)
        @given(case=strategy)
        def run(case):
            run_case("schemathesis", handlers, name, event_from_case(case))

        run()

    schema = schemathesis.openapi.from_path(str(OPENAPI))
    for name, (path, method) in OPERATIONS.items():
        operation = schema[path][method.upper()]
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            fuzz(name, operation.as_strategy(generation_mode=mode))
    report(capsys, "schemathesis")
    total = sum(STATS["schemathesis"].values())
    assert total >= 8 * SCHEMATHESIS_EXAMPLES * 0.9, f"only {total} schemathesis cases ran"


# -- hypothesis -----------------------------------------------------------------------------------------------

NASTY = st.sampled_from(
    [
        "\ud800",
        "\udbff",
        "\udc00",
        "\udfff",
        "a\ud800b",
        "\x00",
        "\x1b",
        "\x7f",
        "\x85",
        "\n",
        "\r\n",
        "\t",
        "\u202a",
        "\u202e",
        "\u2066",
        "\u2069",
        "\u200b",
        "\u200d",
        "\ufeff",
        "\u2028",
        "\u2029",
        "\U000e0041",
        "²",
        "١٠",
        "５",
        "é",
        "e\u0301",
        "\U0001f600",
        "\U0001f468\u200d\U0001f469",
        "\uffff",
        "\U0010ffff",
        '"',
        "\\",
        "<script>",
        "%",
        "%0A",
        "'",
        "../",
        "$",
        "{}",
        "[]",
        "null",
    ]
)
ANY_CHAR = st.characters(exclude_categories=())  # every code point, lone surrogates included
TEXT = st.lists(st.one_of(ANY_CHAR, NASTY), max_size=24).map("".join)
HUGE = st.tuples(
    st.sampled_from(["x", "é", "\ud800", "\U0001f600", " ", "9", "["]),
    st.sampled_from([33, 63, 64, 65, 129, 257, 513, 4095, 4096, 4097, 16384, 16385, 300_000]),
).map(lambda t: t[0] * t[1])
NUMBER = st.one_of(
    st.integers(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([-1, 0, 1, 999, 1000, 1001, 9999, 10_000, 2**31, 2**63, -(2**63), 10**100]),
).map(str)
ODD_QUERY_VALUE = st.sampled_from(
    [
        "",
        " ",
        "²",
        "١٠",
        "1e3",
        "0x10",
        "1.0",
        "NaN",
        "Infinity",
        "null",
        "[]",
        "-0",
        "+1",
        "0001",
        "1\n",
        "1 ",
        "\ud800",
        "1\x00",
        "true",
        "%31",
    ]
)
QUERY_VALUE = st.one_of(TEXT, NUMBER, ODD_QUERY_VALUE, HUGE)
QUERY = st.one_of(
    st.none(),
    st.dictionaries(
        st.one_of(st.sampled_from(["limit", "next_token", "Limit", "limit "]), TEXT), QUERY_VALUE, max_size=4
    ),
    st.fixed_dictionaries({"limit": QUERY_VALUE}),
    st.fixed_dictionaries(
        {
            "next_token": st.one_of(
                QUERY_VALUE, st.binary(max_size=600).map(lambda b: base64.urlsafe_b64encode(b).decode())
            )
        }
    ),
    st.sampled_from([[], ["limit", "1"], "limit=1", 5, {"limit": 5}, {"limit": None}, {"limit": ["1"]}, {5: "5"}]),
)
ITEM_ID = st.one_of(
    st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z"),
    st.sampled_from(KNOWN_IDS),
    st.uuids().map(str),
    st.uuids().map(lambda u: u.hex),
    TEXT,
    HUGE,
    st.sampled_from(["", "a" * 64, "a" * 65, "x\n"]),
    st.integers(),
    st.none(),
    st.lists(st.text(max_size=3), max_size=2),
)
PATH = st.one_of(
    st.none(),
    st.fixed_dictionaries({"item_id": ITEM_ID}),
    st.dictionaries(TEXT, TEXT, max_size=2),
    st.sampled_from(["x", [], 5, {"item_id": {"S": "x"}}]),
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
PLAIN = st.text(st.characters(categories=["L", "M", "N", "P", "S", "Zs"]), min_size=1, max_size=70)  # mostly valid
FIELD_VALUE = st.one_of(PLAIN, TEXT, HUGE, JSON, st.sampled_from(["furuike ya", "  ", "蛙飛び込む"]))
HAIKU_LIKE = st.fixed_dictionaries(
    {}, optional={name: FIELD_VALUE for name in ("username", "first", "second", "third")}
)
OBJECT = st.one_of(
    HAIKU_LIKE,
    st.tuples(HAIKU_LIKE, st.dictionaries(TEXT, FIELD_VALUE, max_size=2)).map(lambda t: {**t[0], **t[1]}),
    JSON,
)
# json.dumps with ensure_ascii=False keeps a lone surrogate raw in the body string; with True it becomes "\ud800"
ENCODED = st.tuples(OBJECT, st.booleans()).map(lambda t: json.dumps(t[0], ensure_ascii=t[1]))
BODY = st.one_of(
    st.none(),
    ENCODED,
    TEXT,
    HUGE,
    st.integers(1, 3000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 1500).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.integers(),
    JSON,
)
B64_BODY = st.one_of(st.binary(max_size=300), ENCODED.map(lambda s: s.encode("utf-8", "surrogatepass"))).map(
    lambda b: base64.b64encode(b).decode()
)
HEADERS = st.one_of(
    st.none(),
    st.sampled_from(["x", []]),
    st.dictionaries(
        st.one_of(
            st.sampled_from(["Content-Length", "content-length", "Content-Type", "Host", "X-Forwarded-For"]), TEXT
        ),
        st.one_of(NUMBER, TEXT, HUGE),
        max_size=4,
    ),
)
EVENT = st.one_of(
    st.fixed_dictionaries(
        {"httpMethod": st.sampled_from(["GET", "POST", "PATCH", "DELETE"])},
        optional={
            "headers": HEADERS,
            "queryStringParameters": QUERY,
            "pathParameters": PATH,
            "body": BODY,
            "isBase64Encoded": st.one_of(st.booleans(), st.sampled_from([None, "true", 1, 0])),
        },
    ),
    st.fixed_dictionaries(
        {"httpMethod": st.just("POST"), "body": B64_BODY, "isBase64Encoded": st.just(True), "headers": HEADERS}
    ),
    st.fixed_dictionaries(
        {
            "httpMethod": st.just("POST"),
            "headers": HEADERS,
            "body": st.fixed_dictionaries(
                {name: st.one_of(PLAIN, PLAIN, TEXT) for name in ("username", "first", "second", "third")}
            ).map(json.dumps),
        }
    ),
    st.sampled_from([None, [], "x", 5, {}, {"body": None}]),
)


def test_hypothesis_events_with_hostile_input_never_get_a_5xx(handlers, known_items, capsys):
    STATS.pop("hypothesis", None)

    @settings(max_examples=HYPOTHESIS_EXAMPLES, **FUZZ_SETTINGS)
    @given(name=st.sampled_from(list(OPERATIONS)), event=EVENT)
    def run(name, event):
        run_case("hypothesis", handlers, name, event)

    run()
    report(capsys, "hypothesis")
    total = sum(STATS["hypothesis"].values())
    assert total >= HYPOTHESIS_EXAMPLES * 0.9, f"only {total} hypothesis cases ran"
