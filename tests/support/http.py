"""JSON over HTTP, as the labs' browser clients and CLIs call their APIs."""

from __future__ import annotations

import json
import urllib.error
import urllib.request


def http(method: str, url: str, body=None, headers=None):
    """(status, decoded JSON body or None); an HTTP error status is returned, not raised."""
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    for key, value in (headers or {}).items():
        req.add_header(key, value)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None
