"""Lab 4 handler: think for 2-5 seconds, then recommend a sushi.

The sleep makes concurrency visible: invoke it many times at once and the invocations overlap.
The response carries the start and end times so a client can count how many ran at the same time.
"""

from __future__ import annotations

import random
import time

SUSHI = [
    "maguro",
    "otoro",
    "chutoro",
    "sake",
    "hamachi",
    "tai",
    "hirame",
    "saba",
    "aji",
    "iwashi",
    "ebi",
    "amaebi",
    "ika",
    "tako",
    "hotate",
    "uni",
    "ikura",
    "tamago",
    "anago",
    "unagi",
    "kappa maki",
    "tekka maki",
    "negitoro",
    "engawa",
    "kohada",
]


def handler(event, context):
    started = time.time()
    time.sleep(random.uniform(2.0, 5.0))
    return {
        "sushi": random.choice(SUSHI),
        "started_at": started,
        "finished_at": time.time(),
        "request_id": getattr(context, "aws_request_id", None),
    }
