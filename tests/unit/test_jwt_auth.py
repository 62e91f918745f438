"""The local stage's token check (kumolab.local.runtime.jwt_auth): each thing API Gateway's Cognito authorizer
checks, each failing on its own, against a JWKS served over HTTP on loopback with a key generated here."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from kumolab.local.runtime.jwt_auth import JwtAuthorizer, Unauthorized, bearer, claims_as_api_gateway_passes_them

ISSUER = "https://cognito-idp.ap-northeast-1.amazonaws.com/ap-northeast-1_TestPool1"
CLIENT = "client0123456789abcdefghij"


def _key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


TRUSTED, UNTRUSTED = _key(), _key()


def _jwk(private, kid: str) -> dict:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    return dict(jwk, kid=kid, alg="RS256", use="sig")


@pytest.fixture(scope="module")
def jwks_url():
    body = json.dumps({"keys": [_jwk(TRUSTED, "trusted")]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/ap-northeast-1_TestPool1/.well-known/jwks.json"
    server.shutdown()


@pytest.fixture
def authorizer(jwks_url):
    return JwtAuthorizer(issuer=ISSUER, jwks_url=jwks_url, audiences=(CLIENT,))


def token(key=TRUSTED, kid="trusted", alg="RS256", **overrides) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "5f0c4a1e-0000-4000-8000-000000000001",
        "aud": CLIENT,
        "token_use": "id",
        "cognito:username": "basho",
        "iat": now,
        "auth_time": now,
        "exp": now + 3600,
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def test_a_token_signed_by_the_issuer_for_this_client_gives_its_claims(authorizer):
    claims = authorizer.verify(token())
    assert claims["sub"] == "5f0c4a1e-0000-4000-8000-000000000001" and claims["cognito:username"] == "basho"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: None, "no token"),
        (lambda: "", "no token"),
        (lambda: "not-a-jwt", "malformed"),
        (lambda: "a.b.c", "malformed"),
        (lambda: token(exp=int(time.time()) - 5), "ExpiredSignatureError"),
        (lambda: token(aud="someone-elses-client"), "audience"),
        (lambda: token(iss="https://cognito-idp.ap-northeast-1.amazonaws.com/ap-northeast-1_Other"), "InvalidIssuer"),
        (lambda: token(token_use="access"), "token_use"),
        (lambda: token(exp=None), "MissingRequiredClaim"),
        (lambda: token(key=UNTRUSTED, kid="untrusted"), "no key"),
        (lambda: token(key=UNTRUSTED, kid="trusted"), "InvalidSignatureError"),
        (lambda: jwt.encode({"sub": "x", "iss": ISSUER, "aud": CLIENT, "exp": 2**40}, "s" * 32, "HS256"), "algorithm"),
    ],
    ids=[
        "missing",
        "empty",
        "malformed",
        "malformed-segments",
        "expired",
        "wrong-audience",
        "wrong-issuer",
        "access-token-where-id-token-is-needed",
        "no-exp",
        "unknown-key",
        "forged-with-the-trusted-kid",
        "hs256-with-a-guessable-secret",
    ],
)
def test_each_invalid_token_is_unauthorized_for_its_own_reason(authorizer, make, reason):
    with pytest.raises(Unauthorized) as info:
        authorizer.verify(make())
    assert reason in info.value.reason


def test_an_access_token_is_checked_by_client_id_and_scope(jwks_url):
    scoped = JwtAuthorizer(ISSUER, jwks_url, (CLIENT,), token_use="access", scopes=("haiku/write",))
    access = {"aud": None, "token_use": "access", "client_id": CLIENT}
    assert scoped.verify(token(**access, scope="openid haiku/write"))["client_id"] == CLIENT
    with pytest.raises(Unauthorized, match="scopes"):
        scoped.verify(token(**access, scope="openid"))
    with pytest.raises(Unauthorized, match="audience"):
        scoped.verify(token(**dict(access, client_id="other"), scope="haiku/write"))


def test_an_oidc_issuer_without_token_use_is_checked_by_aud(jwks_url):
    oidc = JwtAuthorizer("https://tenant.example.auth0.com/", jwks_url, ("https://bashoutter",), token_use=None)
    good = token(iss="https://tenant.example.auth0.com/", aud=["https://bashoutter", "x"], token_use=None)
    assert oidc.verify(good)["iss"] == "https://tenant.example.auth0.com/"
    with pytest.raises(Unauthorized, match="audience"):
        oidc.verify(token(iss="https://tenant.example.auth0.com/", aud="https://other", token_use=None))


def test_the_token_is_read_from_the_header_with_or_without_bearer():
    assert bearer([("authorization", "Bearer abc")]) == "abc"
    assert bearer([("Authorization", "abc")]) == "abc"
    assert bearer([("Authorization", "  ")]) is None
    assert bearer([("X-Other", "abc")]) is None


def test_claims_reach_the_handler_as_strings_as_api_gateway_passes_them():
    claims = claims_as_api_gateway_passes_them(
        {"exp": 1700000000, "cognito:groups": ["a", "b"], "email_verified": True}
    )
    assert claims == {"exp": "1700000000", "cognito:groups": "a,b", "email_verified": "true"}
