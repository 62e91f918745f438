"""Lab 5 end to end on the emulator: deploy, re-run changes nothing, every status code through the local
stage, the website, 1,000 concurrent likes, 2,000 concurrent posts, the clients (teardown: the sign-in module).

One deployment for Lab 5's three sign-in modes (tests/integration/test_bashoutter_signin.py says how)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kumolab.labs import lab as registry_lab

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("bashoutter")]

VENV_BIN = Path(sys.executable).parent
PREFIX = registry_lab("bashoutter").prefix()
# The local inventory's runtime, on free ports so that a user's running lab is never in the way. The
# stage's throttling is raised so the load tests measure the runtime, not the lab's 100 req/s limit.
TARGET_VARS = json.dumps(
    {
        "kumolab_local_services": {
            "runtime": {"start": f"{VENV_BIN}/kumolab-runtime start --json --lambda-port 0 --api-port 0 --web-port 0"}
        },
        "bashoutter_throttle_rate": 5000,
        "bashoutter_throttle_burst": 5000,
    }
)
HAIKU = {"username": "issa", "first": "yasegaeru", "second": "makeru na issa", "third": "kore ni ari"}


def http(method: str, url: str, body=None, headers=None):
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture(scope="module")
def deployed(run_playbook, lab_env):
    first = run_playbook("bashoutter.yml", "-e", TARGET_VARS)
    assert first.rc == 0, first.output[-4000:]
    return json.loads((Path(lab_env["KUMOLAB_RESULTS_DIR"]) / "bashoutter" / "outputs.json").read_text())


@pytest.fixture(scope="module")
def api(deployed):
    return deployed["api_url"]


def test_deploy_then_second_run_changes_nothing(deployed, run_playbook):
    second = run_playbook("bashoutter.yml", "-e", TARGET_VARS)
    assert second.rc == 0, second.output[-4000:]
    assert second.changed == 0, second.changed_tasks()
    assert f"Bashoutter GUI: {deployed['website_url']}" in second.output


def test_each_function_may_only_do_its_own_job(deployed, aws):
    iam = aws("iam")
    for key, actions in {
        "get_haiku": ["dynamodb:Scan"],
        "post_haiku": ["dynamodb:PutItem"],
        "patch_haiku": ["dynamodb:UpdateItem"],
        "delete_haiku": ["dynamodb:DeleteItem"],
    }.items():
        doc = iam.get_role_policy(RoleName=f"{PREFIX}-{key}", PolicyName="least-privilege")["PolicyDocument"]
        doc = json.loads(doc) if isinstance(doc, str) else doc
        table_stmt = next(s for s in doc["Statement"] if s["Sid"] == "HaikuTable")
        assert table_stmt["Action"] == actions
        assert table_stmt["Resource"].endswith(f":table/{deployed['table_name']}")
        # Security M3: each function's concurrency is reserved (and so bounded), at the play's default.
        reserved = aws("lambda").get_function_concurrency(FunctionName=f"{PREFIX}-{key}")
        assert reserved.get("ReservedConcurrentExecutions") == 2, key
    bucket_tags = {t["Key"]: t["Value"] for t in aws("s3").get_bucket_tagging(Bucket=deployed["bucket"])["TagSet"]}
    assert bucket_tags["kumolab:public-website"] == "true" and bucket_tags["Lab"] == "bashoutter"


def test_every_status_code_of_the_contract(api):
    status, headers, body = http("POST", f"{api}/haiku", HAIKU)
    assert status == 201 and headers["Access-Control-Allow-Origin"] == "*"
    item = json.loads(body)
    status, headers, body = http("GET", f"{api}/haiku")
    assert status == 200 and item["item_id"] in [h["item_id"] for h in json.loads(body)]
    status, _, body = http("PATCH", f"{api}/haiku/{item['item_id']}")
    assert status == 200 and json.loads(body) == {"item_id": item["item_id"], "likes": 1}
    status, headers, body = http("PATCH", f"{api}/haiku/{uuid.uuid4()}")
    assert status == 404 and headers["Access-Control-Allow-Origin"] == "*" and json.loads(body)["field"] == "item_id"
    status, headers, body = http("POST", f"{api}/haiku", dict(HAIKU, second=""))
    assert status == 400 and headers["Access-Control-Allow-Origin"] == "*" and json.loads(body)["field"] == "second"
    assert http("POST", f"{api}/haiku", b"{oops")[0] == 400
    assert http("POST", f"{api}/haiku", dict(HAIKU, first="x" * 10000))[0] == 400
    status, headers, body = http("DELETE", f"{api}/haiku/{item['item_id']}")
    assert status == 204 and body == b"" and headers["Access-Control-Allow-Origin"] == "*"
    status, headers, _ = http(
        "OPTIONS", f"{api}/haiku", headers={"Origin": "http://example.org", "Access-Control-Request-Method": "POST"}
    )
    assert status == 200 and "POST" in headers["Access-Control-Allow-Methods"]
    assert headers["Access-Control-Allow-Headers"] == "Content-Type,Authorization"
    status, _, body = http("GET", f"{api}/nothing-here")
    assert status == 403 and json.loads(body) == {"message": "Missing Authentication Token"}
    assert http("PUT", f"{api}/haiku")[0] == 403


def test_website_serves_the_gui_with_its_config(deployed):
    site = deployed["website_url"]
    status, headers, body = http("GET", site)
    assert status == 200 and headers["Content-Type"].startswith("text/html") and b"Bashoutter" in body
    status, headers, body = http("GET", site + "app.js")
    assert status == 200 and "javascript" in headers["Content-Type"]
    status, _, body = http("GET", site + "config.json")
    # bashoutter_auth none (the default): the GUI shows no sign-in.
    assert status == 200 and json.loads(body) == {"apiUrl": deployed["api_url"], "signin": {"mode": "none"}}
    status, _, body = http("GET", site + "no/such/page")
    assert status == 404 and b"nothing here" in body


def test_1000_concurrent_likes_count_exactly_1000(api):
    item_id = json.loads(http("POST", f"{api}/haiku", HAIKU)[2])["item_id"]
    from kumolab.bashoutter.cli import ApiClient

    client = ApiClient(api)
    with ThreadPoolExecutor(max_workers=48) as pool:
        statuses = list(pool.map(lambda _: client.request("PATCH", f"/haiku/{item_id}")[0], range(1000)))
    assert statuses.count(200) == 1000, {s: statuses.count(s) for s in set(statuses)}
    likes = {h["item_id"]: h["likes"] for h in json.loads(http("GET", f"{api}/haiku")[2])}
    assert likes[item_id] == 1000


def test_2000_posts_at_concurrency_32_store_2000_items(api, deployed, aws):
    import kumolab.aws
    from kumolab.bashoutter.cli import ApiClient, post_many
    from kumolab.serverless.cli import clear

    table = kumolab.aws.resource("dynamodb", kumolab.aws.outputs_profile(deployed), deployed["region"]).Table(
        deployed["table_name"]
    )
    clear(table)
    result = post_many(ApiClient(api), 2000, 32)
    print(f"\npost_many 2000 at concurrency 32: {result}")
    assert (result["succeeded"], result["failed"]) == (2000, 0), result
    count = aws("dynamodb").scan(TableName=deployed["table_name"], Select="COUNT")
    total = count["Count"]
    while "LastEvaluatedKey" in count:
        count = aws("dynamodb").scan(
            TableName=deployed["table_name"], Select="COUNT", ExclusiveStartKey=count["LastEvaluatedKey"]
        )
        total += count["Count"]
    assert total == 2000
    status, headers, body = http("GET", f"{api}/haiku")
    assert status == 200 and len(json.loads(body)) == 1000 and headers.get("X-Next-Token")


def test_clients_post_many_and_clear_database(deployed):
    proc = subprocess.run(
        [str(VENV_BIN / "kumolab-bashoutter"), "post_many", "20", "--concurrency", "8"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["succeeded"] == 20
    proc = subprocess.run(
        [str(VENV_BIN / "kumolab-bashoutter"), "clear_database"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0 and proc.stdout.startswith("deleted 2020 haiku"), proc.stdout + proc.stderr
    assert json.loads(http("GET", f"{deployed['api_url']}/haiku")[2]) == []


def test_security_audit_passes(deployed, audit):
    report = audit("bashoutter")
    print(f"audit bashoutter: {report['summary']}")
