"""Shared by the four Bashoutter handlers (packaged into each function's zip).

Everything a client can send is validated here before DynamoDB is touched, and every response -
success or error - is an API Gateway proxy response with a JSON body and the CORS headers, so no
client input can turn into a 5xx.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

#: Largest request body accepted (bytes, after base64 decoding).
MAX_BODY_BYTES = 4096
#: Longest value of each text field, in characters.
FIELD_MAX_LENGTH = {"username": 32, "first": 64, "second": 64, "third": 64}
#: A plain GET returns at most this many haiku; `limit` + `next_token` page beyond it.
LIST_CAP = 1000

ITEM_ID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Allow-Methods": "GET,POST,PATCH,DELETE,OPTIONS",
    "Access-Control-Expose-Headers": "X-Next-Token",
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
        out["body"] = json.dumps(body, ensure_ascii=False, default=_json_default)
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


def to_haiku(item: dict) -> dict:
    """A DynamoDB item as the API returns it: likes as an int, never 0.0."""
    return {
        "item_id": item["item_id"],
        "username": item.get("username", ""),
        "first": item.get("first", ""),
        "second": item.get("second", ""),
        "third": item.get("third", ""),
        "likes": int(item.get("likes", 0)),
        "created_at": item.get("created_at", ""),
    }


def now_iso() -> str:
    """UTC ISO-8601 with milliseconds and a Z, e.g. 2026-11-23T19:33:57.123Z."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_item_id() -> str:
    return str(uuid.uuid4())


def json_body(event: dict) -> dict:
    """The request body as a JSON object, or ClientError(400) saying what is wrong with it."""
    raw = event.get("body")
    if raw is None or raw == "":
        raise ClientError(400, "body", "request body is missing; send a JSON object")
    if not isinstance(raw, str):
        raise ClientError(400, "body", "request body must be text")
    if event.get("isBase64Encoded"):
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise ClientError(400, "body", "request body is not valid base64")
    else:
        data = raw.encode("utf-8", "surrogatepass")
    if len(data) > MAX_BODY_BYTES:
        raise ClientError(400, "body", f"request body is too large ({len(data)} bytes; at most {MAX_BODY_BYTES})")
    try:
        parsed = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ClientError(400, "body", "request body is not valid JSON")
    if not isinstance(parsed, dict):
        raise ClientError(400, "body", "request body must be a JSON object")
    return parsed


def text_field(body: dict, name: str) -> str:
    if name not in body:
        raise ClientError(400, name, f"'{name}' is missing")
    value = body[name]
    if not isinstance(value, str):
        raise ClientError(400, name, f"'{name}' must be a string")
    value = value.strip()
    if not value:
        raise ClientError(400, name, f"'{name}' is empty")
    limit = FIELD_MAX_LENGTH[name]
    if len(value) > limit:
        raise ClientError(400, name, f"'{name}' is too long ({len(value)} characters; at most {limit})")
    return value


def validate_new_haiku(body: dict) -> dict:
    unexpected = sorted(set(body) - set(FIELD_MAX_LENGTH))
    if unexpected:
        raise ClientError(400, unexpected[0], f"unexpected field '{unexpected[0]}'; send only {', '.join(FIELD_MAX_LENGTH)}")
    return {name: text_field(body, name) for name in FIELD_MAX_LENGTH}


def item_id_from_path(event: dict) -> str:
    value = (event.get("pathParameters") or {}).get("item_id")
    if not isinstance(value, str) or not ITEM_ID_PATTERN.match(value):
        raise ClientError(400, "item_id", "item_id must be a haiku id as returned by POST /haiku (a UUID)")
    return value


def query_params(event: dict) -> dict:
    return event.get("queryStringParameters") or {}


def handle(event: dict, work) -> dict:
    """Run ``work(event)``; turn ClientError into its 4xx and anything else into a JSON 500 with CORS."""
    try:
        return work(event if isinstance(event, dict) else {})
    except ClientError as exc:
        return error(exc.status, exc.field, exc.message)
    except Exception as exc:  # a server fault, never caused by client input; still a proper response
        print(f"ERROR {type(exc).__name__}: {exc}")
        if isinstance(exc, KeyError) and exc.args and exc.args[0] == "TABLE_NAME":
            raise  # misconfigured deployment: fail the way AWS shows it (function error -> 502)
        return error(500, None, "internal error; the request was not processed")
