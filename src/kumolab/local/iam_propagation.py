"""IAM eventual consistency, as the emulator enforces it (issue 12, Part 2; fidelity rule ``iam-propagation``).

On AWS a role that ``CreateRole`` has just returned is visible to IAM's own reads at once, but Lambda and ECS
cannot assume it for a few seconds (STS propagation): ``CreateFunction`` right after ``CreateRole`` fails with
``InvalidParameterValueException: The role defined for the function cannot be assumed by Lambda.``
(boto/boto3#2976; real-AWS review B3), and ECS ``RunTask`` with a task or execution role that it cannot assume
answers ``ClientException: ECS was unable to assume the role '<arn>' that was provided for this task. ...``.
moto accepts any role at once. Here a role created less than ``iam_propagation_s`` seconds ago (a setting of
:mod:`kumolab.local.fidelity`) cannot be assumed by Lambda (``CreateFunction``, ``UpdateFunctionConfiguration``
naming it) or ECS (``RunTask`` of a task definition naming it as task or execution role), so a deploy that
does not wait or retry fails locally as it does on AWS. ``CreateService`` is not refused: AWS creates the service
and reports the failed task launches as service events, it does not fail the call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

LAMBDA_MESSAGE = "The role defined for the function cannot be assumed by Lambda."
ECS_MESSAGE = (
    "ECS was unable to assume the role '{arn}' that was provided for this task. Please verify that the role "
    "being passed has the proper trust relationship and permissions and that your IAM user has "
    "permissions to pass this role."
)


class _Created:
    def __init__(self):
        self.lock = threading.Lock()
        self.at: dict[str, float] = {}  # role ARN -> time.monotonic() of CreateRole

    def record(self, arn: str) -> None:
        with self.lock:
            self.at[arn] = time.monotonic()

    def too_new(self, arn: str | None, delay_s: float) -> bool:
        if not arn:
            return False
        with self.lock:
            created = self.at.get(arn)
        return created is not None and time.monotonic() - created < delay_s


CREATED = _Created()


def install(delay: Callable[[], float]) -> None:
    """Patch moto: record each role's creation; refuse Lambda/ECS use of a role younger than ``delay()`` seconds."""
    from moto.awslambda.exceptions import InvalidParameterValueException
    from moto.awslambda.models import LambdaBackend
    from moto.ecs.exceptions import EcsClientException
    from moto.ecs.models import EC2ContainerServiceBackend
    from moto.iam.models import IAMBackend

    if getattr(IAMBackend.create_role, "_kumolab_fidelity", False):
        return
    original_create_role = IAMBackend.create_role
    original_create_function = LambdaBackend.create_function
    original_update_configuration = LambdaBackend.update_function_configuration
    original_run_task = EC2ContainerServiceBackend.run_task

    def create_role(backend, *args, **kwargs):
        role = original_create_role(backend, *args, **kwargs)
        CREATED.record(role.arn)
        return role

    def check_lambda(role_arn: str | None) -> None:
        if CREATED.too_new(role_arn, float(delay())):
            raise InvalidParameterValueException(LAMBDA_MESSAGE)

    def create_function(backend, spec):
        check_lambda(spec.get("Role"))
        return original_create_function(backend, spec)

    def update_function_configuration(backend, function_name, qualifier, body):
        check_lambda((body or {}).get("Role"))
        return original_update_configuration(backend, function_name, qualifier, body)

    def check_ecs(backend, task_definition_str: str | None) -> None:
        if not task_definition_str:
            return
        definition = backend.describe_task_definition(task_definition_str)
        for arn in (getattr(definition, "task_role_arn", None), getattr(definition, "execution_role_arn", None)):
            if CREATED.too_new(arn, float(delay())):
                raise EcsClientException(ECS_MESSAGE.format(arn=arn))

    def run_task(backend, cluster_str, task_definition_str, *args, **kwargs):
        check_ecs(backend, task_definition_str)
        return original_run_task(backend, cluster_str, task_definition_str, *args, **kwargs)

    create_role._kumolab_fidelity = True  # type: ignore[attr-defined]
    IAMBackend.create_role = create_role
    LambdaBackend.create_function = create_function
    LambdaBackend.update_function_configuration = update_function_configuration
    EC2ContainerServiceBackend.run_task = run_task
