"""What a deployed lab tells its clients: ``results/<lab>/outputs.json`` written by the playbook."""

from __future__ import annotations

import json
import sys

from kumolab.paths import results_dir


def outputs(lab: str) -> dict:
    path = results_dir() / lab / "outputs.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        sys.exit(f"{path} does not exist: deploy the lab first (ansible-playbook playbooks/{lab}.yml), or pass the "
                 f"resource names as options.")


def aws_client(service: str, out: dict, endpoint_key: str = "endpoint_url"):
    import boto3
    from botocore.config import Config

    endpoint = out.get(endpoint_key) or out.get("endpoint_url") or None
    creds = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"} if out.get("endpoint_url") else {}
    config = Config(max_pool_connections=64, read_timeout=120, retries={"max_attempts": 8, "mode": "standard"})
    return boto3.session.Session().client(service, region_name=out.get("region"), endpoint_url=endpoint,
                                          config=config, **creds)
