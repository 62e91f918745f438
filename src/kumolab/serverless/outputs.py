"""What a deployed lab tells its clients: ``results/<owner>/<lab>/outputs.json`` written by the playbook."""

from __future__ import annotations

import json
import sys

import kumolab.aws
from kumolab.paths import results_dir


def outputs(lab: str) -> dict:
    path = results_dir() / lab / "outputs.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        sys.exit(
            f"{path} does not exist: deploy the lab first (ansible-playbook playbooks/{lab}.yml), or pass the "
            f"resource names as options."
        )


def _config():
    from botocore.config import Config

    return Config(max_pool_connections=64, read_timeout=120, retries={"max_attempts": 8, "mode": "standard"})


def aws_client(service: str, out: dict, endpoint_key: str | None = None):
    """A client through the lab's profile; ``endpoint_key`` names an outputs key with a service endpoint of the
    lab's own (the local runtime's Lambda Invoke API), used when it is set."""
    extra = {"endpoint_url": out[endpoint_key]} if endpoint_key and out.get(endpoint_key) else {}
    return kumolab.aws.client(service, kumolab.aws.outputs_profile(out), out.get("region"), config=_config(), **extra)


def aws_resource(service: str, out: dict):
    return kumolab.aws.resource(service, kumolab.aws.outputs_profile(out), out.get("region"), config=_config())
