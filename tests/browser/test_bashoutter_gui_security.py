"""The Bashoutter GUI against a hostile API (security review L2), in headless Chromium.

The GUI's API URL can be overridden by the user (a classmate's API), so the GUI treats what an API sends as
data: markup in ``likes`` or the text fields is shown as text and runs nothing, and the Content-Security-Policy
keeps scripts to the site's own files and fetch() to the allowed origins. Needs no emulator: the site and the
hostile API are two small loopback servers.
"""

from __future__ import annotations

import json
import mimetypes
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kumolab.paths import REPO_ROOT

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
WEB = REPO_ROOT / "files" / "web" / "bashoutter"
PAYLOAD = "<img src=x onerror=\"window.pwned='likes'\">"
HOSTILE = [
    {
        "item_id": "x\" onmouseover=\"window.pwned='id'",
        "username": "<script>window.pwned='name'</script>",
        "first": "<img src=x onerror=\"window.pwned='first'\">",
        "second": "two",
        "third": "three",
        "likes": PAYLOAD,
        "created_at": "<b>when</b>",
    },
    {"item_id": "n", "username": 5, "first": None, "second": ["a"], "third": {}, "likes": -3, "created_at": 7},
]


def _server(routes: dict[str, tuple[str, bytes]]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _reply(self, status: int, ctype: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Access-Control-Allow-Methods", "GET,POST,PATCH,DELETE,OPTIONS")
            self.send_header("Access-Control-Allow-Headers", "Content-Type")
            self.end_headers()
            self.wfile.write(body)

        def do_OPTIONS(self):
            self._reply(200, "text/plain", b"")

        def do_GET(self):
            path = self.path.split("?")[0]
            found = routes.get(path)
            self._reply(200, *found) if found else self._reply(404, "application/json", b'{"message":"nope"}')

        def do_PATCH(self):
            self._reply(200, "application/json", json.dumps({"item_id": "n", "likes": PAYLOAD}).encode())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def hostile_site():
    api = _server({"/prod/haiku": ("application/json", json.dumps(HOSTILE).encode())})
    api_url = f"http://127.0.0.1:{api.server_address[1]}/prod"
    files = {
        f"/{p.name}": (mimetypes.guess_type(p.name)[0] or "application/octet-stream", p.read_bytes())
        for p in WEB.iterdir()
    }
    files["/"] = files["/index.html"]
    files["/config.json"] = ("application/json", json.dumps({"apiUrl": api_url}).encode())
    site = _server(files)
    yield f"http://127.0.0.1:{site.server_address[1]}/", api.server_address[1]
    site.shutdown()
    api.shutdown()


def _browser(p):
    return p.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    )


def test_markup_from_a_hostile_api_is_shown_as_text_and_runs_nothing(hostile_site):
    from playwright.sync_api import expect, sync_playwright

    url, _ = hostile_site
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
            page.goto(url)
            expect(page.locator(".haiku")).to_have_count(2, timeout=15000)
            first, second = page.locator(".haiku").nth(0), page.locator(".haiku").nth(1)
            expect(first.locator(".like .count")).to_have_text("0")  # not the markup, not NaN
            expect(first.locator(".verse")).to_contain_text("<img src=x")
            expect(first.locator(".meta")).to_contain_text("<script>")
            assert first.locator("img, script, b").count() == 0
            expect(second.locator(".like .count")).to_have_text("0")  # -3 is not a like count
            first.locator(".like").click()  # the PATCH answer is hostile too
            expect(first.locator(".like .count")).to_have_text("0", timeout=10000)
            page.wait_for_timeout(300)
            assert page.evaluate("window.pwned") is None
            assert page.locator("#haiku-list img, #haiku-list script").count() == 0
            assert not errors, errors
        finally:
            browser.close()


def test_the_csp_blocks_scripts_and_fetches_to_other_origins(hostile_site):
    from playwright.sync_api import expect, sync_playwright

    url, api_port = hostile_site
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
            page.goto(url)
            expect(page.locator(".haiku")).to_have_count(2, timeout=15000)
            csp = page.locator('meta[http-equiv="Content-Security-Policy"]').get_attribute("content")
            assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "'unsafe-inline'" not in csp
            # an inline script injected into the page does not run
            page.evaluate("""() => { const s = document.createElement('script');
                                     s.textContent = "window.pwned = 'inline'"; document.body.append(s); }""")
            assert page.evaluate("window.pwned") is None
            # an API on an origin connect-src does not allow (127.0.0.2 is not 127.0.0.1) is never fetched
            page.click("footer summary")
            page.fill("#api-override", f"http://127.0.0.2:{api_port}/prod")
            page.click("#api-form button[type=submit]")
            expect(page.locator("#list-status")).to_contain_text("Could not load haiku", timeout=10000)
            assert any("Content Security Policy" in e for e in errors), errors
        finally:
            browser.close()


def test_the_error_page_has_a_csp_and_no_inline_style():
    text = (WEB / "error.html").read_text()
    assert 'http-equiv="Content-Security-Policy"' in text and "style=" not in text


def test_the_gui_builds_no_markup_from_strings():
    source = (WEB / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in source, sink
