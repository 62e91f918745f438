"""GET /haiku: every haiku, newest first, up to LIST_CAP per response.

A plain GET returns a JSON array (compatible with the textbook's clients). When more haiku exist than
fit, the response carries an ``X-Next-Token`` header; pass it back as ``?next_token=`` (with an
optional ``limit`` of 1-LIST_CAP) for the next page.

The table is read with Scan pages of SCAN_PAGE_ITEMS items (following LastEvaluatedKey, so DynamoDB's
1 MB page limit never truncates the list) and at most SCAN_CAP_ITEMS items per request: one GET costs
a bounded number of read units and of Lambda memory however large the table grows. Beyond the cap
the response lists only the items read (sorted newest first, but not necessarily the newest of the
table) and says so with ``X-Scan-Capped: true``; docs/bashoutter.md explains the trade-off.
"""

from __future__ import annotations

import base64
import binascii
import json
import re

from haiku_common import (
    LIST_CAP,
    MAX_TOKEN_CHARS,
    SCAN_CAP_ITEMS,
    SCAN_PAGE_ITEMS,
    ClientError,
    handle,
    query_params,
    response,
    table,
    to_haiku,
)

#: ASCII digits only: str.isdigit() and int() also accept "²" or Arabic-Indic digits.
_LIMIT = re.compile(r"[0-9]{1,4}")


def _limit(params: dict) -> int:
    raw = params.get("limit")
    if raw is None:
        return LIST_CAP
    if not _LIMIT.fullmatch(raw) or not 1 <= int(raw) <= LIST_CAP:
        raise ClientError(400, "limit", f"limit must be an integer from 1 to {LIST_CAP}")
    return int(raw)


def _cursor(params: dict) -> tuple | None:
    raw = params.get("next_token")
    if raw is None:
        return None
    if 0 < len(raw) <= MAX_TOKEN_CHARS:
        try:
            value = json.loads(base64.urlsafe_b64decode(raw.encode("ascii")).decode("utf-8"))
            if isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value):
                return tuple(value)
        except (binascii.Error, ValueError, UnicodeError, RecursionError):
            pass
    raise ClientError(400, "next_token", "next_token is not a token returned by this API")


def _token(haiku: dict) -> str:
    raw = json.dumps([haiku["created_at"], haiku["item_id"]]).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii")


def scan_all(tbl, cap: int | None = None, page_items: int | None = None) -> tuple[list[dict], bool]:
    """Up to ``cap`` items of the table (Scan pages of ``page_items``) and whether items may be left unread."""
    cap = SCAN_CAP_ITEMS if cap is None else cap
    page_items = SCAN_PAGE_ITEMS if page_items is None else page_items
    items: list[dict] = []
    kwargs: dict = {}
    while True:
        page = tbl.scan(Limit=min(page_items, cap - len(items)), **kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items, False
        if len(items) >= cap:
            return items, True
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _list(event: dict) -> dict:
    params = query_params(event)
    limit = _limit(params)
    cursor = _cursor(params)
    items, capped = scan_all(table())
    haiku = [to_haiku(item) for item in items]
    haiku.sort(key=lambda h: (h["created_at"], h["item_id"]), reverse=True)
    if cursor is not None:
        haiku = [h for h in haiku if (h["created_at"], h["item_id"]) < cursor]
    page = haiku[:limit]
    headers = {"X-Next-Token": _token(page[-1])} if len(haiku) > limit else {}
    if capped:
        headers["X-Scan-Capped"] = "true"
    return response(200, page, headers)


def handler(event, context):
    return handle(event, _list)
