"""Shared fixtures: one emulator and one loopback SSH host per test session, isolated from the user's lab.

The session gets its own state directory and free ports (KUMOLAB_STATE_DIR, KUMOLAB_EMULATOR_PORT,
KUMOLAB_SSH_PORT, KUMOLAB_JUPYTER_PORT, KUMOLAB_RESULTS_DIR) and its own AWS config files in the state directory
(AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE), exported so that every playbook, CLI and boto3 client started by a
test talks to this session's emulator, through the profile its ``kumolab-emulator start`` writes, and never to a
user's running lab or their ~/.aws. The user's own AWS variables (keys, profile, endpoint) are unset meanwhile.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import kumolab.aws
from kumolab.local import settings
from kumolab.local.runtime.httpserve import free_port  # noqa: F401  (tests import it from here)

# ansible-core patches sys.intern when it is imported; torch._dynamo (loaded lazily by torch's optimizers
# and by transformers) then refuses to load ("substitute_in_graph expects a function"). Tests import both
# into one process, so load dynamo first.
try:
    import torch._dynamo  # noqa: F401
except ImportError:  # the suite without the GPU/QA extras
    pass

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
ARTIFACTS = REPO / "test-artifacts"
REGION = "ap-northeast-1"

# `make test` runs the suite on two pytest-xdist workers (--dist loadgroup), each with its own emulator, SSH
# host and ports (lab_env). A test file is one unit of work, so its tests keep their order and share their
# module fixtures. The tests that build or use a PyTorch venv for a lab host (the GPU lab's, and the molecule
# scenarios' <repo>/.state/molecule-lab-host) form one group instead, so that two workers never install torch at once.
LAB_HOST_VENV_GROUP = "lab-host-venv"


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        if not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))


@pytest.hookimpl(optionalhook=True)  # defined by pytest-xdist; absent under -p no:xdist
def pytest_xdist_node_collection_finished(node, ids):
    # xdist tells the scheduler a test's group by appending "@<group>" to its node id; on pytest 9.2 that has no
    # effect (pytest-xdist#1386) and the tests are spread one by one, which breaks every module fixture.
    if node.config.getvalue("dist") == "loadgroup" and ids and "@" not in ids[0]:
        raise pytest.UsageError(
            "pytest-xdist cannot apply --dist loadgroup with this pytest (pytest-xdist#1386): "
            "install requirements/test.txt, which keeps pytest below 9.2"
        )


# What a user's shell may carry that would send a test's clients elsewhere, or (keys next to a profile) make
# the amazon.aws modules refuse to run.
USER_AWS_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
)


@pytest.fixture(scope="session")
def lab_env(tmp_path_factory):
    """Environment of this test session's private target; started lazily by the first playbook."""
    state = tmp_path_factory.mktemp("kumolab-state")
    env = {
        "KUMOLAB_STATE_DIR": str(state),
        "KUMOLAB_RESULTS_DIR": str(state / "results"),
        "KUMOLAB_EMULATOR_PORT": str(free_port()),
        "KUMOLAB_SSH_PORT": str(free_port()),
        "KUMOLAB_JUPYTER_PORT": str(free_port()),
        "KUMOLAB_AWS_REGION": REGION,
        # Every fidelity rule is on; the lab tests keep SQS's name-reuse window short so that their deploy ->
        # teardown -> deploy cycles wait seconds, not a minute each (tests/unit/test_fidelity.py checks AWS's 60 s).
        "KUMOLAB_FIDELITY_SQS_DELETED_NAME_S": "15",
        # and the window in which GetQueueUrl still names a deleted queue short: sqs_queue retries the ghost's
        # NonExistentQueue for minutes before the role's own retry (AWS's lag; the fidelity test checks 10 s).
        "KUMOLAB_FIDELITY_SQS_LIST_LAG_S": "3",
        "KUMOLAB_AWS_PROFILE": settings.PROFILE,
        "AWS_CONFIG_FILE": str(state / "aws" / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(state / "aws" / "credentials"),
        "AWS_DEFAULT_REGION": REGION,
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    saved = {key: os.environ.get(key) for key in (*env, *USER_AWS_VARIABLES)}
    for key in USER_AWS_VARIABLES:
        os.environ.pop(key, None)
    os.environ.update(env)
    yield env
    for command in ("kumolab-sshhost", "kumolab-emulator"):
        subprocess.run([str(VENV_BIN / command), "stop"], capture_output=True)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def emulator(lab_env):
    """The session's emulator, started (which writes its profile); returns its endpoint URL."""
    subprocess.run([str(VENV_BIN / "kumolab-emulator"), "start"], check=True, capture_output=True)
    return settings.endpoint(int(lab_env["KUMOLAB_EMULATOR_PORT"]))


@pytest.fixture(scope="session")
def aws(emulator, lab_env):
    """boto3 client factory on the session's emulator, through its profile: ``aws('ec2').describe_vpcs()``."""

    session = kumolab.aws.session(lab_env["KUMOLAB_AWS_PROFILE"], REGION)

    def client(service: str):
        return session.client(service)

    return client


RECAP = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)"
)


@dataclass
class PlaybookRun:
    rc: int
    output: str

    @property
    def recap(self) -> dict[str, dict[str, int]]:
        return {
            m["host"]: {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed")}
            for m in map(RECAP.match, self.output.splitlines())
            if m
        }

    @property
    def changed(self) -> int:
        return sum(host["changed"] for host in self.recap.values())

    def changed_tasks(self) -> list[str]:
        """Names of the tasks that reported a change (for assertion messages)."""
        tasks, current = [], None
        for line in self.output.splitlines():
            if line.startswith("TASK ["):
                current = line.split("[", 1)[1].rsplit("]", 1)[0]
            elif line.startswith("changed:") and current:
                tasks.append(current)
        return tasks


@pytest.fixture(scope="session")
def run_playbook(lab_env):
    """Run ``ansible-playbook`` from the repo root against the session's target."""

    def run(
        playbook: str, *args: str, inventory: str | None = None, env: dict | None = None, timeout: int = 1800
    ) -> PlaybookRun:
        command = [
            str(VENV_BIN / "ansible-playbook"),
            *(["-i", inventory] if inventory else []),
            f"playbooks/{playbook}",
            *args,
        ]
        proc = subprocess.run(
            command,
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        ARTIFACTS.mkdir(exist_ok=True)
        log_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join([playbook, *args]))[:120]
        (ARTIFACTS / f"{log_name}.log").write_text(proc.stdout)
        return PlaybookRun(proc.returncode, proc.stdout)

    return run


@pytest.fixture(scope="session")
def audit(run_playbook, lab_env):
    """Run the security audit of one deployed lab; returns its JSON report (the run must pass)."""
    import json

    def run(lab: str) -> dict:
        result = run_playbook("audit.yml", "-e", f"lab={lab}")
        assert result.rc == 0, result.output[-3000:]
        report = json.loads((Path(lab_env["KUMOLAB_RESULTS_DIR"]) / "audit" / f"{lab}.json").read_text())
        assert report["summary"]["FAIL"] == 0 and report["summary"]["PASS"] > 0, report
        return report

    return run


def ecs_arn_is_inactive(ecs, arn: str) -> bool:
    """True for an ECS service, cluster or task definition that is deleted but still listed (INACTIVE).

    moto's tagging index keeps deleted ECS resources, as AWS lists them for a while; each one must be
    INACTIVE by its own API. Any other ARN is False: it is still there.
    """
    kind = arn.split(":", 5)[5].split("/", 1)[0] if arn.startswith("arn:aws:ecs:") else ""
    if kind == "service":
        _, cluster, service = arn.rsplit("/", 2)
        try:
            found = ecs.describe_services(cluster=cluster, services=[service])["services"]
        except ecs.exceptions.ClusterNotFoundException:
            return True  # gone with its cluster
        return all(s["status"] == "INACTIVE" for s in found)
    if kind == "cluster":
        return all(c["status"] == "INACTIVE" for c in ecs.describe_clusters(clusters=[arn])["clusters"])
    if kind == "task-definition":
        return ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]["status"] == "INACTIVE"
    return False


def live_queue_urls(sqs, name_part: str) -> list[str]:
    """Queue URLs containing ``name_part`` that still exist. ListQueues keeps returning a deleted queue for a while
    (as on AWS; the emulator's sqs-deleted-queue-name rule), so each listed queue is asked for its attributes."""
    live = []
    for url in sqs.list_queues().get("QueueUrls", []):
        if name_part not in url:
            continue
        try:
            sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        except sqs.exceptions.QueueDoesNotExist:
            continue
        except Exception as exc:  # botocore ClientError with the query protocol's code
            if "NonExistentQueue" in str(exc) or "QueueDoesNotExist" in str(exc):
                continue
            raise
        live.append(url)
    return live


def live_tagged_arns(aws, tags: dict) -> list[str]:
    """ARNs the Resource Groups Tagging API lists with ``tags`` whose resources still exist by their own API: the
    tagging API lists deleted resources for a while (as on AWS; the emulator's tagging-lag rule)."""
    sys.path.insert(0, str(REPO / "module_utils"))
    import kumolab_resources

    filters = [{"Key": key, "Values": [value]} for key, value in tags.items()]
    listed = aws("resourcegroupstaggingapi").get_resources(TagFilters=filters)["ResourceTagMappingList"]
    arns = [m["ResourceARN"] for m in listed]
    ecs = aws("ecs")
    return [arn for arn in arns if not ecs_arn_is_inactive(ecs, arn) and kumolab_resources.arn_exists(aws, arn)]
