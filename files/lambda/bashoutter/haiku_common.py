"""Shared by the four Bashoutter handlers (packaged into each function's zip).

Everything a client can send is validated here before DynamoDB is touched, and every response -
success or error - is an API Gateway proxy response with a JSON body and the CORS headers. Bad input is
a JSON 4xx: tests/unit/test_bashoutter_fuzz.py sends generated input (schemathesis cases from the
OpenAPI file; hypothesis events with unicode, lone surrogates, control and bidi characters, huge and
negative lengths, odd query values) and finds no 5xx, and tests/unit/test_bashoutter_handlers.py pins
each case. A fault on our side (DynamoDB unavailable) is still a JSON 500, and a misconfigured deployment
(no TABLE_NAME) fails the way AWS shows it, a 502 from API Gateway.

Text fields are normalised to NFC, then rejected (400) when they hold characters that are not
displayable text: lone surrogates (not encodable as UTF-8, so DynamoDB would fail on them), C0/C1
controls (NUL, newline, ...), format characters such as the bidi overrides U+202A-U+202E and
U+2066-U+2069 (display spoofing) or the invisible tag characters, and line/paragraph separators.
ZWJ and ZWNJ stay allowed (emoji sequences, Indic and Persian scripts).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import unicodedata
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

#: Largest request body accepted (bytes, after base64 decoding).
MAX_BODY_BYTES = 4096
#: Longest value of each text field, in characters.
FIELD_MAX_LENGTH = {"username": 32, "first": 64, "second": 64, "third": 64}
#: A plain GET returns at most this many haiku; `limit` + `next_token` page beyond it.
LIST_CAP = 1000
#: GET reads the table in Scan pages of this many items (the Scan's Limit) ...
SCAN_PAGE_ITEMS = 1000
#: ... and stops after this many items, so one GET reads a bounded amount of the table (cost and
#: Lambda memory stay bounded however large the table grows; see docs/bashoutter.md).
SCAN_CAP_ITEMS = 10_000
#: Longest next_token accepted (ours are about 120 characters).
MAX_TOKEN_CHARS = 512

#: An item id: 1-64 characters from [A-Za-z0-9_-], matched with fullmatch (``$`` would accept a
#: trailing newline). POST writes UUIDs; items written by other tools (e.g. ``uuid.uuid4().hex``, as
#: the textbook's backend does) are addressable too.
ITEM_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: A request body's key that may be echoed back in an error (anything else is reported as `body`).
_SAFE_KEY = re.compile(r"[A-Za-z0-9_]{1,32}")
#: Unicode categories that are not text: controls, format characters, surrogates, line/paragraph separators.
_BAD_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}
#: Format characters that are allowed all the same: ZWNJ, ZWJ.
_ALLOWED_FORMAT = {"\u200c", "\u200d"}

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "Content-Type,Authorization",
    "Access-Control-Allow-Methods": "GET,POST,PATCH,DELETE,OPTIONS",
    "Access-Control-Expose-Headers": "X-Next-Token, X-Scan-Capped",
}


class ClientError(Exception):
    """A problem with the request; becomes a 4xx response naming the field."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.message = message


_TABLES: dict = {}


def table():
    """The DynamoDB table named by TABLE_NAME (KeyError, as on AWS, when the variable is missing).

    Created once per execution environment and reused by later invocations (the usual Lambda practice:
    creating a boto3 resource costs more than the DynamoDB call).
    """
    name = os.environ["TABLE_NAME"]
    if name not in _TABLES:
        import boto3

        _TABLES[name] = boto3.resource("dynamodb").Table(name)
    return _TABLES[name]


def response(status: int, body: Any = None, headers: dict | None = None) -> dict:
    out = {"statusCode": status, "headers": dict(CORS_HEADERS, **(headers or {}))}
    if body is None:
        out["body"] = ""
    else:
        out["headers"]["Content-Type"] = "application/json"
        text = json.dumps(body, ensure_ascii=False, default=_json_default)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from somewhere: send it \u-escaped, still valid JSON
            text = json.dumps(body, default=_json_default)
        out["body"] = text
    return out


def error(status: int, field: str | None, message: str) -> dict:
    body = {"message": message}
    if field:
        body["field"] = field
    return response(status, body)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _count(value: Any) -> int:
    if isinstance(value, Decimal) and value.is_finite():
        return max(int(value), 0)
    if isinstance(value, int) and not isinstance(value, bool):
        return max(value, 0)
    return 0


def to_haiku(item: dict) -> dict:
    """A DynamoDB item as the API returns it: likes as an int, never 0.0.

    Items written by other tools may lack attributes or hold other types; they are listed all the same
    (missing or non-string text as "", a non-numeric or negative like count as 0).
    """
    return {
        "item_id": _text(item.get("item_id")),
        "username": _text(item.get("username")),
        "first": _text(item.get("first")),
        "second": _text(item.get("second")),
        "third": _text(item.get("third")),
        "likes": _count(item.get("likes")),
        "created_at": _text(item.get("created_at")),
        **({"author": _text(item.get("author"))} if "author" in item else {}),
    }


def signed_in(event: dict) -> dict | None:
    """The signed-in author of a request, from what API Gateway's authorizer passed: the token's claims of a Cognito
    authorizer (``requestContext.authorizer.claims``), or the context of a Lambda authorizer (``bashoutter_auth:
    oidc``: ``requestContext.authorizer.sub`` and ``.username``), read the same way: ``{"author_sub": <sub>,
    "author": <user name>}``, or None when the request came through an API without an authorizer (the textbook's
    anonymous API)."""
    context = event.get("requestContext")
    authorizer = context.get("authorizer") if isinstance(context, dict) else None
    claims = authorizer.get("claims", authorizer) if isinstance(authorizer, dict) else None
    if not isinstance(claims, dict) or not isinstance(claims.get("sub"), str) or not claims["sub"]:
        return None
    name = next(
        (claims[k] for k in ("cognito:username", "username", "email") if isinstance(claims.get(k), str) and claims[k]),
        claims["sub"],
    )
    return {"author_sub": claims["sub"], "author": name[:128]}


def require_author(event: dict) -> dict | None:
    """:func:`signed_in`; with ``BASHOUTTER_AUTH`` set to anything but ``none`` a request without claims is a 401
    (the API must have had an authorizer in front of this function)."""
    author = signed_in(event)
    if author is None and os.environ.get("BASHOUTTER_AUTH", "none") != "none":
        raise ClientError(401, "Authorization", "sign in first: this API needs a token")
    return author


def now_iso() -> str:
    """UTC ISO-8601 with milliseconds and a Z, e.g. 2026-11-23T19:33:57.123Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_item_id() -> str:
    return str(uuid.uuid4())


def json_body(event: dict) -> dict:
    """The request body as a JSON object, or ClientError(400) saying what is wrong with it."""
    raw = event.get("body")
    if raw is None or raw == "":
        raise ClientError(400, "body", "request body is missing; send a JSON object")
    if not isinstance(raw, str):
        raise ClientError(400, "body", "request body must be text")
    if len(raw) > 4 * MAX_BODY_BYTES:  # bound the work below; smaller bodies get their exact size reported
        raise ClientError(
            400,
            "body",
            f"request body is too large (over {4 * MAX_BODY_BYTES} characters; at most {MAX_BODY_BYTES} bytes)",
        )
    if event.get("isBase64Encoded"):
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise ClientError(400, "body", "request body is not valid base64")  # noqa: B904
    else:
        data = raw.encode("utf-8", "surrogatepass")
    if len(data) > MAX_BODY_BYTES:
        raise ClientError(400, "body", f"request body is too large ({len(data)} bytes; at most {MAX_BODY_BYTES})")
    try:
        parsed = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: deeply nested arrays
        raise ClientError(400, "body", "request body is not valid JSON")  # noqa: B904
    if not isinstance(parsed, dict):
        raise ClientError(400, "body", "request body must be a JSON object")
    return parsed


def text_field(body: dict, name: str) -> str:
    """The field ``name`` as stored: a non-empty string of displayable text, NFC, stripped, bounded."""
    if name not in body:
        raise ClientError(400, name, f"'{name}' is missing")
    value = body[name]
    if not isinstance(value, str):
        raise ClientError(400, name, f"'{name}' must be a string")
    limit = FIELD_MAX_LENGTH[name]
    if len(value) > 4 * limit:  # long before normalising: NFC cannot shrink a string by more than that
        raise ClientError(400, name, f"'{name}' is too long ({len(value)} characters; at most {limit})")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ClientError(400, name, f"'{name}' is not valid Unicode text (a lone surrogate)")  # noqa: B904
    bad = next((ch for ch in value if unicodedata.category(ch) in _BAD_CATEGORIES and ch not in _ALLOWED_FORMAT), None)
    if bad is not None:
        raise ClientError(
            400, name, f"'{name}' contains U+{ord(bad):04X}, a control or formatting character; send plain text"
        )
    value = unicodedata.normalize("NFC", value).strip()
    if not value:
        raise ClientError(400, name, f"'{name}' is empty")
    if len(value) > limit:
        raise ClientError(400, name, f"'{name}' is too long ({len(value)} characters; at most {limit})")
    return value


def validate_new_haiku(body: dict) -> dict:
    unexpected = sorted(set(body) - set(FIELD_MAX_LENGTH))
    if unexpected:
        key = unexpected[0]  # echoed only when it is a plain name: a client's key may hold anything
        if _SAFE_KEY.fullmatch(key):
            raise ClientError(400, key, f"unexpected field '{key}'; send only {', '.join(FIELD_MAX_LENGTH)}")
        raise ClientError(400, "body", f"unexpected field; send only {', '.join(FIELD_MAX_LENGTH)}")
    return {name: text_field(body, name) for name in FIELD_MAX_LENGTH}


def item_id_from_path(event: dict) -> str:
    params = event.get("pathParameters")
    value = params.get("item_id") if isinstance(params, dict) else None
    if not isinstance(value, str) or not ITEM_ID_PATTERN.fullmatch(value):
        raise ClientError(
            400,
            "item_id",
            "item_id must be 1-64 characters from A-Z, a-z, 0-9, '_' and '-' "
            "(as returned by GET /haiku or POST /haiku)",
        )
    return value


def query_params(event: dict) -> dict:
    """The query string as a dict of strings (what API Gateway sends), or ClientError(400)."""
    params = event.get("queryStringParameters") or {}
    if not isinstance(params, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in params.items()):
        raise ClientError(400, "query", "the query string could not be read")
    return params


def handle(event: dict, work) -> dict:
    """Run ``work(event)``; turn ClientError into its 4xx and anything else into a JSON 500 with CORS."""
    try:
        return work(event if isinstance(event, dict) else {})
    except ClientError as exc:
        return error(exc.status, exc.field, exc.message)
    except Exception as exc:  # a server fault, never caused by client input; still a proper response
        print(f"ERROR {type(exc).__name__}: {exc!r}")  # repr: the log line is ASCII-safe whatever the message
        if isinstance(exc, KeyError) and exc.args and exc.args[0] == "TABLE_NAME":
            raise  # misconfigured deployment: fail the way AWS shows it (function error -> 502)
        return error(500, None, "internal error; the request was not processed")
