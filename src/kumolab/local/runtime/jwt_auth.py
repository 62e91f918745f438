"""Verify a sign-in token (a JWT) the way API Gateway's authorizers do, for the local API stage.

API Gateway's Cognito user pool authorizer (REST APIs, ``type: cognito_user_pools``) and its JWT authorizer
(HTTP APIs) both check, before any function runs:

- the token is a JWS signed with RS256 by a key of the issuer's JWKS (``kid`` in the header names the key);
- ``iss`` is the issuer (for Cognito ``https://cognito-idp.<region>.amazonaws.com/<pool id>``);
- ``exp`` is in the future (and ``iat`` / ``nbf`` are not);
- ``token_use``: a Cognito authorizer on a method without OAuth scopes takes ID tokens only (``token_use: id``);
  with scopes, access tokens (``token_use: access``) carrying one of them;
- the audience: ``aud`` of an ID token, or ``client_id`` of an access token, is one of the accepted clients.

Anything else is ``401 {"message": "Unauthorized"}`` (API Gateway's answer to a missing or invalid token). The
work is done by PyJWT (``jwt.PyJWKClient`` fetches and caches the JWKS, ``jwt.decode`` checks the signature and
the registered claims); this module only says which checks apply.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import jwt

#: Algorithms the authorizers accept (Cognito signs with RS256; asymmetric keys only, never HS*/none).
ALGORITHMS = ["RS256"]


class Unauthorized(Exception):
    """The token is missing or invalid; ``reason`` says why (for the log, never sent to the client)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class JwtAuthorizer:
    """What one authorizer accepts. ``audiences`` are client ids; ``token_use`` is ``id``, ``access`` or None
    (an OIDC issuer's tokens carry no ``token_use``: then ``aud`` is checked against ``audiences``)."""

    issuer: str
    jwks_url: str
    audiences: tuple[str, ...]
    token_use: str | None = "id"
    scopes: tuple[str, ...] = ()
    leeway_s: int = 0
    _jwks: jwt.PyJWKClient | None = field(default=None, repr=False, compare=False)

    def jwks(self) -> jwt.PyJWKClient:
        if self._jwks is None:
            self._jwks = jwt.PyJWKClient(self.jwks_url, cache_keys=True, lifespan=300, timeout=5)
        return self._jwks

    def verify(self, token: str | None) -> dict:
        """The token's claims, or :class:`Unauthorized`."""
        if not token:
            raise Unauthorized("no token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"malformed token: {exc}") from None
        if header.get("alg") not in ALGORITHMS:
            raise Unauthorized(f"algorithm {header.get('alg')!r} is not accepted")
        try:
            key = self.jwks().get_signing_key(header.get("kid") or "")
        except jwt.PyJWKClientError as exc:
            raise Unauthorized(f"no key for the token's kid in {self.jwks_url}: {exc}") from None
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": ["exp", "iss", "sub"], "verify_aud": False},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"{type(exc).__name__}: {exc}") from None
        self._check_use_and_audience(claims)
        return claims

    def _check_use_and_audience(self, claims: dict) -> None:
        use = claims.get("token_use")
        if self.token_use is not None and use != self.token_use:
            raise Unauthorized(f"token_use {use!r}, this authorizer takes {self.token_use!r} tokens")
        if use == "access":
            audience = [claims.get("client_id")]
            granted = set(str(claims.get("scope", "")).split())
            if self.scopes and not granted & set(self.scopes):
                raise Unauthorized(f"none of the scopes {sorted(self.scopes)} was granted")
        else:
            aud = claims.get("aud")
            audience = aud if isinstance(aud, list) else [aud]
        if not set(self.audiences) & {a for a in audience if isinstance(a, str)}:
            raise Unauthorized(f"audience {audience!r} is not one of the accepted clients")


def bearer(headers: Iterable[tuple[str, str]], name: str = "Authorization") -> str | None:
    """The token in header ``name`` (API Gateway's identity source); a ``Bearer`` prefix is accepted."""
    for key, value in headers:
        if key.lower() == name.lower():
            value = value.strip()
            if value[:7].lower() == "bearer ":
                value = value[7:].strip()
            return value or None
    return None


def claims_as_api_gateway_passes_them(claims: dict) -> dict:
    """``requestContext.authorizer.claims`` of a REST API proxy event: every claim a string (lists joined
    by commas, numbers as text), as the Cognito authorizer passes them."""
    out = {}
    for key, value in claims.items():
        if isinstance(value, list):
            out[key] = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            out[key] = "true" if value else "false"
        else:
            out[key] = str(value)
    return out
