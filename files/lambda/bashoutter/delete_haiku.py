"""DELETE /haiku/{item_id}: remove a haiku; 204 (also when it was already gone, like DynamoDB)."""

from __future__ import annotations

from haiku_common import handle, item_id_from_path, response, table


def _delete(event: dict) -> dict:
    item_id = item_id_from_path(event)
    table().delete_item(Key={"item_id": item_id})
    return response(204)


def handler(event, context):
    return handle(event, _delete)
