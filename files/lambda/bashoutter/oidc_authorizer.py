"""API Gateway Lambda TOKEN authorizer for ``bashoutter_auth: oidc``: any OpenID Connect issuer (Auth0, Okta, Keycloak,
...) instead of a Cognito user pool, which is all a REST API's built-in authorizer takes.

API Gateway calls it with ``{"type": "TOKEN", "authorizationToken": "<Authorization header>", "methodArn": ...}``
before the haiku functions run. The token is verified with PyJWT:

- a JWS signed with RS256 (nothing else: never ``none`` or HS*) by the key of the issuer's JWKS that its ``kid``
  names; the JWKS is fetched once per execution environment and kept (``jwt.PyJWKClient``, keys cached for
  ``OIDC_JWKS_CACHE_S``; an unknown ``kid`` refetches, so a key rotation is picked up);
- ``iss`` is ``OIDC_ISSUER``, ``aud`` holds ``OIDC_AUDIENCE``, ``exp`` is in the future, ``nbf``/``iat`` not in
  the future (``OIDC_LEEWAY_S`` seconds of clock skew).

A missing or invalid token raises ``Exception("Unauthorized")``: API Gateway answers 401 ``{"message":
"Unauthorized"}`` (its contract for Lambda authorizers). A valid token whose user claim (``OIDC_USER_CLAIM``:
``sub``, ``email``, ``nickname``, ...) is missing gets a Deny policy: 403. Otherwise an Allow policy for every
method of the stage (so API Gateway's cache of this result by token serves the token's other calls too) and the
context the haiku functions read the author from: ``requestContext.authorizer.sub`` and ``.username``.

Configuration comes from the function's environment only; nothing here imports kumolab.
"""

from __future__ import annotations

import os

import jwt

#: The only signing algorithm accepted (the issuer's JWKS holds RSA keys).
ALGORITHMS = ["RS256"]

_JWKS: dict[str, jwt.PyJWKClient] = {}


def config() -> dict:
    """The authorizer's settings (KeyError, as on AWS, when OIDC_ISSUER or OIDC_AUDIENCE is missing)."""
    issuer = os.environ["OIDC_ISSUER"]
    return {
        "issuer": issuer,
        "audience": os.environ["OIDC_AUDIENCE"],
        "jwks_url": os.environ.get("OIDC_JWKS_URL") or issuer.rstrip("/") + "/.well-known/jwks.json",
        "user_claim": os.environ.get("OIDC_USER_CLAIM") or "sub",
        "leeway_s": int(os.environ.get("OIDC_LEEWAY_S") or 0),
        "cache_s": int(os.environ.get("OIDC_JWKS_CACHE_S") or 300),
    }


def jwks(url: str, cache_s: int) -> jwt.PyJWKClient:
    """One JWKS client per URL and execution environment: its keys are reused by every later invocation."""
    if url not in _JWKS:
        _JWKS[url] = jwt.PyJWKClient(url, cache_keys=True, lifespan=cache_s, timeout=5)
    return _JWKS[url]


class Unauthorized(Exception):
    """Why a token is refused (logged; API Gateway sends the client only "Unauthorized")."""


def token_of(event: dict) -> str:
    """The token of the ``Authorization`` header, with or without ``Bearer``."""
    raw = event.get("authorizationToken") if isinstance(event, dict) else None
    if not isinstance(raw, str) or not raw.strip():
        raise Unauthorized("no token")
    value = raw.strip()
    if value[:7].lower() == "bearer ":
        value = value[7:].strip()
    if not value:
        raise Unauthorized("no token")
    return value


def verify(token: str, settings: dict) -> dict:
    """The token's claims, or :class:`Unauthorized` saying why."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"malformed token: {exc}") from None
    if header.get("alg") not in ALGORITHMS:
        raise Unauthorized(f"algorithm {header.get('alg')!r} is not accepted")
    try:
        key = jwks(settings["jwks_url"], settings["cache_s"]).get_signing_key(str(header.get("kid") or ""))
    except jwt.PyJWKClientError as exc:
        raise Unauthorized(f"no key for the token's kid in {settings['jwks_url']}: {exc}") from None
    try:
        return jwt.decode(
            token,
            key.key,
            algorithms=ALGORITHMS,
            issuer=settings["issuer"],
            audience=settings["audience"],
            leeway=settings["leeway_s"],
            options={"require": ["exp", "iss", "aud", "sub"]},
        )
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"{type(exc).__name__}: {exc}") from None


def stage_arn(method_arn: str) -> str:
    """``arn:aws:execute-api:<region>:<account>:<api>/<stage>/*``: every method of the stage of ``method_arn``."""
    head, _, path = str(method_arn).partition("/")
    stage = path.split("/", 1)[0] if path else "*"
    return f"{head}/{stage or '*'}/*"


def policy(principal: str, effect: str, method_arn: str, context: dict | None = None) -> dict:
    out = {
        "principalId": principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": stage_arn(method_arn)}],
        },
    }
    if context:
        out["context"] = context
    return out


def handler(event, context):
    settings = config()
    method_arn = event.get("methodArn", "") if isinstance(event, dict) else ""
    try:
        claims = verify(token_of(event), settings)
    except Unauthorized as denied:
        print(f"refused: {denied}")
        raise Exception("Unauthorized") from None  # API Gateway's contract: this message is a 401
    user = claims.get(settings["user_claim"])
    if not isinstance(user, str) or not user:
        print(f"refused: the token of {claims['sub']!r} has no {settings['user_claim']!r} claim")
        return policy(str(claims["sub"]), "Deny", method_arn)
    # Context values must be strings, numbers or booleans (API Gateway refuses objects and lists).
    return policy(str(claims["sub"]), "Allow", method_arn, {"sub": str(claims["sub"]), "username": user[:128]})
