"""``stepfunctions start-execution`` on the emulator runs the state machine, under its role, against this emulator.

moto stores state machines and executions and, by default, runs nothing (an execution stays RUNNING with a
canned history). It also ships an Amazon States Language interpreter, a port of LocalStack's
(``moto.stepfunctions.parser``, off unless ``{"stepfunctions": {"execute_state_machine": true}}``), which
implements the specification's states (Task, Pass, Choice, Wait, Succeed, Fail, Parallel, Map), Retry and
Catch, the input/output fields (InputPath, Parameters with ``.$`` keys and intrinsic functions,
ResultSelector, ResultPath, OutputPath), TimeoutSeconds, the execution history, and the service
integrations (``lambda:invoke``, ``batch:submitJob.sync``, ...) as SDK calls. That is the maintained
interpreter the project uses (moto is already pinned; no second emulator): this module only makes it run
here, inside the emulator process (:mod:`kumolab.local.front_door` installs it):

- executions are interpreted (the configuration switch above, set at start);
- every call a Task makes goes to *this* emulator's endpoint, signed with keys of the state machine's
  role (``roleArn``, or a state's ``Credentials.RoleArn``), assumed in this emulator's STS as Step Functions
  assumes it on AWS: the front door then enforces that role's policies (``iam-role-authorization``), its
  ``lambda:invoke`` runs the deployed handler in the local runtime, its ``batch:submitJob`` runs the job
  as local processes (:mod:`kumolab.local.batch_jobs`), and ``.sync`` polls ``DescribeJobs`` until the job
  is SUCCEEDED (the output: that job) or FAILED (``States.TaskFailed``, the job as the cause). moto's own
  interpreter would sign with the dummy key ``ak`` (which the emulator's guard refuses) and ignore the role;
- the Batch integration speaks Step Functions' casing, as on AWS: the state's ``Parameters`` (``JobName``,
  ``ArrayProperties.Size``, ``ContainerOverrides.Environment[].Name``) become the API's (``jobName``, ...)
  and the results come back PascalCased (``JobId``, ``Status``, ``ArrayProperties.StatusSummary``). moto's
  port keeps the shape-driven converters but never calls them (``_normalise_parameters`` and
  ``_normalise_response`` are empty), so on moto alone ``batch:submitJob`` fails with ``States.Runtime``
  ``'JobName'``; :func:`install_batch_casing` calls them for Batch;
- a ``.sync`` task waits for its job only, not for a task token as well: moto's interpreter also listens for
  ``SendTaskSuccess`` on a token that the first attempt's end interrupts, so a Retry's second attempt ended at
  once in ``States.Timeout`` (:func:`install_sync_without_token`). On AWS a ``.sync`` task has no token.

Status, output, error, cause and the event history are moto's, read through the ordinary API
(``DescribeExecution``, ``GetExecutionHistory``, ``ListExecutions``) by any client.
"""

from __future__ import annotations

import importlib
from typing import Any

#: The interpreter's modules that build SDK clients (each imported ``boto_client_for`` by name).
CLIENT_MODULES = (
    "moto.stepfunctions.parser.asl.utils.boto_client",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.lambda_eval_utils",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_batch",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_dynamodb",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_ecs",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_events",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_glue",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sns",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sqs",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_unsupported",
    "moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval.resource_eval_s3",
    "moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.resource_eval.resource_eval_s3",
)
#: The session name of a role's keys, as CloudTrail shows Step Functions' own sessions.
SESSION_NAME = "kumolab-states"


def _operation_model(task, boto_service_name: str | None, service_action_name: str | None):
    """The botocore operation a service task calls (``submitJob`` or ``describe_jobs`` -> its model)."""
    import botocore.session

    service = task._get_boto_service_name(boto_service_name=boto_service_name)
    model = botocore.session.get_session().get_service_model(service)
    action = (service_action_name or task.resource.api_action).replace("_", "").lower()
    names = {name.lower(): name for name in model.operation_names}
    return model.operation_model(names[action])


def install_batch_casing() -> None:
    """Step Functions' Batch integration converts between its PascalCase and the Batch API's camelCase."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_batch import (
        StateTaskServiceBatch,
    )

    if getattr(StateTaskServiceBatch, "_kumolab_casing", False):
        return

    def normalise_parameters(task, parameters, boto_service_name=None, service_action_name=None) -> None:
        shape = _operation_model(task, boto_service_name, service_action_name).input_shape
        if shape is not None:
            task._to_boto_request(parameters, shape)

    def normalise_response(task, response, boto_service_name=None, service_action_name=None) -> None:
        shape = _operation_model(task, boto_service_name, service_action_name).output_shape
        if shape is not None and isinstance(response, dict):
            response.pop("ResponseMetadata", None)
            task._from_boto_response(response, shape)

    StateTaskServiceBatch._normalise_parameters = normalise_parameters
    StateTaskServiceBatch._normalise_response = normalise_response
    StateTaskServiceBatch._kumolab_casing = True


def install_sync_without_token() -> None:
    """``.sync`` (and ``.sync:2``) tasks poll their job and listen for no task token (see the module's docstring)."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import ResourceCondition
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
        StateTaskServiceCallback,
    )

    original = StateTaskServiceCallback._eval_sync
    if getattr(original, "_kumolab", False):
        return

    def eval_sync(task, env, sync_resolver, timeout_seconds, callback_endpoint, heartbeat_endpoint):
        if task.resource.condition in (ResourceCondition.Sync, ResourceCondition.Sync2):
            callback_endpoint = heartbeat_endpoint = None
        return original(task, env, sync_resolver, timeout_seconds, callback_endpoint, heartbeat_endpoint)

    eval_sync._kumolab = True  # type: ignore[attr-defined]
    StateTaskServiceCallback._eval_sync = eval_sync


class StepFunctionsRunner:
    """Switches moto's interpreter on and points its SDK clients at this emulator, signed as the state machine's role.

    ``target`` is the emulator as the runtime's AWS target (:class:`kumolab.local.front_door.EmulatorTarget`'s
    interface: ``endpoint_url``, ``keys``, ``role_credentials``); ``target_for(region)`` gives it per region.
    """

    def __init__(self, target_for):
        self.target_for = target_for

    def client(self, region: str, service: str, state_credentials: Any = None):
        """What the interpreter's ``boto_client_for`` returns: no retries and no client-side validation (the
        interpreter reports the service's own errors, as Step Functions does), the role's keys when it has one."""
        import boto3
        from botocore.config import Config
        from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import TimeoutSeconds

        target = self.target_for(region)
        role_arn = getattr(state_credentials, "role_arn", None)
        if role_arn:
            keys = target.role_credentials.keys(role_arn, SESSION_NAME)
            credentials = {
                "aws_access_key_id": keys.access_key_id,
                "aws_secret_access_key": keys.secret_access_key,
                "aws_session_token": keys.session_token,
            }
        else:
            credentials = dict(target.keys)
        return boto3.session.Session(region_name=region, **credentials).client(
            service,
            endpoint_url=target.endpoint_url,
            config=Config(
                parameter_validation=False,
                retries={"max_attempts": 0, "total_max_attempts": 1},
                connect_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
                read_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
            ),
        )

    def install(self) -> None:
        from moto.core.config import default_user_config

        default_user_config["stepfunctions"] = dict(default_user_config.get("stepfunctions") or {})
        default_user_config["stepfunctions"]["execute_state_machine"] = True

        def boto_client_for(region: str, service: str, state_credentials: Any = None):
            return self.client(region, service, state_credentials)

        for name in CLIENT_MODULES:
            module = importlib.import_module(name)
            if hasattr(module, "boto_client_for"):
                module.boto_client_for = boto_client_for
        install_batch_casing()
        install_sync_without_token()
