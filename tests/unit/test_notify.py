"""kumolab_notify against a webhook server on 127.0.0.1: posts JSON, honours check mode, hides the URL."""

from __future__ import annotations

import http.server
import json
import threading

import pytest
from cost_safety_support import run_module


class Recorder(http.server.BaseHTTPRequestHandler):
    received: list = []
    fail_first: int = 0

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if Recorder.fail_first > 0:
            Recorder.fail_first -= 1
            self.send_response(503)
            self.end_headers()
            return
        Recorder.received.append({"path": self.path, "type": self.headers["Content-Type"], "body": json.loads(body)})
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    Recorder.received = []
    Recorder.fail_first = 0
    server = http.server.HTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/services/SECRET-TOKEN-123"
    finally:
        server.shutdown()


def test_posts_slack_json_and_never_shows_the_url(webhook):
    result = run_module(
        "kumolab_notify",
        {
            "webhook_url": webhook,
            "title": "kumolab: gpu lab deployed",
            "text": "g4dn.xlarge up",
            "fields": {"lab": "gpu", "region": "ap-northeast-1"},
        },
    )
    assert result["changed"] is True and result["sent"] is True and result["status"] == 200
    assert Recorder.received == [
        {
            "path": "/services/SECRET-TOKEN-123",
            "type": "application/json",
            "body": {"text": "*kumolab: gpu lab deployed*\ng4dn.xlarge up\n• lab: gpu\n• region: ap-northeast-1"},
        }
    ]
    assert "SECRET-TOKEN-123" not in json.dumps(result)


def test_check_mode_posts_nothing(webhook):
    result = run_module("kumolab_notify", {"webhook_url": webhook, "text": "teardown done"}, check=True)
    assert result["changed"] is True and result["sent"] is False and result["payload"] == {"text": "teardown done"}
    assert Recorder.received == []


def test_retries_a_503_then_succeeds(webhook):
    Recorder.fail_first = 2
    result = run_module("kumolab_notify", {"webhook_url": webhook, "text": "reaper deleted 3", "retries": 3})
    assert result["sent"] is True and len(Recorder.received) == 1


def test_unreachable_webhook_warns_without_leaking_or_failing_and_no_url_is_off(webhook):
    dead = "http://127.0.0.1:9/hooks/SECRET-TOKEN-456"
    result = run_module("kumolab_notify", {"webhook_url": dead, "text": "x", "retries": 0})
    assert result.get("failed") is not True and result["sent"] is False and "could not reach" in result["error"]
    assert "SECRET-TOKEN-456" not in json.dumps(result)
    strict = run_module("kumolab_notify", {"webhook_url": dead, "text": "x", "retries": 0, "fail_on_error": True})
    assert strict["failed"] is True and "SECRET-TOKEN-456" not in json.dumps(strict)
    off = run_module("kumolab_notify", {"text": "x"})
    assert off["changed"] is False and off["sent"] is False
