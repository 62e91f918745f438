"""Lab 5 with sign-in (issue 15) on the emulator: ``bashoutter_auth=cognito`` deploys a Cognito user pool and web
client and puts a Cognito authorizer on POST/PATCH/DELETE. Real tokens come from moto's Cognito (InitiateAuth,
unsigned, as a browser calls it); the local stage verifies them as API Gateway does.

Lab 5's three sign-in modes share one deployment, to keep the suite's time: test_bashoutter_lab.py (none),
test_bashoutter_oidc.py (oidc) and test_bashoutter_signin.py (cognito) are one xdist group and run in that order;
each re-runs the playbook in its own mode (switching the deployed lab, as a user would) and the last one tears
the lab down and checks that nothing of any mode is left. Each module also runs on its own (it deploys).

Forged tokens: moto signs every pool's tokens with one RSA key that ships with moto
(``moto/cognitoidp/resources/jwks-private.json.gz``). Signing with it, a test can change exactly one claim of an
otherwise valid token (``exp``, ``aud``, ``iss``, ``token_use``): the control, all claims right, is accepted, so
each 401 below is for that one claim. A key generated here, which the pool's JWKS does not hold, is refused too.
"""

from __future__ import annotations

import gzip
import json
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import jwt
import moto.cognitoidp
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from support.http import http

from kumolab.labs import lab as registry_lab

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("bashoutter")]

VENV_BIN = Path(sys.executable).parent
PREFIX = registry_lab("bashoutter").prefix()
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TARGET_VARS = json.dumps(
    {
        "kumolab_local_services": {
            "runtime": {"start": f"{VENV_BIN}/kumolab-runtime start --json --lambda-port 0 --api-port 0 --web-port 0"}
        },
        "bashoutter_auth": "cognito",
        "bashoutter_throttle_rate": 5000,
        "bashoutter_throttle_burst": 5000,
    }
)
HAIKU = {"username": "basho", "first": "furuike ya", "second": "kawazu tobikomu", "third": "mizu no oto"}
PASSWORD = "Furuike-ya-2026!"


def initiate_auth(endpoint: str, client_id: str, username: str, password: str = PASSWORD) -> dict:
    """Cognito's InitiateAuth (USER_PASSWORD_AUTH) without a signature, as a browser's sign-in form calls it."""
    req = urllib.request.Request(
        endpoint + "/",
        data=json.dumps(
            {
                "AuthFlow": "USER_PASSWORD_AUTH",
                "ClientId": client_id,
                "AuthParameters": {"USERNAME": username, "PASSWORD": password},
            }
        ).encode(),
        method="POST",
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "AWSCognitoIdentityProviderService.InitiateAuth",
        },
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())["AuthenticationResult"]


@pytest.fixture(scope="module")
def deployed(run_playbook, lab_env):
    first = run_playbook("bashoutter.yml", "-e", TARGET_VARS)
    assert first.rc == 0, first.output[-4000:]
    return json.loads((Path(lab_env["KUMOLAB_RESULTS_DIR"]) / "bashoutter" / "outputs.json").read_text())


@pytest.fixture(scope="module")
def signin(deployed):
    return deployed["signin"]


@pytest.fixture(scope="module")
def api(deployed):
    return deployed["api_url"]


@pytest.fixture(scope="module")
def users(signin, aws):
    """Two users of the lab's pool (created by an administrator: the pool takes no self sign-up)."""
    idp = aws("cognito-idp")
    names = {}
    for who in ("basho", "buson"):
        name = f"{who}-{uuid.uuid4().hex[:6]}"
        idp.admin_create_user(
            UserPoolId=signin["userPoolId"], Username=name, TemporaryPassword="Temp-pass-1!", MessageAction="SUPPRESS"
        )
        idp.admin_set_user_password(UserPoolId=signin["userPoolId"], Username=name, Password=PASSWORD, Permanent=True)
        names[who] = name
    return names


@pytest.fixture(scope="module")
def tokens(signin, users):
    return {who: initiate_auth(signin["endpoint"], signin["clientId"], name) for who, name in users.items()}


def moto_key():
    """The private key moto signs every pool's tokens with (kid ``dummy``), as a JWK."""
    path = Path(moto.cognitoidp.__file__).parent / "resources" / "jwks-private.json.gz"
    jwk = json.loads(gzip.decompress(path.read_bytes()))
    jwk = jwk["keys"][0] if "keys" in jwk else jwk
    return jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(jwk)), jwk.get("kid", "dummy")


def forged(signin, key=None, kid=None, **overrides) -> str:
    """An ID token of the lab's pool and client with ``overrides``, signed with ``key`` (default moto's)."""
    default_key, default_kid = moto_key()
    now = int(time.time())
    claims = {
        "iss": signin["issuer"],
        "sub": str(uuid.uuid4()),
        "aud": signin["clientId"],
        "token_use": "id",
        "cognito:username": "forger",
        "iat": now,
        "auth_time": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return jwt.encode(claims, key or default_key, algorithm="RS256", headers={"kid": kid or default_kid})


def auth(token: str) -> dict:
    return {"Authorization": token}


def test_the_pool_and_its_web_client_are_deployed_and_a_rerun_changes_nothing(deployed, signin, aws, run_playbook):
    pool = aws("cognito-idp").describe_user_pool(UserPoolId=signin["userPoolId"])["UserPool"]
    assert pool["Name"] == PREFIX and pool["UserPoolTags"]["Lab"] == "bashoutter"
    client = aws("cognito-idp").describe_user_pool_client(UserPoolId=pool["Id"], ClientId=signin["clientId"])
    assert "ClientSecret" not in client["UserPoolClient"]  # a browser's client: public, no secret
    assert "ALLOW_USER_PASSWORD_AUTH" in client["UserPoolClient"]["ExplicitAuthFlows"]
    authorizers = aws("apigateway").get_authorizers(restApiId=deployed["api_id"])["items"]
    assert [(a["type"], a["providerARNs"]) for a in authorizers] == [("COGNITO_USER_POOLS", [pool["Arn"]])]
    second = run_playbook("bashoutter.yml", "-e", TARGET_VARS)
    assert second.rc == 0, second.output[-4000:]
    assert second.changed == 0, second.changed_tasks()


def test_get_stays_public_and_writes_need_a_token(api):
    status, listed = http("GET", f"{api}/haiku")
    assert status == 200 and isinstance(listed, list)
    for method, path, body in (
        ("POST", "/haiku", HAIKU),
        ("PATCH", "/haiku/abc", None),
        ("DELETE", "/haiku/abc", None),
    ):
        status, answer = http(method, f"{api}{path}", body)
        assert (status, answer) == (401, {"message": "Unauthorized"}), (method, path)


def test_a_signed_in_post_records_its_author_from_the_token(api, tokens, users):
    status, posted = http("POST", f"{api}/haiku", HAIKU, auth(tokens["basho"]["IdToken"]))
    assert status == 201, posted
    assert posted["author"] == users["basho"]  # cognito:username, from requestContext.authorizer.claims
    status, listed = http("GET", f"{api}/haiku")
    assert next(h for h in listed if h["item_id"] == posted["item_id"])["author"] == users["basho"]
    status, liked = http("PATCH", f"{api}/haiku/{posted['item_id']}", None, auth(tokens["buson"]["IdToken"]))
    assert (status, liked["likes"]) == (200, 1)


def test_only_its_author_may_delete_a_haiku(api, tokens):
    status, posted = http("POST", f"{api}/haiku", HAIKU, auth(tokens["basho"]["IdToken"]))
    assert status == 201
    url = f"{api}/haiku/{posted['item_id']}"
    status, answer = http("DELETE", url, None, auth(tokens["buson"]["IdToken"]))
    assert status == 403 and answer["message"] == "only the author of a haiku may delete it", answer
    assert http("DELETE", url, None, auth(f"Bearer {tokens['basho']['IdToken']}"))[0] == 204
    assert http("DELETE", url, None, auth(tokens["basho"]["IdToken"]))[0] == 404


def test_a_forged_token_with_every_claim_right_is_the_control(api, signin):
    # Signed with moto's key: what makes each forgery below fail is its one wrong claim, not the key.
    status, posted = http("POST", f"{api}/haiku", HAIKU, auth(forged(signin)))
    assert (status, posted["author"]) == (201, "forger")


@pytest.mark.parametrize(
    "overrides",
    [
        {"exp": int(time.time()) - 60},
        {"aud": "wrongclient0123456789abcd"},
        {"iss": "https://cognito-idp.ap-northeast-1.amazonaws.com/ap-northeast-1_NotThePool"},
        {"token_use": "access"},
    ],
    ids=["expired", "wrong-audience", "wrong-issuer", "not-an-id-token"],
)
def test_a_token_with_one_wrong_claim_is_401(api, signin, overrides):
    status, answer = http("POST", f"{api}/haiku", HAIKU, auth(forged(signin, **overrides)))
    assert (status, answer) == (401, {"message": "Unauthorized"})


def test_malformed_unsigned_and_untrusted_tokens_are_401(api, signin):
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for token in (
        "not-a-token",
        "Bearer ",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",  # alg none
        forged(signin, key=stranger, kid="stranger"),  # a key the pool's JWKS does not hold
        forged(signin, key=stranger),  # moto's kid, someone else's signature
    ):
        status, answer = http("POST", f"{api}/haiku", HAIKU, auth(token))
        assert (status, answer) == (401, {"message": "Unauthorized"}), token[:30]


def test_real_tokens_of_the_wrong_kind_or_pool_are_401(api, tokens, aws, users):
    # An access token (token_use access) where the authorizer, without scopes, takes ID tokens only.
    status, _ = http("POST", f"{api}/haiku", HAIKU, auth(tokens["basho"]["AccessToken"]))
    assert status == 401
    # A real ID token of another pool's client: signed by the same key, but another issuer and client id.
    idp = aws("cognito-idp")
    other = idp.create_user_pool(PoolName=f"signin-other-{uuid.uuid4().hex[:6]}")["UserPool"]["Id"]
    try:
        client = idp.create_user_pool_client(
            UserPoolId=other, ClientName="other", ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH"]
        )["UserPoolClient"]["ClientId"]
        idp.admin_create_user(
            UserPoolId=other, Username="x", TemporaryPassword="Temp-pass-1!", MessageAction="SUPPRESS"
        )
        idp.admin_set_user_password(UserPoolId=other, Username="x", Password=PASSWORD, Permanent=True)
        endpoint = idp.meta.endpoint_url
        foreign = initiate_auth(endpoint, client, "x")["IdToken"]
        assert jwt.decode(foreign, options={"verify_signature": False})["aud"] == client
        status, _ = http("POST", f"{api}/haiku", HAIKU, auth(foreign))
        assert status == 401
    finally:
        idp.delete_user_pool(UserPoolId=other)


def test_sign_in_round_trip(api, signin, users):
    """InitiateAuth, then a signed-in POST: the figures go to test-artifacts/bashoutter_signin.json."""
    sign_in, post = [], []
    for _ in range(20):
        started = time.perf_counter()
        token = initiate_auth(signin["endpoint"], signin["clientId"], users["basho"])["IdToken"]
        signed_in = time.perf_counter()
        status, _ = http("POST", f"{api}/haiku", HAIKU, auth(token))
        done = time.perf_counter()
        assert status == 201
        sign_in.append(signed_in - started)
        post.append(done - signed_in)
    figures = {
        "initiate_auth_p50_ms": round(statistics.median(sign_in) * 1000, 1),
        "signed_in_post_p50_ms": round(statistics.median(post) * 1000, 1),
        "round_trip_p50_ms": round(statistics.median(a + b for a, b in zip(sign_in, post, strict=True)) * 1000, 1),
        "samples": len(sign_in),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "bashoutter_signin.json").write_text(json.dumps(figures, indent=2))
    print(figures)
    assert figures["round_trip_p50_ms"] < 5000


@pytest.mark.browser
def test_the_gui_signs_in_posts_likes_deletes_and_signs_out(deployed, users):
    """Headless Chromium on the lab's website: sign in (InitiateAuth from the page, across origins), post, like,
    delete one's own haiku, sign out; the screenshot goes to test-artifacts/bashoutter_signin_gui.png."""
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    third = f"水の音 {uuid.uuid4().hex[:4]}"
    console_errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 900, "height": 1100})
            page.on("console", lambda msg: msg.type == "error" and console_errors.append(msg.text))
            page.goto(deployed["website_url"])
            expect(page.locator("#signin-card")).to_be_visible(timeout=15000)
            expect(page.locator("#post-button")).to_be_disabled()  # signed out: no posting
            page.fill("#signin-user", users["basho"])
            page.fill("#signin-password", PASSWORD)
            page.click("#signin-button")
            expect(page.locator("#whoami")).to_have_text(users["basho"], timeout=15000)
            for field, value in {"first": "古池や", "second": "蛙飛び込む", "third": third, "username": "芭蕉"}.items():
                page.fill(f"#{field}", value)
            page.click("#post-button")
            card = page.locator(".haiku", has_text=third)
            expect(card).to_have_count(1, timeout=15000)
            expect(card.locator(".meta")).to_contain_text(f"by {users['basho']}")
            card.locator(".like").click()
            expect(card.locator(".like .count")).to_have_text("1", timeout=10000)
            page.screenshot(path=str(ARTIFACTS / "bashoutter_signin_gui.png"), full_page=True)
            card.locator(".delete").click()
            expect(page.locator(".haiku", has_text=third)).to_have_count(0, timeout=15000)
            page.click("#signout-button")
            expect(page.locator("#signin-form")).to_be_visible()
            expect(page.locator("#post-button")).to_be_disabled()
            expect(page.locator(".haiku .delete")).to_have_count(0)  # signed out: nothing is anyone's to delete
        finally:
            browser.close()
    assert not console_errors, console_errors


def test_teardown_removes_every_mode_and_the_bucket(deployed, signin, run_playbook, aws):
    """The lab's one teardown (after the three modes): the pool, the authorizer function, the non-empty website
    bucket, the table, every function, role and log group, the API, the local runtime."""
    aws("s3").put_object(Bucket=deployed["bucket"], Key="extra/left-behind.txt", Body=b"x")  # non-empty bucket
    result = run_playbook("teardown.yml", "-e", "lab=bashoutter")
    assert result.rc == 0, result.output[-4000:]  # teardown fails itself when anything tagged Lab=bashoutter is left
    pools = aws("cognito-idp").list_user_pools(MaxResults=60)["UserPools"]
    assert signin["userPoolId"] not in [p["Id"] for p in pools]
    assert deployed["bucket"] not in [b["Name"] for b in aws("s3").list_buckets()["Buckets"]]
    assert deployed["table_name"] not in aws("dynamodb").list_tables()["TableNames"]
    names = [f["FunctionName"] for f in aws("lambda").list_functions()["Functions"]]
    assert not [n for n in names if n.startswith(PREFIX)], names
    assert not [r["RoleName"] for r in aws("iam").list_roles()["Roles"] if r["RoleName"].startswith(PREFIX)]
    assert not aws("logs").describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{PREFIX}")["logGroups"]
    assert deployed["api_id"] not in [a["id"] for a in aws("apigateway").get_rest_apis()["items"]]
    assert not [a for a in aws("apigateway").get_rest_apis()["items"] if a["name"] == PREFIX]
    status = subprocess.run(
        [str(VENV_BIN / "kumolab-runtime"), "status", "--lab", "bashoutter"], capture_output=True, text=True
    )
    assert status.returncode == 1
