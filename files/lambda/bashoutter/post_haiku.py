"""POST /haiku: store a new haiku; 201 with the created item."""

from __future__ import annotations

from haiku_common import handle, json_body, new_item_id, now_iso, response, table, validate_new_haiku


def _post(event: dict) -> dict:
    fields = validate_new_haiku(json_body(event))
    item = dict(fields, item_id=new_item_id(), likes=0, created_at=now_iso())
    table().put_item(Item=item, ConditionExpression="attribute_not_exists(item_id)")
    return response(201, item)


def handler(event, context):
    return handle(event, _post)
