"""A test OpenID Connect issuer on loopback: its own RSA key, its JWKS and discovery document over HTTP, and tokens
minted with PyJWT (what Auth0 issues: RS256, ``kid``, ``iss`` with a trailing slash, ``aud``, ``exp``, ``iat``)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa


def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(private, kid: str) -> dict:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    return dict(jwk, kid=kid, alg="RS256", use="sig")


class OidcIssuer:
    """``with OidcIssuer(audience) as issuer:`` serves ``/.well-known/jwks.json`` and ``openid-configuration``;
    ``issuer.mint(sub, **claims)`` signs a token; ``issuer.jwks_requests`` counts JWKS fetches."""

    def __init__(self, audience: str, kid: str | None = None):
        self.audience = audience
        self.key, self.kid = rsa_key(), kid or f"test-{uuid.uuid4().hex[:8]}"
        self.jwks_requests = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start the issuer first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    @property
    def jwks_url(self) -> str:
        return self.url + ".well-known/jwks.json"

    def start(self) -> OidcIssuer:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                if self.path == "/.well-known/jwks.json":
                    issuer.jwks_requests += 1
                    body = {"keys": [public_jwk(issuer.key, issuer.kid)]}
                elif self.path == "/.well-known/openid-configuration":
                    body = {
                        "issuer": issuer.url,
                        "jwks_uri": issuer.jwks_url,
                        "id_token_signing_alg_values_supported": ["RS256"],
                    }
                else:
                    self.send_error(404)
                    return
                raw = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> OidcIssuer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def claims(self, sub: str, **overrides) -> dict:
        now = int(time.time())
        claims = {
            "iss": self.url,
            "sub": sub,
            "aud": [self.audience, self.url + "userinfo"],
            "iat": now,
            "exp": now + 600,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def mint(self, sub: str, key=None, kid: str | None = None, algorithm: str = "RS256", **overrides) -> str:
        """A token of ``sub`` signed with the issuer's key (or ``key``); ``overrides`` change or (None) drop claims."""
        return jwt.encode(
            self.claims(sub, **overrides), key or self.key, algorithm=algorithm, headers={"kid": kid or self.kid}
        )
