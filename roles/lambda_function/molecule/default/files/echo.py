"""A stand-in handler for the role's scenario: returns its event and one environment variable."""

import os


def handler(event, context):
    return {"event": event, "greeting": os.environ.get("GREETING", "")}
