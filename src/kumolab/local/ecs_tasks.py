"""``ecs run-task`` on the emulator runs the task: its containers become local processes with a real lifecycle.

moto stores a task and reports it RUNNING for ever (it has no container runtime here). Inside the
emulator process (:mod:`kumolab.local.front_door` installs this), moto's ECS backend is hooked so that

- ``RunTask`` creates the task as moto does and then starts every container of the task definition as a
  local process, the way the local ECS service runner does (:mod:`kumolab.local.runtime.ecs`: argv from
  ``entryPoint`` + ``command``, program from ``dockerLabels[kumolab.runtime.source]``, the container's
  ``environment``), with the request's ``overrides.containerOverrides`` (``command`` replaces the
  command, ``environment`` is added on top), as ECS applies them;
- ``DescribeTasks`` reports what really happened: ``lastStatus`` PROVISIONING -> PENDING -> RUNNING ->
  (DEACTIVATING while a stop is in progress) -> STOPPED; ``desiredStatus``; ``createdAt``,
  ``startedAt``, ``stoppingAt``, ``stoppedAt``; per container ``lastStatus``, ``exitCode`` and
  ``reason``; ``stopCode`` and ``stoppedReason`` ("Essential container in task exited",
  ``EssentialContainerExited``; a StopTask's reason, ``UserInitiated``; ``TaskFailedToStart`` with a
  ``CannotStartContainerError`` that says why when a container cannot be run locally);
- ``StopTask`` sends SIGTERM to the containers' processes, SIGKILL after the container's
  ``stopTimeout`` (default 30 s, as ECS), then the task is STOPPED with the exit codes they had;
- a container with ``logConfiguration`` ``awslogs`` gets its output in CloudWatch Logs as on AWS: group
  ``awslogs-group``, stream ``<awslogs-stream-prefix>/<container>/<task id>``, written when the task stops.

Output also goes to ``<state dir>/runtime/ecs-tasks/<cluster>/<task id>-<container>.log``. When the
emulator stops, the processes of tasks still running are stopped too.
"""

from __future__ import annotations

import functools
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from kumolab.local.process import pid_alive
from kumolab.local.runtime.ecs import (
    container_argv,
    container_environment,
    container_source,
)
from kumolab.paths import REPO_ROOT, state_dir

DEFAULT_STOP_TIMEOUT_S = 30
PROVISIONING_S = 0.5
# Exit codes Docker reports for a process ended by a signal: 128 + the signal number.
SIGNAL_EXIT = 128


def _now() -> datetime:
    return datetime.now(UTC)


def apply_overrides(container: dict, overrides: dict | None) -> dict:
    """The container definition with the task's ``containerOverrides`` for it applied (as ECS applies them)."""
    merged = dict(container)
    for override in (overrides or {}).get("containerOverrides") or []:
        if override.get("name") != container.get("name"):
            continue
        if override.get("command"):
            merged["command"] = list(override["command"])
        if override.get("environment"):
            env = {e["name"]: e["value"] for e in container.get("environment") or []}
            env.update({e["name"]: e["value"] for e in override["environment"]})
            merged["environment"] = [{"name": k, "value": v} for k, v in env.items()]
    return merged


def default_security_group(backend, networking_configuration: dict | None) -> None:
    """``awsvpcConfiguration`` without ``securityGroups`` gets the VPC's default group, as on AWS (moto: HTTP 500)."""
    config = (networking_configuration or {}).get("awsvpcConfiguration")
    if not config or config.get("securityGroups") or not config.get("subnets"):
        return
    from moto.ec2.models import ec2_backends

    ec2 = ec2_backends[backend.account_id][backend.region_name]
    vpc_id = ec2.get_subnet(config["subnets"][0]).vpc_id
    group = ec2.get_default_security_group(vpc_id)
    config["securityGroups"] = [group.id] if group is not None else []


class TaskRun:
    """One task's containers as local processes, and the lifecycle DescribeTasks reports."""

    def __init__(
        self,
        runner: TaskRunner,
        task,
        definitions: list[dict],
        overrides: dict | None,
        task_role_arn: str | None = None,
    ):
        self.runner, self.task = runner, task
        self.definitions = [apply_overrides(c, overrides) for c in definitions]
        # The task role its containers get keys of (RunTask's overrides.taskRoleArn, else the definition's).
        self.task_role_arn = (overrides or {}).get("taskRoleArn") or task_role_arn
        self.status = "PROVISIONING"
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self.stop_requested = threading.Event()
        self.lock = threading.Lock()
        task.created_at = _now()
        task.stop_code = None
        task.stopped_reason = None
        task.desired_status = "RUNNING"
        for container, _definition in zip(task.containers, self.definitions, strict=False):
            container.last_status = "PENDING"
            container.exitCode = None
            container.reason = None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        # As on AWS, RunTask's own answer shows the task PROVISIONING; the processes start a moment later.
        timer = threading.Timer(PROVISIONING_S, self._run)
        timer.name, timer.daemon = f"ecs-task-{self.task.id}", True
        timer.start()

    def _run(self) -> None:
        task = self.task
        try:
            plans = []
            for definition in self.definitions:
                source = container_source(definition, self.runner.repo_root)
                env = container_environment(
                    self.runner.aws,
                    definition,
                    source,
                    self.task_role_arn,
                    ECS_CLUSTER=task.cluster_name,
                    ECS_TASK_ARN=task.task_arn,
                    ECS_TASK_DEFINITION=task.task_definition_arn,
                )
                plans.append((definition, container_argv(definition, source), source, env))
        except Exception as exc:  # noqa: BLE001 - ServiceError, or a task role that cannot be assumed
            self._failed_to_start(
                f"CannotStartContainerError: {exc} (the local target runs a container's program "
                f"from the repository; it cannot run the image itself)"
            )
            return
        self.status = "PENDING"
        directory = state_dir() / "runtime" / "ecs-tasks" / task.cluster_name
        directory.mkdir(parents=True, exist_ok=True)
        with self.lock:
            if self.stop_requested.is_set():
                self._finish()
                return
            for (definition, argv, source, env), container in zip(plans, task.containers, strict=False):
                log_path = directory / f"{task.id}-{definition['name']}.log"
                with open(log_path, "ab") as log:
                    try:
                        proc = subprocess.Popen(
                            argv,
                            cwd=source,
                            env=env,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL,
                            start_new_session=True,
                        )
                    except OSError as exc:
                        container.reason = f"CannotStartContainerError: {exc}"
                        continue
                self.procs[definition["name"]] = proc
                self.logs[definition["name"]] = log_path
                container.last_status = "RUNNING"
            task.started_at = _now()
            self.status = "RUNNING"
        if not self.procs:
            self._failed_to_start("CannotStartContainerError: no container could be started")
            return
        self._wait()

    def _wait(self) -> None:
        essential = [d["name"] for d in self.definitions if d.get("essential", True) and d["name"] in self.procs]
        essential = essential or list(self.procs)
        while True:
            exited = [name for name in essential if self.procs[name].poll() is not None]
            if exited or self.stop_requested.is_set():
                break
            time.sleep(0.1)
        if not self.stop_requested.is_set():
            self.task.stop_code = "EssentialContainerExited"
            self.task.stopped_reason = "Essential container in task exited"
        self.task.desired_status = "STOPPED"
        self._terminate()
        self._finish()

    def _terminate(self) -> None:
        """SIGTERM every process still running, SIGKILL after the container's stopTimeout."""
        import os
        import signal

        self.status = "DEACTIVATING"
        self.task.stopping_at = _now()
        running = {name: proc for name, proc in self.procs.items() if proc.poll() is None}
        for proc in running.values():
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        timeouts = {d["name"]: int(d.get("stopTimeout") or DEFAULT_STOP_TIMEOUT_S) for d in self.definitions}
        for name, proc in running.items():
            try:
                proc.wait(timeout=timeouts.get(name, DEFAULT_STOP_TIMEOUT_S))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()

    def _finish(self) -> None:
        for container, definition in zip(self.task.containers, self.definitions, strict=False):
            proc = self.procs.get(definition["name"])
            if proc is not None:
                code = proc.wait()
                container.exitCode = SIGNAL_EXIT - code if code < 0 else code
            container.last_status = "STOPPED"
        self._ship_logs()
        self.task.stopped_at = _now()
        self.task.desired_status = "STOPPED"
        self.status = "STOPPED"

    def _failed_to_start(self, reason: str) -> None:
        self.task.stop_code = "TaskFailedToStart"
        self.task.stopped_reason = reason
        for container in self.task.containers:
            container.reason = reason
        self._finish()

    def stop(self, reason: str | None) -> None:
        """StopTask: what ECS does (SIGTERM, then SIGKILL after stopTimeout), in the background."""
        if self.status == "STOPPED" or self.stop_requested.is_set():
            return
        self.task.desired_status = "STOPPED"
        self.task.stop_code = "UserInitiated"
        self.task.stopped_reason = reason or "Task stopped by user"
        self.stop_requested.set()

    def _ship_logs(self) -> None:
        for definition in self.definitions:
            config = definition.get("logConfiguration") or {}
            path = self.logs.get(definition["name"])
            if config.get("logDriver") != "awslogs" or path is None:
                continue
            options = config.get("options") or {}
            group = options.get("awslogs-group")
            if not group:
                continue
            stream = f"{options.get('awslogs-stream-prefix', 'ecs')}/{definition['name']}/{self.task.id}"
            try:
                self.runner.put_logs(group, stream, path.read_text(errors="replace").splitlines())
            except Exception as exc:  # noqa: BLE001 - a missing log group is the task's problem, not the emulator's
                print(f"[ecs-tasks] logs of {self.task.task_arn} not written to {group}: {exc}", flush=True)


class TaskRunner:
    """Installs the hooks on moto's ECS backend and keeps the runs of this emulator process."""

    def __init__(self, aws, repo_root: Path = REPO_ROOT):
        self.aws, self.repo_root = aws, repo_root
        self.runs: dict[str, TaskRun] = {}

    def launch(self, backend, task, overrides: dict | None) -> None:
        definition = backend.describe_task_definition(task.task_definition_arn)
        from moto.ecs.models import Container

        task.containers = []
        for container_def in definition.container_definitions:
            container = Container(definition)
            container.name = container_def.get("name")
            container.image = container_def.get("image")
            container.cpu = container_def.get("cpu", 0)
            container.memory = container_def.get("memory")
            task.containers.append(container)
        run = TaskRun(
            self, task, list(definition.container_definitions), overrides, getattr(definition, "task_role_arn", None)
        )
        task._kumolab_run = run
        self.runs[task.task_arn] = run
        run.start()

    def put_logs(self, group: str, stream: str, lines: list[str]) -> None:
        logs = self.aws.client("logs")
        try:
            logs.create_log_stream(logGroupName=group, logStreamName=stream)
        except logs.exceptions.ResourceAlreadyExistsException:
            pass
        now = int(time.time() * 1000)
        events = [{"timestamp": now, "message": line} for line in lines if line] or [{"timestamp": now, "message": ""}]
        for i in range(0, len(events), 5000):
            logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events[i : i + 5000])

    def shutdown(self, grace_s: float = 5.0) -> None:
        """Stop the processes of every task still running (the emulator is going away)."""
        import os
        import signal

        procs = [proc for run in self.runs.values() for proc in run.procs.values() if proc.poll() is None]
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                if pid_alive(proc.pid):
                    os.killpg(proc.pid, signal.SIGKILL)

    # -- hooks on moto's backend -----------------------------------------------------------------
    def install(self) -> None:
        from moto.ecs.models import EC2ContainerServiceBackend, Task

        if getattr(EC2ContainerServiceBackend.run_task, "_kumolab_runner", None) is not None:
            EC2ContainerServiceBackend.run_task._kumolab_runner.__dict__.update(self.__dict__)  # re-install
            return
        runner = self
        original_run_task = EC2ContainerServiceBackend.run_task
        original_stop_task = EC2ContainerServiceBackend.stop_task
        original_status = Task.last_status

        @functools.wraps(original_run_task)
        def run_task(
            backend,
            cluster_str,
            task_definition_str,
            count,
            overrides,
            started_by,
            tags,
            launch_type,
            networking_configuration=None,
            *args,
            **kwargs,
        ):
            default_security_group(backend, networking_configuration)
            tasks = original_run_task(
                backend,
                cluster_str,
                task_definition_str,
                count,
                overrides,
                started_by,
                tags,
                launch_type,
                networking_configuration,
                *args,
                **kwargs,
            )
            for task in tasks:
                runner.launch(backend, task, overrides)
            return tasks

        @functools.wraps(original_stop_task)
        def stop_task(backend, cluster_str, task_str, reason):
            task_id = task_str.split("/")[-1]
            run = next((r for arn, r in runner.runs.items() if arn.endswith(task_id)), None)
            before = (run.task.stop_code, run.task.stopped_reason) if run is not None else None
            task = original_stop_task(backend, cluster_str, task_str, reason)
            if run is not None and (run.status == "STOPPED" or run.stop_requested.is_set()):
                task.stop_code, task.stopped_reason = before  # already stopping: ECS keeps the first reason
            elif run is not None:
                run.stop(reason)
            return task

        def get_status(task):
            run = getattr(task, "_kumolab_run", None)
            return run.status if run is not None else original_status.fget(task)

        def set_status(task, value):
            if getattr(task, "_kumolab_run", None) is None:  # ours follow their processes, not moto's setters
                original_status.fset(task, value)

        run_task._kumolab_runner = runner  # type: ignore[attr-defined]
        EC2ContainerServiceBackend.run_task = run_task
        EC2ContainerServiceBackend.stop_task = stop_task
        Task.last_status = property(get_status, set_status)
