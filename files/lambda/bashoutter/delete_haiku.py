"""DELETE /haiku/{item_id}: remove a haiku; 204, or 404 when there is no haiku with this id. Behind an authorizer,
only the haiku's author (the token's ``sub``) may delete it: 403 for anyone else."""

from __future__ import annotations

from haiku_common import error, handle, item_id_from_path, require_author, response, table


def _delete(event: dict) -> dict:
    author = require_author(event)
    item_id = item_id_from_path(event)
    tbl = table()
    # The conditions need no read permission: dynamodb:DeleteItem alone, as the role grants. On a failed
    # condition, ALL_OLD tells an item that exists (someone else's: 403) from one that does not (404).
    condition, values = "attribute_exists(item_id)", {}
    if author is not None:
        condition, values = "attribute_exists(item_id) AND author_sub = :sub", {":sub": author["author_sub"]}
    try:
        tbl.delete_item(
            Key={"item_id": item_id},
            ConditionExpression=condition,
            **({"ExpressionAttributeValues": values} if values else {}),
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    except tbl.meta.client.exceptions.ConditionalCheckFailedException as exc:
        if author is not None and exc.response.get("Item"):
            return error(403, "item_id", "only the author of a haiku may delete it")
        return error(404, "item_id", f"no haiku with item_id {item_id}")
    return response(204)


def handler(event, context):
    return handle(event, _delete)
