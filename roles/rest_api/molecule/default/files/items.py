"""A stand-in handler for the role's scenario: an empty list of items."""


def handler(event, context):
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": "[]"}
