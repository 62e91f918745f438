"""Review C2: a web page on another origin cannot read or change the emulator's state (headless Chromium).

The page is served from another loopback port (another origin); its script tries what the review did: read
``/moto-api/data.json``, reset the emulator with a preflight-free POST, and an EC2 ``ImportKeyPair`` with a
SigV4-looking header (which needs CORS). Nothing is readable and nothing changes.
"""

from __future__ import annotations

import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ATTACK = """
async (endpoint) => {
  const out = {};
  try { const r = await fetch(endpoint + '/moto-api/data.json'); out.read = await r.text(); }
  catch (e) { out.read = 'blocked: ' + e; }
  try { await fetch(endpoint + '/moto-api/reset', {method: 'POST', mode: 'no-cors', body: 'x'}); out.reset = 'sent'; }
  catch (e) { out.reset = 'blocked: ' + e; }
  try {
    const r = await fetch(endpoint + '/', {method: 'POST', headers: {
      'Content-Type': 'application/x-www-form-urlencoded',
      'Authorization': 'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261202/ap-northeast-1/ec2/aws4_request, SignedHeaders=host, Signature=00'},
      body: 'Action=ImportKeyPair&Version=2016-11-15&KeyName=evil-page&PublicKeyMaterial=c3NoLWVkMjU1MTkgQUFBQQ=='});
    out.write = r.status + ' ' + await r.text();
  } catch (e) { out.write = 'blocked: ' + e; }
  return out;
}
"""  # noqa: E501


def _page_server() -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            body = b"<!doctype html><title>another origin</title><p>hello</p>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_page_on_another_origin_cannot_read_or_change_emulator_state(emulator, aws):
    from playwright.sync_api import sync_playwright

    canary = f"canary-{uuid.uuid4().hex[:8]}"
    aws("ec2").create_key_pair(KeyName=canary)
    page_server = _page_server()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
            )
            try:
                page = browser.new_page()
                page.goto(f"http://127.0.0.1:{page_server.server_address[1]}/")
                out = page.evaluate(ATTACK, emulator)
            finally:
                browser.close()
    finally:
        page_server.shutdown()
    assert out["read"].startswith("blocked"), out  # no CORS: the response is not readable
    assert out["write"].startswith("blocked"), out
    names = {k["KeyName"] for k in aws("ec2").describe_key_pairs()["KeyPairs"]}
    assert canary in names, "the blind POST /moto-api/reset did not wipe the emulator"
    assert "evil-page" not in names
    aws("ec2").delete_key_pair(KeyName=canary)
