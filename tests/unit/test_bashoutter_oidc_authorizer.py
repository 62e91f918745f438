"""Bashoutter's Lambda TOKEN authorizer (files/lambda/bashoutter/oidc_authorizer.py) against a test OIDC issuer on
loopback (tests/support/oidc_issuer.py): each check of the token failing on its own, the policy and context it
returns, and the JWKS fetched once per execution environment."""

from __future__ import annotations

import importlib
import sys
import time

import jwt
import pytest
from support.oidc_issuer import OidcIssuer, rsa_key

from kumolab.paths import REPO_ROOT

AUDIENCE = "https://bashoutter.test"
METHOD_ARN = "arn:aws:execute-api:ap-northeast-1:123456789012:a1b2c3/prod/POST/haiku"


@pytest.fixture(scope="module")
def issuer():
    with OidcIssuer(AUDIENCE) as running:
        yield running


@pytest.fixture
def authorizer(issuer, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO_ROOT / "files" / "lambda" / "bashoutter"))
    monkeypatch.setenv("OIDC_ISSUER", issuer.url)
    monkeypatch.setenv("OIDC_AUDIENCE", AUDIENCE)
    monkeypatch.delenv("OIDC_JWKS_URL", raising=False)
    monkeypatch.setenv("OIDC_USER_CLAIM", "email")
    sys.modules.pop("oidc_authorizer", None)
    module = importlib.import_module("oidc_authorizer")
    yield module
    sys.modules.pop("oidc_authorizer", None)


def call(module, token):
    return module.handler({"type": "TOKEN", "authorizationToken": token, "methodArn": METHOD_ARN}, None)


def refused(module, token) -> None:
    with pytest.raises(Exception, match="^Unauthorized$"):
        call(module, token)


def test_a_valid_token_is_allowed_on_the_whole_stage_with_the_user_in_the_context(authorizer, issuer):
    result = call(authorizer, "Bearer " + issuer.mint("auth0|basho", email="basho@example.org"))
    assert result["principalId"] == "auth0|basho"
    assert result["policyDocument"]["Statement"] == [
        {
            "Action": "execute-api:Invoke",
            "Effect": "Allow",
            "Resource": "arn:aws:execute-api:ap-northeast-1:123456789012:a1b2c3/prod/*",
        }
    ]
    assert result["context"] == {"sub": "auth0|basho", "username": "basho@example.org"}
    # without "Bearer " too, as API Gateway passes the header's value as it came
    assert call(authorizer, issuer.mint("auth0|basho", email="b@example.org"))["context"]["username"] == "b@example.org"


def test_the_jwks_url_defaults_to_the_issuers_well_known_document(authorizer, issuer):
    assert authorizer.config()["jwks_url"] == issuer.url + ".well-known/jwks.json"


def test_the_jwks_is_fetched_once_per_execution_environment(authorizer, issuer):
    authorizer._JWKS.clear()
    before = issuer.jwks_requests
    for n in range(3):
        call(authorizer, issuer.mint(f"user-{n}", email=f"u{n}@example.org"))
    assert issuer.jwks_requests - before == 1


@pytest.mark.parametrize(
    "case",
    ["missing", "blank", "bearer only", "malformed", "expired", "not yet valid", "wrong audience", "no audience",
     "wrong issuer", "no expiry", "wrong key", "unknown kid", "alg none", "alg HS256"],
)  # fmt: skip
def test_a_bad_token_is_unauthorized(authorizer, issuer, case):
    now = int(time.time())
    email = {"email": "basho@example.org"}
    tokens = {
        "missing": None,
        "blank": "  ",
        "bearer only": "Bearer ",
        "malformed": "not.a.jwt",
        "expired": issuer.mint("basho", exp=now - 60, iat=now - 660, **email),
        "not yet valid": issuer.mint("basho", nbf=now + 300, **email),
        "wrong audience": issuer.mint("basho", aud="https://another.api", **email),
        "no audience": issuer.mint("basho", aud=None, **email),
        "wrong issuer": issuer.mint("basho", iss="https://evil.example/", **email),
        "no expiry": issuer.mint("basho", exp=None, **email),
        "wrong key": issuer.mint("basho", key=rsa_key(), **email),
        "unknown kid": issuer.mint("basho", key=rsa_key(), kid="rotated-away", **email),
        "alg none": jwt.encode(issuer.claims("basho", **email), None, algorithm="none", headers={"kid": issuer.kid}),
        "alg HS256": jwt.encode(
            issuer.claims("basho", **email),
            "a-shared-secret-of-32-bytes!!!!!",
            algorithm="HS256",
            headers={"kid": issuer.kid},
        ),  # fmt: skip
    }
    refused(authorizer, tokens[case])


def test_the_control_with_every_claim_right_passes(authorizer, issuer):
    # the same shapes as the refused ones above, all claims right: each refusal is for its one claim
    now = int(time.time())
    token = issuer.mint("basho", nbf=now - 5, iat=now - 5, email="basho@example.org")
    assert call(authorizer, token)["policyDocument"]["Statement"][0]["Effect"] == "Allow"


def test_a_valid_token_without_the_user_claim_is_denied(authorizer, issuer):
    result = call(authorizer, issuer.mint("auth0|nomail"))
    assert result["principalId"] == "auth0|nomail"
    assert result["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert "context" not in result


def test_the_user_claim_is_configurable(authorizer, issuer, monkeypatch):
    monkeypatch.setenv("OIDC_USER_CLAIM", "nickname")
    result = call(authorizer, issuer.mint("auth0|basho", nickname="basho", email="basho@example.org"))
    assert result["context"] == {"sub": "auth0|basho", "username": "basho"}
