"""Run an ECS service's containers as local worker processes (the emulator runs no containers).

Reads from the ECS API: the service's ``desiredCount`` and task definition; for each task, each
container becomes one local process:

- argv: ``entryPoint`` + ``command`` (a leading ``python``/``python3`` is this interpreter, which has
  the project's dependencies, instead of the image's);
- environment: the container's ``environment`` on top of a minimal base, plus what the task would get
  from its role and the target (``AWS_REGION`` and the AWS profile, :meth:`AwsConfig.function_environment`)
  and ``ECS_CLUSTER``/``ECS_SERVICE``/``ECS_TASK_DEFINITION``/``ECS_TASK_INDEX``;
- program: the ``dockerLabels`` entry ``kumolab.runtime.source`` names a repo-relative directory (what
  the image's Dockerfile copies in); it is the working directory and ``PYTHONPATH``.

:func:`EcsService.sync` reconciles the number of running tasks to ``desiredCount`` (start missing
ones, stop surplus ones, replace every task when the task definition changed, restart crashed ones)
and can be called from any process: tasks are tracked by pid files in
``<state dir>/runtime/ecs/<cluster>/<service>/``. ``run_forever`` does that every few seconds; it is
what ``kumolab-runtime ecs start`` runs in the background (see :mod:`kumolab.local.process`). Before each
sync it evaluates the service's Application Auto Scaling policies and their alarms from the queue
(:mod:`kumolab.local.runtime.autoscaling`), which may change ``desiredCount`` first, as AWS would.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from kumolab.local.process import BackgroundService, ServiceError, pid_alive, python_module_argv, stop_pid
from kumolab.local.runtime import sandbox
from kumolab.local.runtime.autoscaling import ServiceScaler
from kumolab.local.runtime.aws import AwsConfig
from kumolab.paths import REPO_ROOT, state_dir

SOURCE_LABEL = "kumolab.runtime.source"


# -- a container definition as a local process (also used for run-task by kumolab.local.ecs_tasks) -----


def container_argv(container: dict, source: Path) -> list[str]:
    """``entryPoint`` + ``command``; a leading ``python``/``python3`` becomes this interpreter, and what it runs
    must be a module or script of ``source`` (:func:`sandbox.check_python_program`)."""
    argv = list(container.get("entryPoint") or []) + list(container.get("command") or [])
    if not argv:
        raise ServiceError(
            f"container {container['name']} has neither entryPoint nor command; the local "
            f"runner cannot guess the image's default command"
        )
    if Path(argv[0]).name in ("python", "python3") or Path(argv[0]).name.startswith("python3."):
        argv[0] = sys.executable
    else:  # the lab's own container programs only (review C2): not sh -c, not any binary the emulator names
        raise ServiceError(
            f"container {container['name']}: the local target runs only Python container programs "
            f"(argv[0] python or python3), not {argv[0]!r}; nothing was run"
        )
    try:
        sandbox.check_python_program(container["name"], argv[1:], source)
    except sandbox.Refused as exc:
        raise ServiceError(f"{exc}; nothing was run") from None
    return argv


def container_source(container: dict, repo_root: Path = REPO_ROOT) -> Path:
    """The repo directory named by the container's ``dockerLabels[kumolab.runtime.source]``."""
    rel = (container.get("dockerLabels") or {}).get(SOURCE_LABEL)
    if not rel:
        raise ServiceError(
            f"container {container['name']} has no dockerLabels[{SOURCE_LABEL!r}] naming the "
            f"repo directory of its program"
        )
    path = (repo_root / rel).resolve()
    try:
        sandbox.check_container_program(container["name"], ["python"], path, repo_root)
    except sandbox.Refused as exc:
        raise ServiceError(f"{SOURCE_LABEL}={rel!r}: {exc}") from None
    if not path.is_dir():
        raise ServiceError(f"{SOURCE_LABEL}={rel!r}: {path} is not a directory")
    return path


def container_environment(
    aws: AwsConfig, container: dict, source: Path, task_role_arn: str | None = None, **ecs: str
) -> dict:
    """A minimal base, the target's region and the task role's keys (:meth:`AwsConfig.role_environment`; no task
    role: the target's profile), ``ecs`` (ECS_CLUSTER, ...), then the container's own."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TZ", "KUMOLAB_STATE_DIR")}
    role_environment = getattr(aws, "role_environment", None)
    if role_environment is not None and task_role_arn:
        env.update(role_environment(task_role_arn, ecs.get("ECS_SERVICE") or container.get("name") or "task")[0])
    else:
        env.update(aws.function_environment())
    env.update(ecs, PYTHONPATH=str(source), PYTHONUNBUFFERED="1")
    own = {e["name"]: str(e["value"]) for e in container.get("environment") or []}
    try:
        sandbox.check_environment(f"container {container.get('name')}", own)
    except sandbox.Refused as exc:
        raise ServiceError(str(exc)) from None
    env.update(own)
    return env


class EcsService:
    def __init__(self, aws: AwsConfig, cluster: str, service: str, repo_root: Path = REPO_ROOT):
        self.aws, self.cluster, self.service, self.repo_root = aws, cluster, service, repo_root
        self.client = aws.client("ecs")
        self.directory = state_dir() / "runtime" / "ecs" / cluster / service
        self.scaler: ServiceScaler | None = None

    # -- what should run ---------------------------------------------------------------------------
    def desired(self) -> tuple[dict | None, int]:
        found = self.client.describe_services(cluster=self.cluster, services=[self.service]).get("services", [])
        live = [s for s in found if s.get("status") == "ACTIVE"]
        if not live:
            return None, 0
        svc = live[0]
        taskdef = self.client.describe_task_definition(taskDefinition=svc["taskDefinition"])["taskDefinition"]
        return taskdef, int(svc.get("desiredCount", 0))

    def _argv(self, container: dict, source: Path) -> list[str]:
        return container_argv(container, source)

    def _source(self, container: dict) -> Path:
        return container_source(container, self.repo_root)

    def _env(self, taskdef: dict, container: dict, index: int, source: Path) -> dict:
        return container_environment(
            self.aws,
            container,
            source,
            taskdef.get("taskRoleArn"),
            ECS_CLUSTER=self.cluster,
            ECS_SERVICE=self.service,
            ECS_TASK_INDEX=str(index),
            ECS_TASK_DEFINITION=taskdef["taskDefinitionArn"],
        )

    # -- what runs ---------------------------------------------------------------------------------
    def tasks(self) -> list[dict]:
        out = []
        for meta in sorted(self.directory.glob("task-*.json")) if self.directory.is_dir() else []:
            try:
                out.append(json.loads(meta.read_text()) | {"meta": str(meta)})
            except (OSError, ValueError):
                meta.unlink(missing_ok=True)
        return out

    def _alive(self, task: dict) -> bool:
        return all(pid_alive(pid) for pid in task["pids"])

    def _start_task(self, taskdef: dict, index: int) -> dict:
        self.directory.mkdir(parents=True, exist_ok=True)
        pids = []
        for container in taskdef.get("containerDefinitions", []):
            source = self._source(container)
            argv = self._argv(container, source)
            log = open(self.directory / f"task-{index}-{container['name']}.log", "ab")
            proc = subprocess.Popen(
                argv,
                cwd=source,
                env=self._env(taskdef, container, index, source),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            log.close()
            pids.append(proc.pid)
            threading.Thread(target=proc.wait, daemon=True).start()  # reap it when it exits
        task = {
            "index": index,
            "pids": pids,
            "task_definition": taskdef["taskDefinitionArn"],
            "started": time.time(),
            # Fargate's grace between SIGTERM and SIGKILL: the containers' stopTimeout (default 30 s, at most 120).
            "stop_timeout": min(
                max(int(c.get("stopTimeout") or 30) for c in taskdef.get("containerDefinitions") or [{}]), 120
            ),
        }
        (self.directory / f"task-{index}.json").write_text(json.dumps(task))
        return task

    def _stop_task(self, task: dict) -> None:
        for pid in task["pids"]:
            if pid_alive(pid):
                stop_pid(pid, grace_s=float(task.get("stop_timeout", 30)))
        Path(task["meta"]).unlink(missing_ok=True)

    def autoscale(self, count: int) -> int:
        """Evaluate the service's Application Auto Scaling policies (:mod:`kumolab.local.runtime.autoscaling`)
        and return the desired count they leave (set through ECS's UpdateService when it changed)."""
        if self.scaler is None:
            self.scaler = ServiceScaler(self.cluster, self.service)
        new = self.scaler.evaluate(
            self.aws.client("application-autoscaling"),
            self.aws.client("cloudwatch"),
            self.client,
            self.aws.client("sqs"),
            count,
        )
        for line in self.scaler.log:
            print(json.dumps({"autoscaling": line}), flush=True)
        self.scaler.log.clear()
        return count if new is None else new

    def sync(self, autoscale: bool = False) -> dict:
        """Make the local tasks match the service (after evaluating its autoscaling policies when
        ``autoscale``). Returns counts of what was done."""
        taskdef, count = self.desired()
        if autoscale and taskdef is not None:
            count = self.autoscale(count)
        started = stopped = 0
        tasks = self.tasks()
        for task in tasks:
            stale = taskdef is None or task["task_definition"] != taskdef["taskDefinitionArn"]
            if stale or not self._alive(task) or task["index"] >= count:
                self._stop_task(task)
                stopped += 1
        running = {t["index"] for t in self.tasks()}
        for index in range(count):
            if index not in running:
                self._start_task(taskdef, index)
                started += 1
        return {
            "desired": count,
            "running": len(self.tasks()),
            "started": started,
            "stopped": stopped,
            "task_definition": taskdef["taskDefinitionArn"] if taskdef else None,
        }

    def stop_all(self) -> int:
        tasks = self.tasks()
        for task in tasks:
            self._stop_task(task)
        return len(tasks)

    def run_forever(self, interval: float, info_file: Path | None = None) -> None:
        done = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: done.set())
        signal.signal(signal.SIGINT, lambda *_: done.set())
        while not done.is_set():
            try:
                state = self.sync(autoscale=True)
            except Exception as exc:  # the emulator restarting, a bad task definition: report and go on
                state = {"error": f"{type(exc).__name__}: {exc}"}
                print(json.dumps(state), flush=True)
            if info_file is not None:
                info_file.write_text(json.dumps(dict(state, pid=os.getpid(), updated=time.time())))
            done.wait(interval)
        self.stop_all()


def background(cluster: str, service: str, interval: float = 3.0, aws: AwsConfig | None = None) -> BackgroundService:
    directory = state_dir() / "runtime" / "ecs" / cluster / service / "runner"
    argv = python_module_argv(
        "kumolab.local.runtime.ecs",
        "run",
        "--cluster",
        cluster,
        "--service",
        service,
        "--interval",
        str(interval),
        "--info",
        str(directory / "info.json"),
    )
    if aws is not None:
        argv += ["--region", aws.region] + (["--profile", aws.profile] if aws.profile else [])
    return BackgroundService(name=f"ecs-{cluster}-{service}", argv=argv, directory=directory)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kumolab-runtime ecs", description="local workers for an ECS service")
    parser.add_argument("action", choices=["start", "stop", "sync", "status", "run"])
    parser.add_argument("--cluster", required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument("--interval", type=float, default=3.0)
    parser.add_argument("--info", type=Path)
    parser.add_argument("--lab", help="the lab the service belongs to (accepted like `kumolab-runtime start --lab`)")
    parser.add_argument("--profile", help="AWS profile (default $AWS_PROFILE, else the local emulator's)")
    parser.add_argument("--region")
    args = parser.parse_args(argv)
    aws = AwsConfig.from_environment(args.profile, args.region)
    svc = EcsService(aws, args.cluster, args.service)
    runner = background(args.cluster, args.service, args.interval, aws)
    try:
        if args.action == "run":
            svc.run_forever(args.interval, args.info)
            return 0
        if args.action == "start":
            result = {"changed": runner.start(), **runner.status()}
        elif args.action == "stop":
            changed = runner.stop()
            result = {"changed": bool(svc.stop_all()) or changed}
        elif args.action == "sync":
            result = svc.sync()
            result["changed"] = bool(result["started"] or result["stopped"])
        else:
            result = {"changed": False, "runner": runner.status(), "tasks": svc.tasks()}
    except ServiceError as exc:
        print(json.dumps({"failed": True, "msg": str(exc)}))
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
