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
    from support.runtime_fixtures import create_haiku_table

    from kumolab.local import settings
    from kumolab.local.runtime.aws import AwsConfig

    table = f"unit-haiku-{uuid.uuid4().hex[:8]}"
    create_haiku_table(AwsConfig.from_environment(region="ap-northeast-1"), table)
    monkeypatch_module.setenv("TABLE_NAME", table)
    # What the local runtime gives a handler: the emulator's profile (the handlers' boto3 reads it).
    monkeypatch_module.setenv("AWS_PROFILE", settings.profile_name())
    monkeypatch_module.setenv("AWS_REGION", "ap-northeast-1")
    monkeypatch_module.syspath_prepend(str(HANDLER_DIR))
    mods = {
        name: importlib.import_module(name)
        for name in ("haiku_common", "get_haiku", "post_haiku", "patch_haiku", "delete_haiku")
    }
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
        "httpMethod": method,
        "headers": {"Content-Type": "application/json"},
        "queryStringParameters": query,
        "pathParameters": {"item_id": item_id} if item_id is not None else None,
        "body": raw,
        "isBase64Encoded": b64,
        "requestContext": {"stage": "prod"},
    }


def call(handlers, name, ev):
    resp = handlers[name].handler(ev, None)
    assert resp["headers"]["Access-Control-Allow-Origin"] == "*", "CORS header missing"
    resp["body"].encode("utf-8")  # what API Gateway sends must be valid UTF-8
    body = json.loads(resp["body"]) if resp["body"] else None
    return resp["statusCode"], body, resp["headers"]


def put_raw(handlers, item: dict) -> None:
    """Write an item straight into the table, as another tool (the textbook's backend) would."""
    import boto3

    boto3.resource("dynamodb").Table(handlers["haiku_common"].os.environ["TABLE_NAME"]).put_item(Item=item)


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


@pytest.mark.parametrize(
    "body, field, words",
    [
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
        ("x" * 20000, "body", "too large"),
        ("[" * 2040 + "]" * 2040, "body", "not valid JSON"),  # 4 KB of nesting: json.loads raises RecursionError
        ('{"username": "\\ud800", "first": "a", "second": "b", "third": "c"}', "username", "lone surrogate"),
        ('{"username": "ba\\udfffsho", "first": "a", "second": "b", "third": "c"}', "username", "lone surrogate"),
        ('{"username": "basho", "first": "a", "second": "b", "third": "\ud800"}', "body", "not valid JSON"),
        (dict(HAIKU, username="bash\x00o"), "username", "U+0000"),
        (dict(HAIKU, username="\u202eohsab"), "username", "U+202E"),
        (dict(HAIKU, first="furu\u2066ike"), "first", "U+2066"),
        (dict(HAIKU, second="kawazu\ntobikomu"), "second", "U+000A"),
        (dict(HAIKU, second="kawazu\u2028tobikomu"), "second", "U+2028"),
        (dict(HAIKU, third="\ufeffmizu"), "third", "U+FEFF"),
        (dict(HAIKU, third="mizu\U000e0041"), "third", "U+E0041"),
        (dict(HAIKU, third="mizu\x85"), "third", "U+0085"),
        (dict(HAIKU, **{"\ud800": "x"}), "body", "unexpected field"),
        (dict(HAIKU, **{"<img src=x>": "x"}), "body", "unexpected field"),
    ],
)
def test_post_validation_is_400_naming_the_field(handlers, body, field, words):
    status, out, _ = call(handlers, "post_haiku", event("POST", body))
    assert status == 400
    assert out["field"] == field
    assert words in out["message"]


def test_post_keeps_emoji_sequences_and_normalises_to_nfc(handlers):
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # ZWJ sequence
    status, body, _ = call(handlers, "post_haiku", event("POST", dict(HAIKU, username=family, first="cafe\u0301 ")))
    assert status == 201 and body["username"] == family and body["first"] == "caf\u00e9"


def test_post_with_base64_of_invalid_utf8_is_400(handlers):
    ev = event("POST", HAIKU)
    ev["body"], ev["isBase64Encoded"] = base64.b64encode(b"\xff\xfe{}").decode(), True
    status, out, _ = call(handlers, "post_haiku", ev)
    assert (status, out["field"]) == (400, "body")


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


DEEP_TOKEN = base64.urlsafe_b64encode(b"[" * 300 + b"]" * 300).decode()


@pytest.mark.parametrize(
    "query, field",
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "x"}, "limit"),
        # str.isdigit() and int() accept these; the API does not (security review L1: "²" was a 500)
        ({"limit": "²"}, "limit"),
        ({"limit": "١٠"}, "limit"),
        ({"limit": "５"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "+5"}, "limit"),
        ({"limit": " 5"}, "limit"),
        ({"limit": "5\n"}, "limit"),
        ({"limit": "1e3"}, "limit"),
        ({"limit": "0x10"}, "limit"),
        ({"limit": ""}, "limit"),
        ({"limit": "9" * 400}, "limit"),
        ({"limit": "-" + "9" * 5000}, "limit"),
        ({"limit": "\ud800"}, "limit"),
        ({"next_token": "garbage!"}, "next_token"),
        ({"next_token": ""}, "next_token"),
        ({"next_token": "\ud800"}, "next_token"),
        ({"next_token": "QQ" * 1000}, "next_token"),
        ({"next_token": DEEP_TOKEN}, "next_token"),
        ({"next_token": base64.urlsafe_b64encode(b'["a", 1]').decode()}, "next_token"),
    ],
)
def test_get_rejects_bad_paging_parameters(handlers, query, field):
    status, out, _ = call(handlers, "get_haiku", event(query=query))
    assert (status, out["field"]) == (400, field)


@pytest.mark.parametrize("query", ["limit=5", ["limit", "5"], 5, {"limit": 5}, {"limit": None}, {5: "5"}], ids=repr)
def test_get_rejects_a_query_that_is_not_strings(handlers, query):
    status, out, _ = call(handlers, "get_haiku", event(query=query))
    assert (status, out["field"]) == (400, "query")


def test_get_accepts_leading_zeros_and_ignores_unknown_parameters(handlers):
    status, items, _ = call(handlers, "get_haiku", event(query={"limit": "0001", "utm_source": "\u202e", "": ""}))
    assert status == 200 and len(items) <= 1


def test_get_scans_in_bounded_pages_and_stops_at_the_cap(handlers, monkeypatch):
    for i in range(30):
        put_raw(
            handlers,
            dict(HAIKU, item_id=f"cap{i:02d}{uuid.uuid4().hex[:6]}", likes=0, created_at=f"2001-01-01T00:00:{i:02d}Z"),
        )
    get = handlers["get_haiku"]
    real = get.table()
    limits = []

    class Spy:
        def scan(self, **kwargs):
            limits.append(kwargs.get("Limit"))
            return real.scan(**kwargs)

    monkeypatch.setattr(get, "table", Spy)
    monkeypatch.setattr(get, "SCAN_PAGE_ITEMS", 10)
    monkeypatch.setattr(get, "SCAN_CAP_ITEMS", 25)
    status, items, headers = call(handlers, "get_haiku", event())
    assert status == 200 and len(items) == 25 and headers["X-Scan-Capped"] == "true"
    assert limits == [10, 10, 5]
    assert "X-Scan-Capped" in headers["Access-Control-Expose-Headers"]
    monkeypatch.setattr(get, "SCAN_CAP_ITEMS", 10_000)
    limits.clear()
    status, items, headers = call(handlers, "get_haiku", event())
    assert status == 200 and "X-Scan-Capped" not in headers and len(items) >= 30
    assert limits and all(limit == 10 for limit in limits)


def test_patch_adds_one_like_and_returns_the_count(handlers):
    item_id = call(handlers, "post_haiku", event("POST", HAIKU))[1]["item_id"]
    counts = [call(handlers, "patch_haiku", event("PATCH", item_id=item_id))[1]["likes"] for _ in range(3)]
    assert counts == [1, 2, 3]


def test_patch_unknown_id_is_404(handlers):
    status, out, _ = call(handlers, "patch_haiku", event("PATCH", item_id=str(uuid.uuid4())))
    assert status == 404 and out["field"] == "item_id"


MALFORMED_IDS = [
    "../etc/passwd",
    "",
    "a" * 65,
    "df3cc2a0-6deb-44f3-bf8a-8ed1f53383cb\n",
    "abc\n",
    "a b",
    "a.b",
    "a/b",
    "é",
    "ａ",
    "a\x00",
    "\ud800",
    "a\u202e",
    "%0A",
]


@pytest.mark.parametrize("name", ["patch_haiku", "delete_haiku"])
@pytest.mark.parametrize("item_id", MALFORMED_IDS, ids=ascii)
def test_malformed_id_is_400(handlers, name, item_id):
    status, out, _ = call(handlers, name, event("PATCH", item_id=item_id))
    assert (status, out["field"]) == (400, "item_id")


@pytest.mark.parametrize("name", ["patch_haiku", "delete_haiku"])
@pytest.mark.parametrize("params", ["item_id", ["item_id"], 5, {"item_id": 5}, {"item_id": None}, {}], ids=repr)
def test_odd_path_parameters_are_400(handlers, name, params):
    ev = event("PATCH", item_id="x")
    ev["pathParameters"] = params
    status, out, _ = call(handlers, name, ev)
    assert (status, out["field"]) == (400, "item_id")


# Fixed values: parameters are test ids, which every pytest-xdist worker must collect alike.
FOREIGN_IDS = [
    "5f0c6a2e8b9d4c1fa3e7b6d5c4a39281",
    "ABC_def-123",
    "x",
    "7",
    "a" * 64,
    "0C4B7E1A-2F3D-4E5A-9B8C-7D6E5F4A3B2C",
]


@pytest.mark.parametrize("item_id", FOREIGN_IDS)
def test_items_with_foreign_id_formats_can_be_liked_and_deleted(handlers, item_id):
    put_raw(handlers, dict(HAIKU, item_id=item_id, likes=3, created_at="2019-05-01T09:00:00+09:00"))
    listed = {h["item_id"]: h for h in call(handlers, "get_haiku", event())[1]}
    assert listed[item_id]["likes"] == 3
    assert call(handlers, "patch_haiku", event("PATCH", item_id=item_id))[:2] == (200, {"item_id": item_id, "likes": 4})
    assert call(handlers, "delete_haiku", event("DELETE", item_id=item_id))[:2] == (204, None)
    assert item_id not in [h["item_id"] for h in call(handlers, "get_haiku", event())[1]]
    for name in ("patch_haiku", "delete_haiku"):
        status, out, _ = call(handlers, name, event("DELETE", item_id=item_id))
        assert (status, out["field"]) == (404, "item_id")


@pytest.mark.parametrize("name", ["patch_haiku", "delete_haiku"])
@pytest.mark.parametrize(
    "item_id", ["3b9f1c2d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "9e0f1a2b3c4d4a6b8c7d3b9f1c2d4e5f", "never-posted"]
)
def test_unknown_id_is_404(handlers, name, item_id):
    status, out, _ = call(handlers, name, event("PATCH", item_id=item_id))
    assert status == 404 and out["field"] == "item_id" and item_id in out["message"]


def test_items_written_by_other_tools_are_listed_whatever_their_attributes(handlers):
    odd = {"item_id": f"odd{uuid.uuid4().hex[:8]}", "username": 7, "likes": "many", "first": "only a first line"}
    put_raw(handlers, odd)
    status, items, _ = call(handlers, "get_haiku", event())
    assert status == 200
    listed = next(h for h in items if h["item_id"] == odd["item_id"])
    assert listed == {
        "item_id": odd["item_id"],
        "username": "",
        "first": "only a first line",
        "second": "",
        "third": "",
        "likes": 0,
        "created_at": "",
    }
    status, out, _ = call(handlers, "patch_haiku", event("PATCH", item_id=odd["item_id"]))  # ADD on a string
    assert (status, out["field"]) == (409, "item_id")
    assert call(handlers, "delete_haiku", event("DELETE", item_id=odd["item_id"]))[0] == 204


def test_delete_is_204_and_the_haiku_is_gone(handlers):
    item_id = call(handlers, "post_haiku", event("POST", HAIKU))[1]["item_id"]
    status, body, _ = call(handlers, "delete_haiku", event("DELETE", item_id=item_id))
    assert status == 204 and body is None
    assert call(handlers, "patch_haiku", event("PATCH", item_id=item_id))[0] == 404
    assert call(handlers, "delete_haiku", event("DELETE", item_id=item_id))[0] == 404
    assert item_id not in [h["item_id"] for h in call(handlers, "get_haiku", event())[1]]


def test_plain_get_is_capped_at_1000_and_continues_with_the_token(handlers):
    import boto3

    tbl = boto3.resource("dynamodb").Table(handlers["haiku_common"].os.environ["TABLE_NAME"])
    with tbl.batch_writer() as batch:
        for i in range(1005):
            batch.put_item(
                Item=dict(
                    HAIKU, item_id=str(uuid.uuid4()), likes=0, created_at=f"2000-01-01T00:00:{i % 60:02d}.{i:03d}Z"
                )
            )
    all_ids = {i["item_id"] for i in handlers["get_haiku"].scan_all(tbl)[0]}
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


# -- sign-in (issue 15): the claims API Gateway's authorizer passes -------------------------------------


def signed(ev: dict, sub: str, username: str) -> dict:
    """``ev`` as it arrives through a Cognito authorizer: the token's claims, as strings, in requestContext."""
    ev["requestContext"]["authorizer"] = {"claims": {"sub": sub, "cognito:username": username, "token_use": "id"}}
    return ev


def test_a_signed_in_post_records_its_author_and_lists_it(handlers, monkeypatch):
    monkeypatch.setenv("BASHOUTTER_AUTH", "cognito")
    sub = str(uuid.uuid4())
    status, body, _ = call(handlers, "post_haiku", signed(event("POST", HAIKU), sub, "basho"))
    assert status == 201 and body["author"] == "basho", body
    assert "author_sub" not in body  # the API shows the name, not the id
    status, listed, _ = call(handlers, "get_haiku", event("GET"))
    assert next(h for h in listed if h["item_id"] == body["item_id"])["author"] == "basho"


def test_only_the_author_may_delete_a_haiku(handlers, monkeypatch):
    monkeypatch.setenv("BASHOUTTER_AUTH", "cognito")
    author, other = str(uuid.uuid4()), str(uuid.uuid4())
    _, posted, _ = call(handlers, "post_haiku", signed(event("POST", HAIKU), author, "basho"))
    status, body, _ = call(handlers, "delete_haiku", signed(event("DELETE", item_id=posted["item_id"]), other, "buson"))
    assert status == 403 and body["field"] == "item_id", body
    status, _, _ = call(handlers, "patch_haiku", signed(event("PATCH", item_id=posted["item_id"]), other, "buson"))
    assert status == 200  # anyone signed in may like it
    status, _, _ = call(handlers, "delete_haiku", signed(event("DELETE", item_id=posted["item_id"]), author, "basho"))
    assert status == 204
    status, _, _ = call(handlers, "delete_haiku", signed(event("DELETE", item_id=posted["item_id"]), author, "basho"))
    assert status == 404  # gone: not found, not forbidden


def test_with_sign_in_on_a_request_without_claims_is_401(handlers, monkeypatch):
    monkeypatch.setenv("BASHOUTTER_AUTH", "cognito")
    for name, ev in (("post_haiku", event("POST", HAIKU)), ("delete_haiku", event("DELETE", item_id="abc"))):
        status, body, _ = call(handlers, name, ev)
        assert status == 401 and body["field"] == "Authorization", (name, body)
    monkeypatch.setenv("BASHOUTTER_AUTH", "none")
    status, body, _ = call(handlers, "post_haiku", event("POST", HAIKU))
    assert status == 201 and "author" not in body  # the textbook's anonymous API is unchanged


def through_lambda_authorizer(ev: dict, sub: str, username: str) -> dict:
    """``ev`` as it arrives through the oidc mode's Lambda TOKEN authorizer: its principal and context, flat."""
    ev["requestContext"]["authorizer"] = {"principalId": sub, "sub": sub, "username": username, "integrationLatency": 3}
    return ev


def test_with_a_lambda_authorizer_the_author_comes_from_its_context_and_only_they_may_delete(handlers, monkeypatch):
    monkeypatch.setenv("BASHOUTTER_AUTH", "oidc")
    author, other = f"auth0|{uuid.uuid4().hex}", f"auth0|{uuid.uuid4().hex}"
    status, posted, _ = call(
        handlers, "post_haiku", through_lambda_authorizer(event("POST", HAIKU), author, "basho@x.jp")
    )
    assert status == 201 and posted["author"] == "basho@x.jp", posted
    status, body, _ = call(
        handlers, "delete_haiku", through_lambda_authorizer(event("DELETE", item_id=posted["item_id"]), other, "buson")
    )
    assert status == 403 and body["field"] == "item_id", body
    status, _, _ = call(
        handlers, "delete_haiku", through_lambda_authorizer(event("DELETE", item_id=posted["item_id"]), author, "basho")
    )
    assert status == 204
    status, body, _ = call(handlers, "post_haiku", event("POST", HAIKU))
    assert status == 401 and body["field"] == "Authorization", body
