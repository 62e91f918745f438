"""POST /haiku: store a new haiku; 201 with the created item. Behind an authorizer, the haiku records its author
(the token's ``sub`` and user name) from the claims API Gateway passes."""

from __future__ import annotations

from haiku_common import (
    handle,
    json_body,
    new_item_id,
    now_iso,
    require_author,
    response,
    table,
    to_haiku,
    validate_new_haiku,
)


def _post(event: dict) -> dict:
    author = require_author(event)
    fields = validate_new_haiku(json_body(event))
    item = dict(fields, item_id=new_item_id(), likes=0, created_at=now_iso(), **(author or {}))
    table().put_item(Item=item, ConditionExpression="attribute_not_exists(item_id)")
    return response(201, to_haiku(item) if author else item)


def handler(event, context):
    return handle(event, _post)
