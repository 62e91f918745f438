#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""kumolab_lambda_concurrency: the reserved concurrency of a Lambda function.

Why this module exists: ``amazon.aws.lambda`` (10.x) and ``community.aws`` have no option for a function's
reserved concurrency (``PutFunctionConcurrency``), and a public API whose functions may scale to the whole
account's concurrency is a cost and availability amplifier (security review M3). This sets it, or removes
it, idempotently and in check mode.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kumolab_lambda_concurrency
short_description: Set or remove the reserved concurrency of a Lambda function
version_added: "0.1.0"
description:
  - Reserves O(reserved_concurrent_executions) concurrent executions for a function. That is also the most it
    may run at once, so a flood of requests is bounded (API Gateway answers 429 beyond the stage throttle,
    Lambda throttles beyond the reservation) and cannot take the rest of the account's concurrency.
  - With O(reserved_concurrent_executions=null), removes a reservation (the function shares the account's
    unreserved pool again).
  - An account whose concurrency quota is too small to reserve anything (new accounts can start at 10, and
    AWS keeps at least that much unreserved) gets a warning and no change, unless O(required=true); the
    account quota then bounds the function instead.
options:
  function_name:
    description: Name or ARN of the function. It must exist.
    type: str
    required: true
  reserved_concurrent_executions:
    description: Concurrent executions to reserve (0 stops every invocation); null removes the reservation.
    type: int
  required:
    description: Fail, instead of warning, when the account's quota leaves no room for the reservation.
    type: bool
    default: false
author:
  - kumolab
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: At most 2 concurrent executions of the haiku reader
  kumolab_lambda_concurrency:
    function_name: kumolab-mylab-list_items
    reserved_concurrent_executions: 2
"""

RETURN = r"""
reserved_concurrent_executions:
  description: The function's reservation after the change (before, in check mode, or when skipped); null = none.
  returned: always
  type: int
  sample: 2
skipped:
  description: Why the reservation was not made (the account's quota); absent when it was.
  returned: when the account's quota leaves no room
  type: str
"""

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible.module_utils.kumolab_aws import fail, retry_decorator
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

# The project's retry vocabulary, plus Lambda's answer while another update of the function is under way.
RETRY = retry_decorator(extra_codes=["ResourceConflictException"], max_delay=15)


def current(client, name):
    return client.get_function_concurrency(aws_retry=True, FunctionName=name).get("ReservedConcurrentExecutions")


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            function_name=dict(type="str", required=True),
            reserved_concurrent_executions=dict(type="int"),
            required=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    name, want = p["function_name"], p["reserved_concurrent_executions"]
    if want is not None and want < 0:
        module.fail_json(msg=f"reserved_concurrent_executions must be 0 or more (null removes it), got {want}.")
    client = module.client("lambda", retry_decorator=RETRY)
    try:
        have = current(client, name)
        if have == want:
            module.exit_json(changed=False, reserved_concurrent_executions=have)
        if module.check_mode:
            module.exit_json(changed=True, reserved_concurrent_executions=have, diff={"before": have, "after": want})
        if want is None:
            client.delete_function_concurrency(aws_retry=True, FunctionName=name)
        else:
            # Not retried: a quota refusal (InvalidParameterValueException) is an answer, not a transient error.
            client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=want)
        after = current(client, name)
    except client.exceptions.ResourceNotFoundException:
        module.fail_json(msg=f"Lambda function {name} does not exist; deploy it before reserving its concurrency.")
    except client.exceptions.InvalidParameterValueException as exc:
        message = str(exc)
        if "UnreservedConcurrentExecution" not in message:
            fail(module, exc, f"reserve {want} concurrent executions for {name}")
        reason = (
            f"the account's Lambda concurrency quota leaves no room to reserve {want} for {name} ({message}); "
            "the account quota bounds it instead. Ask for more in Service Quotas (Lambda, Concurrent executions) "
            "to get the reservation."
        )
        if p["required"]:
            module.fail_json(msg=reason)
        module.warn(reason)
        module.exit_json(changed=False, reserved_concurrent_executions=have, skipped=reason)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        fail(module, exc, f"set the reserved concurrency of {name}")
    module.exit_json(changed=True, reserved_concurrent_executions=after, diff={"before": have, "after": after})


if __name__ == "__main__":
    main()
