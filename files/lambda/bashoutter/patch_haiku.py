"""PATCH /haiku/{item_id}: add one like atomically; 200 with the new count, 404 for an unknown id."""

from __future__ import annotations

from haiku_common import error, handle, item_id_from_path, response, table


def _like(event: dict) -> dict:
    item_id = item_id_from_path(event)
    tbl = table()
    try:
        result = tbl.update_item(
            Key={"item_id": item_id},
            UpdateExpression="ADD likes :one",
            ConditionExpression="attribute_exists(item_id)",
            ExpressionAttributeValues={":one": 1},
            ReturnValues="UPDATED_NEW",
        )
    except tbl.meta.client.exceptions.ConditionalCheckFailedException:
        return error(404, "item_id", f"no haiku with item_id {item_id}")
    return response(200, {"item_id": item_id, "likes": int(result["Attributes"]["likes"])})


def handler(event, context):
    return handle(event, _like)
