"""Lab 5 with sign-in by any OIDC issuer (issue 15): ``bashoutter_auth=oidc`` deploys a Lambda TOKEN authorizer
(files/lambda/bashoutter/oidc_authorizer.py, PyJWT) in front of POST/PATCH/DELETE. The issuer is this test's own
(tests/support/oidc_issuer.py: an RSA key, its JWKS on loopback, tokens minted with PyJWT); the local stage invokes the
authorizer function as API Gateway does.

One deployment for Lab 5's three sign-in modes (tests/integration/test_bashoutter_signin.py says how)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import jwt
import pytest
from support.http import http
from support.oidc_issuer import OidcIssuer, rsa_key

from kumolab.labs import lab as registry_lab

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("bashoutter")]

VENV_BIN = Path(sys.executable).parent
AUDIENCE = "https://bashoutter.kumolab.test"
HAIKU = {"username": "basho", "first": "furuike ya", "second": "kawazu tobikomu", "third": "mizu no oto"}
PREFIX = registry_lab("bashoutter").prefix()
AUTHORIZER = f"{PREFIX}-oidc_authorizer"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def issuer():
    with OidcIssuer(AUDIENCE) as running:
        yield running


@pytest.fixture(scope="module")
def target_vars(issuer):
    return json.dumps(
        {
            "kumolab_local_services": {
                "runtime": {
                    "start": f"{VENV_BIN}/kumolab-runtime start --json --lambda-port 0 --api-port 0 --web-port 0"
                }
            },
            "bashoutter_auth": "oidc",
            "bashoutter_oidc_issuer": issuer.url,
            "bashoutter_oidc_audience": AUDIENCE,
            "bashoutter_oidc_user_claim": "email",
            "bashoutter_throttle_rate": 5000,
            "bashoutter_throttle_burst": 5000,
        }
    )


@pytest.fixture(scope="module")
def deployed(run_playbook, lab_env, target_vars):
    started = time.monotonic()
    first = run_playbook("bashoutter.yml", "-e", target_vars)
    assert first.rc == 0, first.output[-4000:]
    print(f"deploy with bashoutter_auth=oidc: {time.monotonic() - started:.1f} s")
    return json.loads((Path(lab_env["KUMOLAB_RESULTS_DIR"]) / "bashoutter" / "outputs.json").read_text())


@pytest.fixture(scope="module")
def api(deployed):
    return deployed["api_url"]


def authorizer_invocations(lab_env) -> int:
    log = Path(lab_env["KUMOLAB_STATE_DIR"]) / "runtime" / "logs" / f"{AUTHORIZER}.log"
    return log.read_text(errors="replace").count("REPORT RequestId:") if log.exists() else 0


def test_the_authorizer_is_deployed_least_privileged_and_a_rerun_changes_nothing(
    deployed, issuer, aws, run_playbook, target_vars
):
    assert deployed["signin"] == {"mode": "oidc", "issuer": issuer.url, "audience": AUDIENCE, "userClaim": "email"}
    authorizers = aws("apigateway").get_authorizers(restApiId=deployed["api_id"])["items"]
    assert [(a["name"], a["type"], a["authorizerResultTtlInSeconds"]) for a in authorizers] == [("oidc", "TOKEN", 300)]
    assert AUTHORIZER in authorizers[0]["authorizerUri"]
    function = aws("lambda").get_function(FunctionName=AUTHORIZER)
    assert function["Tags"]["Lab"] == "bashoutter" and function["Tags"]["Owner"]
    assert function["Configuration"]["Environment"]["Variables"]["OIDC_JWKS_URL"] == issuer.jwks_url
    policy = json.loads(aws("lambda").get_policy(FunctionName=AUTHORIZER)["Policy"])
    [statement] = policy["Statement"]
    assert statement["Principal"] == {"Service": "apigateway.amazonaws.com"}
    assert statement["Condition"]["ArnLike"]["AWS:SourceArn"].endswith(f":{deployed['api_id']}/authorizers/*")
    role = aws("iam").get_role_policy(RoleName=AUTHORIZER, PolicyName="least-privilege")["PolicyDocument"]
    assert [s["Action"] for s in role["Statement"]] == [["logs:CreateLogStream", "logs:PutLogEvents"]]
    group = aws("logs").describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{AUTHORIZER}")["logGroups"]
    assert [g["retentionInDays"] for g in group] == [7]
    second = run_playbook("bashoutter.yml", "-e", target_vars)
    assert second.rc == 0, second.output[-4000:]
    assert second.changed == 0, second.changed_tasks()


def test_get_stays_public_and_writes_without_a_token_are_401(api):
    status, listed = http("GET", f"{api}/haiku")
    assert status == 200 and isinstance(listed, list)
    for method, path, body in (
        ("POST", "/haiku", HAIKU),
        ("PATCH", "/haiku/abc", None),
        ("DELETE", "/haiku/abc", None),
    ):
        assert http(method, f"{api}{path}", body) == (401, {"message": "Unauthorized"}), (method, path)


def test_a_valid_token_posts_as_its_user_and_only_they_may_delete(api, issuer):
    basho = issuer.mint("auth0|basho", email="basho@kumolab.test")
    buson = issuer.mint("auth0|buson", email="buson@kumolab.test")
    status, posted = http("POST", f"{api}/haiku", HAIKU, bearer(basho))
    assert status == 201, posted
    assert posted["author"] == "basho@kumolab.test"  # the configured user claim, through the authorizer's context
    status, listed = http("GET", f"{api}/haiku")
    assert next(h for h in listed if h["item_id"] == posted["item_id"])["author"] == "basho@kumolab.test"
    url = f"{api}/haiku/{posted['item_id']}"
    status, liked = http("PATCH", url, None, bearer(buson))
    assert (status, liked["likes"]) == (200, 1)
    status, answer = http("DELETE", url, None, bearer(buson))
    assert status == 403 and answer["message"] == "only the author of a haiku may delete it", answer
    assert http("DELETE", url, None, {"Authorization": basho})[0] == 204  # the header without "Bearer" too
    assert http("DELETE", url, None, bearer(basho))[0] == 404


@pytest.mark.parametrize(
    "case", ["malformed", "expired", "wrong audience", "wrong issuer", "wrong key", "alg none", "not yet valid"]
)
def test_a_bad_token_is_401_and_never_reaches_the_function(api, issuer, case):
    now, email = int(time.time()), {"email": "forger@kumolab.test"}
    token = {
        "malformed": "not-a-jwt",
        "expired": issuer.mint("forger", exp=now - 30, iat=now - 630, **email),
        "wrong audience": issuer.mint("forger", aud="https://another.api", **email),
        "wrong issuer": issuer.mint("forger", iss="https://evil.example/", **email),
        "wrong key": issuer.mint("forger", key=rsa_key(), **email),
        "alg none": jwt.encode(issuer.claims("forger", **email), None, algorithm="none", headers={"kid": issuer.kid}),
        "not yet valid": issuer.mint("forger", nbf=now + 600, **email),
    }[case]
    before = http("GET", f"{api}/haiku")[1]
    assert http("POST", f"{api}/haiku", HAIKU, bearer(token)) == (401, {"message": "Unauthorized"})
    assert len(http("GET", f"{api}/haiku")[1]) == len(before)  # nothing was posted


def test_a_valid_token_without_the_user_claim_is_403_explicit_deny(api, issuer):
    status, answer = http("POST", f"{api}/haiku", HAIKU, bearer(issuer.mint("auth0|nomail")))
    assert (status, answer) == (
        403,
        {"message": "User is not authorized to access this resource with an explicit deny"},
    )


def test_the_authorizers_answer_is_cached_by_token(api, issuer, lab_env):
    token = issuer.mint("auth0|issa", email="issa@kumolab.test")
    before = authorizer_invocations(lab_env)
    for _ in range(3):
        assert http("POST", f"{api}/haiku", HAIKU, bearer(token))[0] == 201
    deadline = time.monotonic() + 10
    while authorizer_invocations(lab_env) == before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert authorizer_invocations(lab_env) - before == 1


def test_without_its_lambda_permission_the_authorizer_is_a_500(api, issuer, aws, deployed):
    # As on AWS: API Gateway may invoke the authorizer only with a permission for apigateway.amazonaws.com.
    awslambda = aws("lambda")
    [statement] = json.loads(awslambda.get_policy(FunctionName=AUTHORIZER)["Policy"])["Statement"]
    awslambda.remove_permission(FunctionName=AUTHORIZER, StatementId=statement["Sid"])
    try:
        status, _ = http("POST", f"{api}/haiku", HAIKU, bearer(issuer.mint("auth0|kikaku", email="k@kumolab.test")))
        assert status == 500
    finally:
        awslambda.add_permission(
            FunctionName=AUTHORIZER,
            StatementId=statement["Sid"],
            Action="lambda:InvokeFunction",
            Principal="apigateway.amazonaws.com",
            SourceArn=statement["Condition"]["ArnLike"]["AWS:SourceArn"],
        )
    status, _ = http("POST", f"{api}/haiku", HAIKU, bearer(issuer.mint("auth0|kikaku", email="k@kumolab.test")))
    assert status == 201
