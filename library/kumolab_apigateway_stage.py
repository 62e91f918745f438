#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""kumolab_apigateway_stage: default throttling of an API Gateway REST API stage.

Why this module exists: ``community.aws.api_gateway`` creates the stage but cannot set its method
settings, and a stage without throttling lets one runaway client (or a student's loop) run up the
Lambda and DynamoDB bill. This sets the ``*/*`` throttling of a stage, idempotently.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kumolab_apigateway_stage
short_description: Set the default (*/*) throttling of an API Gateway REST API stage
version_added: "0.1.0"
description:
  - Sets the rate and burst limits that apply to every method of a REST API stage (method settings C(*/*)).
  - The stage must exist (C(community.aws.api_gateway) creates it with the first deployment).
options:
  api_id:
    description: ID of the REST API.
    type: str
    required: true
  stage:
    description: Name of the stage.
    type: str
    required: true
  throttling_rate_limit:
    description: Steady-state requests per second for each method of the stage.
    type: float
    required: true
  throttling_burst_limit:
    description: Requests that may arrive at once above the steady rate.
    type: int
    required: true
author:
  - kumolab
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Throttle the prod stage to 50 requests/s, bursts of 100
  kumolab_apigateway_stage:
    api_id: "{{ api.api_id }}"
    stage: prod
    throttling_rate_limit: 50
    throttling_burst_limit: 100
"""

RETURN = r"""
throttling:
  description: The stage's */* throttling after the change (before, in check mode).
  returned: always
  type: dict
  sample: {rate_limit: 50.0, burst_limit: 100}
"""

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible.module_utils.kumolab_aws import fail, retry_decorator
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

# The project's retry vocabulary, plus API Gateway's answer to a stage update while another is under way.
RETRY = retry_decorator(extra_codes=["ConflictException"], max_delay=15)


def current(client, api_id, stage):
    settings = client.get_stage(aws_retry=True, restApiId=api_id, stageName=stage).get("methodSettings", {})
    default = settings.get("*/*", {})
    return {"rate_limit": default.get("throttlingRateLimit"), "burst_limit": default.get("throttlingBurstLimit")}


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            api_id=dict(type="str", required=True),
            stage=dict(type="str", required=True),
            throttling_rate_limit=dict(type="float", required=True),
            throttling_burst_limit=dict(type="int", required=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    client = module.client("apigateway", retry_decorator=RETRY)
    want = {"rate_limit": float(p["throttling_rate_limit"]), "burst_limit": int(p["throttling_burst_limit"])}
    try:
        have = current(client, p["api_id"], p["stage"])
        same = (
            have["rate_limit"] is not None
            and float(have["rate_limit"]) == want["rate_limit"]
            and have["burst_limit"] is not None
            and int(have["burst_limit"]) == want["burst_limit"]
        )
        if same:
            module.exit_json(changed=False, throttling=have)
        if module.check_mode:
            module.exit_json(changed=True, throttling=have, diff={"before": have, "after": want})
        client.update_stage(
            aws_retry=True,
            restApiId=p["api_id"],
            stageName=p["stage"],
            patchOperations=[
                {"op": "replace", "path": "/*/*/throttling/rateLimit", "value": str(want["rate_limit"])},
                {"op": "replace", "path": "/*/*/throttling/burstLimit", "value": str(want["burst_limit"])},
            ],
        )
        after = current(client, p["api_id"], p["stage"])
    except client.exceptions.NotFoundException:
        module.fail_json(
            msg=f"Stage {p['stage']} of REST API {p['api_id']} does not exist; deploy the API to it first."
        )
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        fail(module, exc, f"set throttling of stage {p['stage']} of REST API {p['api_id']}")
    module.exit_json(changed=True, throttling=after, diff={"before": have, "after": after})


if __name__ == "__main__":
    main()
