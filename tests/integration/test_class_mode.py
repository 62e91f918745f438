"""Class mode end to end on the emulator (issue 17): a roster of five students on Lab 1, one class network, each
student's own security group, key pair and server; the preflight that refuses before anything exists; bundles
that log in over real SSH; budgets that warn, stop and tear down on a clock the test sets; receipts from an
independent count; the instructor page in headless Chromium. One class deployment for the whole module."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from conftest import ARTIFACTS, REPO, VENV_BIN

pytestmark = pytest.mark.integration

CLASS = "kumo101"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
LATER = NOW + dt.timedelta(hours=10)  # the clock of the budget evaluation


def stamp(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


# Lab 1 costs about 0.0196 USD/hour on the price table: after 10 hours cara's 0.05 is spent (stopped), eve's 0.22 is
# at ~89 % (warned), dan expired after 1 hour (torn down); ada and ben keep running.
ROSTER = [
    ("ada", "Ada Lovelace", "ada@example.edu", "ec2", "50", stamp(NOW + dt.timedelta(days=30))),
    ("ben", "Ben Okafor", "ben@example.edu", "ec2", "50", stamp(NOW + dt.timedelta(days=30))),
    ("cara", "Cara Silva", "cara@example.edu", "ec2", "0.05", stamp(NOW + dt.timedelta(days=30))),
    ("dan", "Dan Ito", "dan@example.edu", "ec2", "50", stamp(NOW + dt.timedelta(hours=1))),
    ("eve", "Eve Novak", "eve@example.edu", "ec2", "0.22", stamp(NOW + dt.timedelta(days=30))),
]


def write_roster(path: Path, rows) -> Path:
    lines = ["student_id,display_name,email,labs,budget_usd,expiry"] + [",".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


class Webhook:
    """A Slack-compatible webhook on loopback that keeps what it is sent."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def texts(self) -> str:
        return json.dumps(self.received)


@pytest.fixture(scope="module")
def roster(tmp_path_factory):
    return write_roster(tmp_path_factory.mktemp("class") / f"{CLASS}.csv", ROSTER)


@pytest.fixture(scope="module")
def results(lab_env) -> Path:
    return Path(lab_env["KUMOLAB_RESULTS_DIR"]) / "class"


@pytest.fixture(scope="module")
def deployed(run_playbook, roster):
    run = run_playbook("class.yml", "-e", f"roster={roster}", "-f", "5")
    assert run.rc == 0, run.output[-4000:]
    return run


def instances(aws, **tags):
    filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in {"Project": "kumolab", "Class": CLASS, **tags}.items()]
    pages = aws("ec2").describe_instances(Filters=filters)["Reservations"]
    return [i for r in pages for i in r["Instances"] if i["State"]["Name"] != "terminated"]


def owner(resource) -> str:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}.get("Owner", "")


def class_vpcs(aws):
    return aws("ec2").describe_vpcs(Filters=[{"Name": "tag:Class", "Values": [CLASS]}])["Vpcs"]


def test_a_bad_roster_names_row_and_column_and_creates_nothing(run_playbook, tmp_path, aws):
    bad = write_roster(
        tmp_path / "broken.csv",
        [
            ("ok1", "Fine", "ok@example.edu", "ec2", "10", "2027-01-31"),
            ("Bad-Id", "", "not-an-address", "ec2;warp", "-3", "next week"),
            ("ok1", "Twice", "t@example.edu", "ec2", "10", "2027-01-31"),
        ],
    )
    run = run_playbook("class.yml", "-e", f"roster={bad}")
    assert run.rc != 0
    for expected in (
        "row 3, column student_id",
        "row 3, column display_name",
        "row 3, column email",
        "row 3, column labs: 'warp' is not a lab",
        "row 3, column budget_usd",
        "row 3, column expiry",
        "row 4, column student_id: 'ok1' is also on row 2",
        "nothing was deployed",
    ):
        assert expected in run.output, expected
    assert aws("ec2").describe_vpcs(Filters=[{"Name": "tag:Class", "Values": ["broken"]}])["Vpcs"] == []


def test_the_preflight_refuses_a_class_above_its_vcpu_quota_before_creating_anything(run_playbook, tmp_path, aws):
    small = write_roster(tmp_path / "small.csv", ROSTER)
    quotas = json.dumps({"class_preflight_quotas": {"L-1216C47A": 4, "L-F678F1CE": 5, "L-0263D0A3": 5000}})
    run = run_playbook("class.yml", "-e", f"roster={small}", "-e", quotas)
    assert run.rc != 0
    assert "Class preflight failed; nothing was created" in run.output
    assert "vCPUs: the class needs 10" in run.output and "L-1216C47A" in run.output
    assert aws("ec2").describe_vpcs(Filters=[{"Name": "tag:Class", "Values": ["small"]}])["Vpcs"] == []


def test_the_preflight_reports_quotas_offerings_cost_and_permissions(deployed):
    assert "Class kumo101: 5 student(s)" in deployed.output
    assert "vCPUs (L-1216C47A, inventory (class_preflight_quotas))" in deployed.output
    assert "t3.micro:" in deployed.output and "zone(s)" in deployed.output
    assert "USD/hour" in deployed.output and "USD/day for the class" in deployed.output
    assert "Permissions:" in deployed.output


def test_one_class_network_and_each_student_isolated(deployed, aws):
    (vpc,) = class_vpcs(aws)
    servers = instances(aws)
    assert sorted(owner(i) for i in servers) == ["ada", "ben", "cara", "dan", "eve"]
    assert {i["VpcId"] for i in servers} == {vpc["VpcId"]}
    groups = aws("ec2").describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}, {"Name": "tag:Class", "Values": [CLASS]}]
    )["SecurityGroups"]
    assert sorted(owner(g) for g in groups) == ["ada", "ben", "cara", "dan", "eve"]
    for server in servers:
        student = owner(server)
        assert server["KeyName"] == f"kumolab-ec2-{student}"
        assert [g["GroupName"] for g in server["SecurityGroups"]] == [f"kumolab-ec2-{student}-ssh"]
        assert server["MetadataOptions"]["HttpTokens"] == "required"
    keys = aws("ec2").describe_key_pairs(Filters=[{"Name": "tag:Class", "Values": [CLASS]}])["KeyPairs"]
    assert sorted(k["KeyName"] for k in keys) == [f"kumolab-ec2-{s[0]}" for s in ROSTER]


def test_second_run_changes_nothing(deployed, run_playbook, roster):
    run = run_playbook("class.yml", "-e", f"roster={roster}", "-f", "5")
    assert run.rc == 0, run.output[-3000:]
    assert run.changed == 0, run.changed_tasks()


def test_every_student_logs_in_with_their_own_bundle(deployed, results):
    for student, *_ in ROSTER:
        bundle = results / student
        bundle_facts = json.loads((bundle / "bundle.json").read_text())
        assert bundle_facts["student"]["student_id"] == student and bundle_facts["expires_at"]
        assert oct((bundle / "id_ed25519").stat().st_mode & 0o777) == "0o600"
        guide = (bundle / "README.md").read_text()
        assert f"-e student={student}" in guide and "Jupyter" in guide
        proc = subprocess.run(
            ["ssh", "-F", "ssh_config", "-o", "BatchMode=yes", f"kumolab-ec2-{student}", "echo", f"hello-{student}"],
            cwd=bundle,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == f"hello-{student}"
        policy = json.loads((bundle / "iam_policy.json").read_text())
        scoped = [s for s in policy["Statement"] if "ec2:StopInstances" in s["Action"]]
        assert scoped[0]["Condition"]["StringEquals"]["aws:ResourceTag/Owner"] == student


def test_every_student_is_reached_through_the_dynamic_inventory(deployed):
    proc = subprocess.run(
        [str(VENV_BIN / "ansible"), "-i", "inventories/local", "-m", "ansible.builtin.ping", "lab_ec2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        env=os.environ,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for student, *_ in ROSTER:
        assert f"kumolab-ec2-{student} | SUCCESS" in proc.stdout


def test_check_mode_reports_no_changes(deployed, run_playbook, roster):
    run = run_playbook("class.yml", "-e", f"roster={roster}", "-f", "5", "--check")
    assert run.rc == 0, run.output[-3000:]
    assert run.changed == 0, run.changed_tasks()


def test_a_budget_look_ahead_in_check_mode_acts_on_nothing(deployed, run_playbook, roster, aws, lab_env):
    ledger = Path(lab_env["KUMOLAB_STATE_DIR"]) / "class" / CLASS / "ledger.json"
    before = ledger.read_text()
    hook = Webhook()
    run = run_playbook(
        "class_budget.yml",
        "-e",
        f"roster={roster}",
        "-e",
        f"class_now={stamp(LATER)}",
        "--check",
        env={"KUMOLAB_WEBHOOK_URL": hook.url},
    )
    hook.server.shutdown()
    assert run.rc == 0, run.output[-3000:]
    assert hook.received == []
    assert {i["State"]["Name"] for i in instances(aws)} == {"running"} and len(instances(aws)) == 5
    assert ledger.read_text() == before, "a look ahead must not record spend"


@pytest.fixture(scope="module")
def budget_run(deployed, run_playbook, roster):
    hook = Webhook()
    run = run_playbook(
        "class_budget.yml",
        "-e",
        f"roster={roster}",
        "-e",
        f"class_now={stamp(LATER)}",
        env={"KUMOLAB_WEBHOOK_URL": hook.url},
    )
    assert run.rc == 0, run.output[-4000:]
    hook.server.shutdown()
    return run, hook


def test_the_budget_warns_stops_and_tears_down_on_its_clock(budget_run, aws, results):
    _, hook = budget_run
    state = {owner(i): i["State"]["Name"] for i in instances(aws)}
    assert state == {"ada": "running", "ben": "running", "cara": "stopped", "eve": "running"}, state
    texts = hook.texts()
    assert "cara" in texts and "was stopped" in texts, texts
    assert "budget warning for eve" in texts, texts
    assert "ada" not in texts and "ben" not in texts, texts
    receipt = json.loads((results / "dan" / "receipt.json").read_text())
    assert receipt["verdict"] == "pass" and receipt["teardown"]["reason"] == "expired"
    assert receipt["leftovers"]["ok"] and receipt["leftovers"]["tags"]["Owner"] == "dan"


def test_a_second_evaluation_repeats_no_notice(budget_run, run_playbook, roster):
    hook = Webhook()
    run = run_playbook(
        "class_budget.yml",
        "-e",
        f"roster={roster}",
        "-e",
        f"class_now={stamp(LATER + dt.timedelta(minutes=5))}",
        env={"KUMOLAB_WEBHOOK_URL": hook.url},
    )
    hook.server.shutdown()
    assert run.rc == 0, run.output[-3000:]
    assert hook.received == [], hook.texts()
    assert run.changed == 0, run.changed_tasks()


def test_the_instructor_page_in_headless_chromium(budget_run, results):
    from playwright.sync_api import expect, sync_playwright

    index = results / "index.html"
    assert (results / "spend.png").stat().st_size > 5000
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"],
        )
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            page.goto(index.as_uri())
            expect(page.locator("tbody tr")).to_have_count(5)
            expect(page.locator("#student-cara td").nth(2)).to_have_text("stopped (budget spent)")
            expect(page.locator("#student-dan td").nth(2)).to_have_text("torn down (expired)")
            expect(page.locator("#student-ada td").nth(2)).to_have_text("running")
            expect(page.locator("#student-dan a", has_text="pass")).to_have_attribute("href", "dan/receipt.html")
            expect(page.locator("#student-eve td").nth(6)).to_have_text("estimate (price table)")
            assert page.evaluate("document.querySelector('img').naturalWidth") > 0, "the spend chart did not load"
            page.screenshot(path=str(ARTIFACTS / "class_instructor_page.png"), full_page=True)
            page.goto((results / "dan" / "receipt.html").as_uri())
            expect(page.locator("#verdict")).to_contain_text("nothing left")
            page.screenshot(path=str(ARTIFACTS / "class_receipt_dan.png"), full_page=True)
        finally:
            browser.close()


def test_class_teardown_ends_with_a_receipt_per_student(budget_run, run_playbook, roster, results, aws):
    run = run_playbook("class_teardown.yml", "-e", f"roster={roster}")
    assert run.rc == 0, run.output[-4000:]
    for student, *_ in ROSTER:
        receipt = json.loads((results / student / "receipt.json").read_text())
        assert receipt["verdict"] == "pass", (student, receipt["problems"])
        assert receipt["owner"] == student and receipt["leftovers"]["ok"]
        kinds = {r["kind"] for r in receipt["resources"]}
        assert {"ec2:instance", "ec2:security-group", "ec2:key-pair"} <= kinds, (student, kinds)
        assert all(r["absent_at"] for r in receipt["resources"])
        assert "nothing left" in (results / student / "receipt.html").read_text()
        assert not (results / student / "id_ed25519").exists()
    assert instances(aws) == [] and class_vpcs(aws) == []
    again = run_playbook("class_teardown.yml", "-e", f"roster={roster}")
    assert again.rc == 0 and again.changed == 0, again.changed_tasks()
