"""The four Bashoutter handlers, called with API Gateway proxy events, against the emulator's DynamoDB."""

from __future__ import annotations

import base64
import importlib
import json
import sys
import uuid

import pytest

from kumolab.paths import REPO_ROOT

HANDLER_DIR = REPO_ROOT / "files" / "lambda" / "bashoutter"


@pytest.fixture(scope="module")
def handlers(emulator, monkeypatch_module):
    from kumolab.local import settings
    from kumolab.local.runtime.aws import AwsConfig
    from support.runtime_fixtures import create_haiku_table

    table = f"unit-haiku-{uuid.uuid4().hex[:8]}"
    create_haiku_table(AwsConfig.from_environment(region="ap-northeast-1"), table)
    monkeypatch_module.setenv("TABLE_NAME", table)
    # What the local runtime gives a handler: the emulator's profile (the handlers' boto3 reads it).
    monkeypatch_module.setenv("AWS_PROFILE", settings.profile_name())
    monkeypatch_module.setenv("AWS_REGION", "ap-northeast-1")
    monkeypatch_module.syspath_prepend(str(HANDLER_DIR))
    mods = {name: importlib.import_module(name) for name in ("haiku_common", "get_haiku", "post_haiku", "patch_haiku", "delete_haiku")}
    mods["haiku_common"]._TABLES.clear()
    yield mods
    for name in mods:
        sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def event(method="GET", body=None, item_id=None, query=None, b64=False):
    raw = body if isinstance(body, str) or body is None else json.dumps(body)
    if b64 and raw is not None:
        raw = base64.b64encode(raw.encode()).decode()
    return {
        "resource": "/haiku/{item_id}" if item_id is not None else "/haiku",
        "path": f"/haiku/{item_id}" if item_id is not None else "/haiku",
        "httpMethod": method, "headers": {"Content-Type": "application/json"},
        "queryStringParameters": query, "pathParameters": {"item_id": item_id} if item_id is not None else None,
        "body": raw, "isBase64Encoded": b64, "requestContext": {"stage": "prod"},
    }


def call(handlers, name, ev):
    resp = handlers[name].handler(ev, None)
    assert resp["headers"]["Access-Control-Allow-Origin"] == "*", "CORS header missing"
    body = json.loads(resp["body"]) if resp["body"] else None
    return resp["statusCode"], body, resp["headers"]


HAIKU = {"username": "basho", "first": "furuike ya", "second": "kawazu tobikomu", "third": "mizu no oto"}


def test_post_returns_201_with_the_created_item(handlers):
    status, body, _ = call(handlers, "post_haiku", event("POST", HAIKU))
    assert status == 201
    assert {k: body[k] for k in HAIKU} == HAIKU
    assert body["likes"] == 0 and isinstance(body["likes"], int)
    uuid.UUID(body["item_id"])
    assert body["created_at"].endswith("Z") and "T" in body["created_at"]


def test_post_accepts_a_base64_body(handlers):
    status, body, _ = call(handlers, "post_haiku", event("POST", HAIKU, b64=True))
    assert status == 201 and body["username"] == "basho"


@pytest.mark.parametrize("body, field, words", [
    (None, "body", "missing"),
    ("{not json", "body", "not valid JSON"),
    ("[1, 2]", "body", "JSON object"),
    ({k: v for k, v in HAIKU.items() if k != "second"}, "second", "missing"),
    (dict(HAIKU, first="   "), "first", "empty"),
    (dict(HAIKU, third=5), "third", "must be a string"),
    (dict(HAIKU, username=None), "username", "must be a string"),
    (dict(HAIKU, username="x" * 33), "username", "too long"),
    (dict(HAIKU, first="x" * 65), "first", "too long"),
    (dict(HAIKU, likes=100), "likes", "unexpected"),
    (dict(HAIKU, first="x" * 5000), "body", "too large"),
])
def test_post_validation_is_400_naming_the_field(handlers, body, field, words):
    status, out, _ = call(handlers, "post_haiku", event("POST", body))
    assert status == 400
    assert out["field"] == field
    assert words in out["message"]


def test_get_lists_newest_first_with_integer_likes(handlers):
    ids = [call(handlers, "post_haiku", event("POST", dict(HAIKU, username=f"u{i}")))[1]["item_id"] for i in range(3)]
    call(handlers, "patch_haiku", event("PATCH", item_id=ids[0]))
    status, items, headers = call(handlers, "get_haiku", event())
    assert status == 200 and isinstance(items, list)
    stamps = [(h["created_at"], h["item_id"]) for h in items]
    assert stamps == sorted(stamps, reverse=True)
    by_id = {h["item_id"]: h for h in items}
    assert by_id[ids[0]]["likes"] == 1 and type(by_id[ids[0]]["likes"]) is int
    assert "X-Next-Token" not in headers


def test_get_pages_with_limit_and_next_token(handlers):
    _, everything, _ = call(handlers, "get_haiku", event())
    seen, token = [], None
    while True:
        query = {"limit": "2"} | ({"next_token": token} if token else {})
        status, page, headers = call(handlers, "get_haiku", event(query=query))
        assert status == 200 and len(page) <= 2
        seen.extend(h["item_id"] for h in page)
        token = headers.get("X-Next-Token")
        if not token:
            break
    assert seen == [h["item_id"] for h in everything]


@pytest.mark.parametrize("query, field", [({"limit": "0"}, "limit"), ({"limit": "1001"}, "limit"), ({"limit": "x"}, "limit"),
                                          ({"next_token": "garbage!"}, "next_token")])
def test_get_rejects_bad_paging_parameters(handlers, query, field):
    status, out, _ = call(handlers, "get_haiku", event(query=query))
    assert (status, out["field"]) == (400, field)


def test_patch_adds_one_like_and_returns_the_count(handlers):
    item_id = call(handlers, "post_haiku", event("POST", HAIKU))[1]["item_id"]
    counts = [call(handlers, "patch_haiku", event("PATCH", item_id=item_id))[1]["likes"] for _ in range(3)]
    assert counts == [1, 2, 3]


def test_patch_unknown_id_is_404(handlers):
    status, out, _ = call(handlers, "patch_haiku", event("PATCH", item_id=str(uuid.uuid4())))
    assert status == 404 and out["field"] == "item_id"


@pytest.mark.parametrize("name", ["patch_haiku", "delete_haiku"])
def test_malformed_id_is_400(handlers, name):
    status, out, _ = call(handlers, name, event("PATCH", item_id="../etc/passwd"))
    assert (status, out["field"]) == (400, "item_id")


def test_delete_is_204_and_the_haiku_is_gone(handlers):
    item_id = call(handlers, "post_haiku", event("POST", HAIKU))[1]["item_id"]
    status, body, _ = call(handlers, "delete_haiku", event("DELETE", item_id=item_id))
    assert status == 204 and body is None
    assert call(handlers, "patch_haiku", event("PATCH", item_id=item_id))[0] == 404
    assert item_id not in [h["item_id"] for h in call(handlers, "get_haiku", event())[1]]


def test_plain_get_is_capped_at_1000_and_continues_with_the_token(handlers):
    import boto3

    tbl = boto3.resource("dynamodb").Table(handlers["haiku_common"].os.environ["TABLE_NAME"])
    with tbl.batch_writer() as batch:
        for i in range(1005):
            batch.put_item(Item=dict(HAIKU, item_id=str(uuid.uuid4()), likes=0, created_at=f"2000-01-01T00:00:{i % 60:02d}.{i:03d}Z"))
    all_ids = set(handlers["get_haiku"].scan_all(tbl) and [i["item_id"] for i in handlers["get_haiku"].scan_all(tbl)])
    assert len(all_ids) > 1005
    status, first, headers = call(handlers, "get_haiku", event())
    assert status == 200 and len(first) == 1000 and headers.get("X-Next-Token")
    _, rest, headers2 = call(handlers, "get_haiku", event(query={"next_token": headers["X-Next-Token"]}))
    assert "X-Next-Token" not in headers2
    first_ids, rest_ids = [h["item_id"] for h in first], [h["item_id"] for h in rest]
    assert not set(first_ids) & set(rest_ids)
    assert set(first_ids) | set(rest_ids) == all_ids
    assert min(h["created_at"] for h in first) >= max(h["created_at"] for h in rest)


def test_missing_table_name_fails_like_aws(handlers, monkeypatch):
    monkeypatch.delenv("TABLE_NAME")
    handlers["haiku_common"]._TABLES.clear()
    with pytest.raises(KeyError, match="TABLE_NAME"):
        handlers["get_haiku"].handler(event(), None)
