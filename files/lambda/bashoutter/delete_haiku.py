"""DELETE /haiku/{item_id}: remove a haiku; 204, or 404 when there is no haiku with this id."""

from __future__ import annotations

from haiku_common import error, handle, item_id_from_path, response, table


def _delete(event: dict) -> dict:
    item_id = item_id_from_path(event)
    tbl = table()
    try:
        # The condition needs no read permission: dynamodb:DeleteItem alone, as the role grants.
        tbl.delete_item(Key={"item_id": item_id}, ConditionExpression="attribute_exists(item_id)")
    except tbl.meta.client.exceptions.ConditionalCheckFailedException:
        return error(404, "item_id", f"no haiku with item_id {item_id}")
    return response(204)


def handler(event, context):
    return handle(event, _delete)
