"""PATCH /haiku/{item_id}: add one like atomically; 200 with the new count, 404 for an unknown id.

Ids of any format matching ITEM_ID_PATTERN are accepted: POST writes UUIDs, other tools may write
others (e.g. 32 hex digits). An item whose ``likes`` is not a number (written by some other tool)
cannot be liked: 409, not a 500.
"""

from __future__ import annotations

from botocore.exceptions import ClientError as AwsError
from haiku_common import error, handle, item_id_from_path, require_author, response, table


def _like(event: dict) -> dict:
    require_author(event)  # any signed-in user may like; behind an authorizer, only a signed-in one
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
    except AwsError as exc:
        if exc.response.get("Error", {}).get("Code") != "ValidationException":
            raise
        return error(409, "item_id", f"the haiku {item_id} has a like count that is not a number; it cannot be liked")
    return response(200, {"item_id": item_id, "likes": int(result["Attributes"]["likes"])})


def handler(event, context):
    return handle(event, _like)
