"""GET /haiku: every haiku, newest first, up to LIST_CAP per response.

A plain GET returns a JSON array (compatible with the textbook's clients). When more haiku exist than
fit, the response carries an ``X-Next-Token`` header; pass it back as ``?next_token=`` (with an
optional ``limit`` of 1-LIST_CAP) for the next page. DynamoDB is paged internally (Scan follows
LastEvaluatedKey), so the 1 MB page limit never truncates the list.
"""

from __future__ import annotations

import base64
import binascii
import json

from haiku_common import LIST_CAP, ClientError, handle, query_params, response, table, to_haiku


def _limit(params: dict) -> int:
    raw = params.get("limit")
    if raw is None:
        return LIST_CAP
    if not raw.isdigit() or not 1 <= int(raw) <= LIST_CAP:
        raise ClientError(400, "limit", f"limit must be an integer from 1 to {LIST_CAP}")
    return int(raw)


def _cursor(params: dict) -> tuple | None:
    raw = params.get("next_token")
    if raw is None:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(raw.encode("ascii")).decode("utf-8"))
        if isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value):
            return tuple(value)
    except (binascii.Error, ValueError, UnicodeError):
        pass
    raise ClientError(400, "next_token", "next_token is not a token returned by this API")


def _token(haiku: dict) -> str:
    raw = json.dumps([haiku["created_at"], haiku["item_id"]]).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii")


def scan_all(tbl) -> list[dict]:
    items: list[dict] = []
    kwargs: dict = {}
    while True:
        page = tbl.scan(**kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _list(event: dict) -> dict:
    params = query_params(event)
    limit = _limit(params)
    cursor = _cursor(params)
    haiku = [to_haiku(item) for item in scan_all(table())]
    haiku.sort(key=lambda h: (h["created_at"], h["item_id"]), reverse=True)
    if cursor is not None:
        haiku = [h for h in haiku if (h["created_at"], h["item_id"]) < cursor]
    page = haiku[:limit]
    headers = {"X-Next-Token": _token(page[-1])} if len(haiku) > limit else {}
    return response(200, page, headers)


def handler(event, context):
    return handle(event, _list)
