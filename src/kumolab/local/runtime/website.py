"""Serve an S3 static-website bucket on loopback, the way the ``s3-website`` endpoint does.

From the emulator: the bucket's website configuration (``GetBucketWebsite``: index document suffix,
error document key), its policy, and its objects (with their stored ``Content-Type``).

- ``/`` and ``/dir/`` serve ``<prefix><IndexDocument.Suffix>``; ``/dir`` without an object of that name
  but with ``dir/index.html`` redirects (302) to ``/dir/``, as S3 does.
- A missing key answers 404 with the error document's content (or S3's own HTML 404 page).
- The website endpoint serves only what anonymous users may read: without a bucket policy that allows
  ``s3:GetObject`` to ``Principal: "*"`` on the objects, every request is 403 - as on AWS.
- A bucket without a website configuration answers 404 ``NoSuchWebsiteConfiguration``.
- Only GET and HEAD (405 otherwise).
"""

from __future__ import annotations

import fnmatch
import json
import mimetypes
from urllib.parse import unquote

from kumolab.local.runtime.aws import AwsConfig
from kumolab.local.runtime.httpserve import Request, Response


def _html(status: int, code: str, message: str) -> Response:
    body = (
        f"<html><head><title>{status} {code}</title></head><body><h1>{status} {code}</h1>"
        f"<ul><li>Code: {code}</li><li>Message: {message}</li></ul></body></html>"
    ).encode()
    return Response(status, body, [("Content-Type", "text/html; charset=utf-8")])


def allows_anonymous_get(policy: dict, bucket: str, key: str) -> bool:
    """True when a statement of ``policy`` allows anyone s3:GetObject on ``bucket/key`` (and none denies)."""
    arn = f"arn:aws:s3:::{bucket}/{key}"
    allowed = False
    for stmt in policy.get("Statement", []):
        principal = stmt.get("Principal")
        if not (principal == "*" or (isinstance(principal, dict) and principal.get("AWS") in ("*", ["*"]))):
            continue
        actions = stmt.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        resources = stmt.get("Resource", [])
        resources = [resources] if isinstance(resources, str) else resources
        if not any(fnmatch.fnmatchcase("s3:GetObject", a) or a == "*" for a in actions):
            continue
        if not any(fnmatch.fnmatchcase(arn, r) for r in resources):
            continue
        if stmt.get("Effect") == "Deny":
            return False
        if stmt.get("Effect") == "Allow":
            allowed = True
    return allowed


class S3Website:
    def __init__(self, aws: AwsConfig, bucket: str):
        self.bucket = bucket
        self.client = aws.client("s3")

    def _config(self) -> dict | None:
        try:
            return self.client.get_bucket_website(Bucket=self.bucket)
        except self.client.exceptions.ClientError:
            return None

    def _policy(self) -> dict:
        try:
            return json.loads(self.client.get_bucket_policy(Bucket=self.bucket)["Policy"])
        except (self.client.exceptions.ClientError, ValueError):
            return {}

    def _get(self, key: str):
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)
        except self.client.exceptions.ClientError:
            return None

    def _serve(self, obj, status: int, head: bool) -> Response:
        body = b"" if head else obj["Body"].read()
        ctype = obj.get("ContentType") or ""
        if not ctype or ctype == "binary/octet-stream":
            ctype = mimetypes.guess_type(obj.get("_key", ""))[0] or "application/octet-stream"
        headers = [
            ("Content-Type", ctype),
            ("ETag", obj.get("ETag", "")),
            ("Cache-Control", obj.get("CacheControl") or "no-cache"),
        ]
        if head:
            headers.append(("Content-Length", str(obj.get("ContentLength", 0))))
        return Response(status, body, headers)

    def __call__(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return _html(405, "MethodNotAllowed", "The specified method is not allowed against this resource.")
        config = self._config()
        if config is None:
            return _html(
                404, "NoSuchWebsiteConfiguration", "The specified bucket does not have a website configuration"
            )
        suffix = (config.get("IndexDocument") or {}).get("Suffix", "index.html")
        error_key = (config.get("ErrorDocument") or {}).get("Key")
        key = unquote(request.path).lstrip("/")
        if key == "" or key.endswith("/"):
            key += suffix
        policy = self._policy()
        if not allows_anonymous_get(policy, self.bucket, key):
            return _html(403, "AccessDenied", "Access Denied")
        head = request.method == "HEAD"
        obj = self._get(key)
        if obj is not None:
            obj["_key"] = key
            return self._serve(obj, 200, head)
        if self._get(f"{key}/{suffix}") is not None:
            return Response(302, b"", [("Location", f"/{key}/")])
        if error_key and allows_anonymous_get(policy, self.bucket, error_key):
            err = self._get(error_key)
            if err is not None:
                err["_key"] = error_key
                return self._serve(err, 404, head)
        return _html(404, "NoSuchKey", "The specified key does not exist.")
