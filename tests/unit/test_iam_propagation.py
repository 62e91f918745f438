"""IAM eventual consistency on the emulator (fidelity rule ``iam-propagation``; real-AWS review B3).

A role created less than ``iam_propagation_s`` seconds ago cannot be assumed by Lambda or ECS, as on AWS.
The old single-shot ``amazon.aws.lambda`` task right after ``amazon.aws.iam_role`` then fails; the
lambda_function role's retries (``until``/``retries``/``delay``) get through.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from kumolab.local.iam_propagation import LAMBDA_MESSAGE

TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
)
ECS_TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
)
ZIP = b"PK\x05\x06" + b"\x00" * 18  # an empty zip: the rule answers before the code matters


def test_b3_a_new_role_cannot_be_assumed_at_once(aws):
    iam, lam = aws("iam"), aws("lambda")
    name = f"b3-{uuid.uuid4().hex[:8]}"
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
    with pytest.raises(ClientError) as info:
        lam.create_function(
            FunctionName=name, Runtime="python3.13", Role=arn, Handler="app.handler", Code={"ZipFile": ZIP}
        )
    assert info.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert info.value.response["Error"]["Message"] == LAMBDA_MESSAGE
    deadline = time.monotonic() + 20
    while True:  # what the role's retries do: the same call, a little later
        try:
            lam.create_function(
                FunctionName=name, Runtime="python3.13", Role=arn, Handler="app.handler", Code={"ZipFile": ZIP}
            )
            break
        except ClientError as exc:
            assert "cannot be assumed" in str(exc) and time.monotonic() < deadline
            time.sleep(0.5)
    newer = iam.create_role(RoleName=f"{name}-2", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
    with pytest.raises(ClientError, match="cannot be assumed by Lambda"):
        lam.update_function_configuration(FunctionName=name, Role=newer)
    lam.delete_function(FunctionName=name)


def test_b3_ecs_run_task_with_a_new_task_role_fails(aws):
    iam, ecs = aws("iam"), aws("ecs")
    name = f"b3ecs-{uuid.uuid4().hex[:8]}"
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=ECS_TRUST)["Role"]["Arn"]
    ecs.create_cluster(clusterName=name)
    definition = ecs.register_task_definition(
        family=name,
        taskRoleArn=arn,
        containerDefinitions=[{"name": "c", "image": "kumolab.local/none", "cpu": 256, "memory": 512}],
    )["taskDefinition"]["taskDefinitionArn"]
    with pytest.raises(ClientError) as info:
        ecs.run_task(cluster=name, taskDefinition=definition, count=1)
    assert info.value.response["Error"]["Code"] == "ClientException"
    assert f"ECS was unable to assume the role '{arn}'" in info.value.response["Error"]["Message"]
    ecs.deregister_task_definition(taskDefinition=definition)
    ecs.delete_cluster(cluster=name)


SINGLE_SHOT = """
- name: The reviewed shape - a role, then the function at once
  hosts: localhost
  connection: local
  gather_facts: false
  module_defaults:
    group/aws: "{{{{ kumolab_aws }}}}"
  tasks:
    - name: Create the role
      amazon.aws.iam_role:
        name: {name}
        assume_role_policy_document: '{trust}'
        create_instance_profile: false
      register: role
    - name: Deploy the function (no retries, as at 406e919)
      amazon.aws.lambda:
        name: {name}
        runtime: python3.13
        handler: app.handler
        zip_file: {zip}
        role: "{{{{ role.iam_role.arn }}}}"
"""


def test_b3_the_lambda_function_role_deploys_with_the_rule_on(run_playbook, lab_env, tmp_path):
    """roles/lambda_function (which retries) deploys right after creating its role with iam-propagation on.

    (A single-shot task is refused only when it reaches CreateFunction within iam_propagation_s of CreateRole;
    on a loaded machine Ansible's own start-up can take longer, so that half is the boto3 test above.)"""
    from kumolab.paths import REPO_ROOT

    (tmp_path / "app.py").write_text("def handler(event, context):\n    return event\n")
    import zipfile

    with zipfile.ZipFile(tmp_path / "app.zip", "w") as archive:
        archive.write(tmp_path / "app.py", "app.py")
    name = f"b3pb-{uuid.uuid4().hex[:6]}"
    book = REPO_ROOT / "playbooks" / f".b3-{name}.yml"
    try:
        book.write_text(f"""
- name: The lambda_function role, right after nothing
  hosts: localhost
  connection: local
  gather_facts: false
  module_defaults:
    group/aws: "{{{{ kumolab_aws }}}}"
  tasks:
    - name: Ask the emulator which account this is
      amazon.aws.aws_caller_info:
      register: caller
    - name: Deploy with the role
      ansible.builtin.include_role:
        name: lambda_function
      vars:
        lambda_function_name: {name}-role
        lambda_function_source_dir: {tmp_path}
        lambda_function_include: [app.py]
        lambda_function_handler: app.handler
        lambda_function_account_id: "{{{{ caller.account }}}}"
        lambda_function_tags: {{Project: kumolab, Lab: b3-test}}
""")
        new = run_playbook(book.name, timeout=600)
        assert new.rc == 0, new.output[-3000:]
        tasks = (REPO_ROOT / "roles" / "lambda_function" / "tasks" / "main.yml").read_text()
        assert "until: lambda_function_deployed is succeeded" in tasks
    finally:
        book.unlink(missing_ok=True)
