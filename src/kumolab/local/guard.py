"""What every loopback server of the local target checks before it does anything (review C2, L3).

Loopback is shared by every account on the machine and reachable from web pages in a browser, so a
loopback server is not private by itself. Each one (the emulator's front door, the runtime's HTTP servers)
applies these checks first:

- ``Host`` is ``127.0.0.1:<port>`` or ``localhost:<port>`` (:func:`host_allowed`): a DNS-rebinding page,
  whose requests carry its own host name, is refused (421).
- ``Content-Length`` is digits only (:func:`content_length`; negative or not a number: 400) and at most a
  bound (413); the number of requests served at once is bounded too (:func:`bound_threads`).
- response headers carry no CR/LF (:func:`headers_safe`; a handler's or the emulator's header with one is a 502),
  so nothing a function returns can split a response.

The emulator adds :class:`EmulatorGuard`: a WSGI layer in front of :mod:`kumolab.local.front_door` that accepts
only requests signed with the access key id the project generated (``<state>/emulator/credentials.json``, mode
0600, the local profile's key) or with role credentials this emulator's STS issued (:func:`issued_role_key`,
the hook for per-role credentials), and moto's ``/moto-api/*`` (state dump, reset, config) only with that key
or the ``X-Kumolab-Emulator-Key`` header holding the profile's secret key. Three things stay open, as on AWS: the
moto dashboard page ``GET /moto-api/`` (static HTML, used as the health check), ``execute-api`` URLs (a
deployed REST API is public by design; it runs only deployed handlers), an unsigned GET of one object that its
bucket's policy lets everyone read (:func:`public_object_read`), and Cognito's unsigned sign-in surface
(:func:`cognito_unsigned`): ``InitiateAuth``, ``RespondToAuthChallenge`` and ``SignUp`` without a signature, and the
user pools' ``/.well-known/jwks.json`` and ``openid-configuration`` documents, which AWS serves to anyone. As on AWS,
a web page may make those calls from another origin (a sign-in form): their answers carry
``Access-Control-Allow-Origin: *`` and a CORS preflight to ``/`` is answered, allowing only ``Content-Type``,
``X-Amz-Target`` and ``X-Amz-User-Agent`` - never ``Authorization``, so no page can send a signed call.
"""

from __future__ import annotations

import hmac
import json
import re
import threading
from collections.abc import Callable, Iterable
from urllib.parse import parse_qs, unquote

#: The emulator's request body limit (Lambda's 50 MB direct upload, S3 objects of the labs, with room).
EMULATOR_MAX_BODY = 128 * 1024 * 1024
#: Requests served at once by one loopback server; more wait in the listen queue.
MAX_CONCURRENT = 64
SECRET_HEADER = "X-Kumolab-Emulator-Key"

DIGITS = re.compile(r"^[0-9]{1,15}$")
SIGV4_CREDENTIAL = re.compile(r"Credential=(?P<key>[^/,\s]+)/")
SIGV2_AUTH = re.compile(r"^AWS (?P<key>[^:\s]+):")
EXECUTE_API = re.compile(r"^/restapis/[^/]+/[^/]+/_user_request_(/|$)")
#: Cognito user pool actions AWS serves without a signature (the sign-in calls a browser makes with a client id).
COGNITO_UNSIGNED_TARGETS = frozenset(
    f"AWSCognitoIdentityProviderService.{action}" for action in ("InitiateAuth", "RespondToAuthChallenge", "SignUp")
)
#: A user pool's public documents: ``/<region>_<id>/.well-known/jwks.json`` and ``.../openid-configuration``.
COGNITO_WELL_KNOWN = re.compile(
    r"^/[a-z]{2}(-[a-z]+)+-[0-9]_[0-9A-Za-z]{1,55}/\.well-known/(jwks\.json|openid-configuration)$"
)


class Refused(Exception):
    """A request refused before it reaches the application: ``status``, AWS-style ``code`` and ``message``."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def host_allowed(host: str | None, port: int) -> bool:
    """``Host`` names this server on loopback: ``127.0.0.1:<port>`` or ``localhost:<port>`` (case-insensitive)."""
    return (host or "").strip().lower() in {f"127.0.0.1:{port}", f"localhost:{port}"}


def content_length(raw: str | None, limit: int) -> int:
    """The request's body length; raises :class:`Refused` (400 when not digits, 413 over ``limit``)."""
    if raw is None or raw == "":
        return 0
    if not DIGITS.match(raw.strip()):
        raise Refused(400, "InvalidRequest", f"Content-Length {raw[:40]!r} is not a non-negative number")
    length = int(raw)
    if length > limit:
        raise Refused(413, "RequestEntityTooLarge", f"request body of {length} bytes is over the limit of {limit}")
    return length


def headers_safe(headers: Iterable[tuple[str, str]]) -> bool:
    """No CR, LF or NUL in any header name or value (a header with one would split the response)."""
    return not any(set("\r\n\0") & set(f"{k}{v}") for k, v in headers)


def check_request(host: str | None, port: int, raw_length: str | None, limit: int) -> int:
    """The checks every loopback server applies: ``Host``, then ``Content-Length``. Returns the body length."""
    if not host_allowed(host, port):
        raise Refused(
            421,
            "MisdirectedRequest",
            f"Host {str(host)[:80]!r} is not this server; use http://127.0.0.1:{port} or http://localhost:{port}",
        )
    return content_length(raw_length, limit)


def bound_threads(server, limit: int = MAX_CONCURRENT):
    """Serve at most ``limit`` requests of a threading ``socketserver`` at once (the accept loop waits)."""
    slots = threading.BoundedSemaphore(limit)
    process_thread = server.process_request_thread

    def process_request(request, client_address):
        slots.acquire()
        try:
            thread = threading.Thread(target=run, args=(request, client_address), daemon=True)
            thread.start()
        except BaseException:
            slots.release()
            raise

    def run(request, client_address):
        try:
            process_thread(request, client_address)
        finally:
            slots.release()

    server.process_request = process_request
    return server


# -- the emulator's access key -----------------------------------------------------------------


def request_key_id(headers: dict[str, str], query: str) -> str | None:
    """The access key id a request is signed with (SigV4/SigV2 header or presigned query), None when unsigned."""
    auth = headers.get("authorization", "")
    found = SIGV4_CREDENTIAL.search(auth) or SIGV2_AUTH.match(auth)
    if found:
        return found["key"]
    params = parse_qs(query, keep_blank_values=True)
    for name in ("X-Amz-Credential", "AWSAccessKeyId"):
        if params.get(name):
            return params[name][0].split("/", 1)[0]
    return None


def issued_role_key(key_id: str) -> bool:
    """True for temporary credentials this emulator's STS issued (AssumeRole and friends, as a role's code gets).

    The hook for per-role credentials: whoever issues them must do it through this emulator's STS (or extend
    this function), so that a key id only works when the emulator itself handed it out.
    """
    if not key_id.startswith("ASIA"):
        return False
    try:
        from moto.sts.models import sts_backends
    except ImportError:
        return False
    for account in list(sts_backends.keys()):
        for backend in list(sts_backends[account].values()):
            if backend.get_assumed_role_from_access_key(key_id) is not None:
                return True
    return False


def public_object_read(method: str, path: str) -> bool:
    """An anonymous GET/HEAD of one object (path style) that its bucket's policy lets everyone read and that the
    bucket's Block Public Access does not restrict: what S3 serves without credentials (the labs' one public
    website bucket). No listing, no writes, no other service is anonymous."""
    if method not in ("GET", "HEAD"):
        return False
    bucket, _, key = path.lstrip("/").partition("/")
    if not bucket or not key:
        return False
    try:
        from moto.s3.models import s3_backends

        from kumolab.local.runtime.website import allows_anonymous_get

        partition, account = s3_backends.bucket_accounts[bucket]
        found = s3_backends[account][partition].buckets[bucket]
        policy = json.loads(found.policy) if found.policy else None
    except (ImportError, KeyError, ValueError, TypeError, AttributeError):
        return False
    block = getattr(found, "public_access_block", None)
    if not policy or (block is not None and block.restrict_public_buckets):
        return False
    return allows_anonymous_get(policy, bucket, unquote(key))


#: Request headers a cross-origin page may send to Cognito's unsigned calls (no Authorization: nothing signed).
COGNITO_CORS_HEADERS = ("content-type", "x-amz-target", "x-amz-user-agent")


def cognito_preflight(environ: dict) -> bool:
    """A CORS preflight for one of Cognito's unsigned calls: ``OPTIONS /`` asking for POST with only
    :data:`COGNITO_CORS_HEADERS`."""
    if environ.get("REQUEST_METHOD") != "OPTIONS" or environ.get("PATH_INFO") != "/":
        return False
    if environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD", "").upper() != "POST":
        return False
    asked = {h.strip().lower() for h in environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", "").split(",") if h.strip()}
    return asked <= set(COGNITO_CORS_HEADERS)


def cognito_unsigned(method: str, path: str, target: str | None) -> bool:
    """An unsigned request AWS's Cognito user pools answer: a GET of a pool's JWKS or OpenID configuration, or a
    POST to ``/`` of one of :data:`COGNITO_UNSIGNED_TARGETS`. Every other Cognito action (the ``Admin*`` ones,
    creating pools and clients) still needs the project's key."""
    if method in ("GET", "HEAD") and COGNITO_WELL_KNOWN.match(path):
        return True
    return method == "POST" and path == "/" and (target or "").strip() in COGNITO_UNSIGNED_TARGETS


class EmulatorGuard:
    """WSGI layer in front of the emulator's front door: Host, body size, the project's key, safe headers."""

    def __init__(
        self,
        app: Callable,
        port: int,
        keys: dict[str, str],
        max_body: int = EMULATOR_MAX_BODY,
        extra_key: Callable[[str], bool] = issued_role_key,
    ):
        self.app, self.port, self.max_body, self.extra_key = app, port, max_body, extra_key
        self.key_id = keys["aws_access_key_id"]
        self.secret = keys["aws_secret_access_key"]

    def authorize(self, environ: dict) -> None:
        """Raise :class:`Refused` unless the request may reach the emulator."""
        check_request(environ.get("HTTP_HOST"), self.port, environ.get("CONTENT_LENGTH"), self.max_body)
        path = environ.get("PATH_INFO", "/")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == "/moto-api/" and method in ("GET", "HEAD"):
            return  # the dashboard page: static HTML, the health check; its data needs the key
        if EXECUTE_API.match(path):
            return  # a deployed REST API is public, as on AWS
        unsigned = not environ.get("HTTP_AUTHORIZATION") and "X-Amz-Credential" not in environ.get("QUERY_STRING", "")
        if unsigned and public_object_read(method, path):
            return  # an object its bucket policy lets everyone read, as anonymous S3 serves it
        if unsigned and cognito_unsigned(method, path, environ.get("HTTP_X_AMZ_TARGET")):
            return  # Cognito's sign-in calls and a pool's JWKS, which AWS answers without a signature
        headers = {"authorization": environ.get("HTTP_AUTHORIZATION", "")}
        secret = environ.get("HTTP_" + SECRET_HEADER.upper().replace("-", "_"))
        if secret and hmac.compare_digest(secret.encode(), self.secret.encode()):
            return
        key = request_key_id(headers, environ.get("QUERY_STRING", ""))
        if key is not None and (hmac.compare_digest(key.encode(), self.key_id.encode()) or self.extra_key(key)):
            if not path.startswith("/moto-api/") or key == self.key_id:
                return
        if path.startswith("/moto-api/"):
            raise Refused(
                403, "AccessDenied", "moto's /moto-api/ needs the emulator's own key (the kumolab-local profile)"
            )
        if key is None:
            raise Refused(
                403,
                "MissingAuthenticationToken",
                "Request is not signed; use the kumolab-local AWS profile (kumolab-emulator start writes it)",
            )
        raise Refused(403, "InvalidClientTokenId", "The security token included in the request is invalid.")

    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        try:
            if cognito_preflight(environ):
                check_request(environ.get("HTTP_HOST"), self.port, environ.get("CONTENT_LENGTH"), self.max_body)
                start_response("200 OK", [*self._cors(), ("Content-Length", "0")])
                return [b""]
            self.authorize(environ)
        except Refused as refused:
            return self._refuse(refused, start_response)
        if not environ.get("HTTP_AUTHORIZATION") and cognito_unsigned(
            environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/"), environ.get("HTTP_X_AMZ_TARGET")
        ):
            plain_start_response = start_response

            def start_response(status, headers, exc_info=None):
                return plain_start_response(status, [*headers, *self._cors()[:1]], exc_info)

        unsafe = []
        body = b'{"message":"the emulator produced a response header with CR or LF; refused"}'

        def checked_start_response(status, headers, exc_info=None):
            if not headers_safe([("status", status), *headers]):
                unsafe.append(True)
                status, headers = (
                    "502 Bad Gateway",
                    [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
                )
            return start_response(status, headers, exc_info)

        result = self.app(environ, checked_start_response)
        if unsafe:
            getattr(result, "close", lambda: None)()
            return [body]
        return result

    @staticmethod
    def _cors() -> list[tuple[str, str]]:
        return [
            ("Access-Control-Allow-Origin", "*"),
            ("Access-Control-Allow-Methods", "POST"),
            ("Access-Control-Allow-Headers", ", ".join(COGNITO_CORS_HEADERS)),
            ("Access-Control-Max-Age", "600"),
        ]

    @staticmethod
    def _refuse(refused: Refused, start_response) -> list[bytes]:
        body = json.dumps(
            {
                "__type": refused.code,
                "message": refused.message,
                "Error": {"Code": refused.code, "Message": refused.message},
            }
        ).encode()
        reason = {400: "Bad Request", 403: "Forbidden", 413: "Request Entity Too Large", 421: "Misdirected Request"}
        start_response(
            f"{refused.status} {reason.get(refused.status, 'Refused')}",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("x-amzn-ErrorType", refused.code),
                ("Connection", "close"),
            ],
        )
        return [body]
