"""``batch submit-job`` on the emulator runs the job: its container becomes a local process with Batch's lifecycle.

moto's Batch backend runs a job's container with Docker, and without Docker marks it FAILED at once (or,
in its "simple" variant, SUCCEEDED without running anything). Inside the emulator process
(:mod:`kumolab.local.front_door` installs this) every job's thread runs the job definition's container
as a local process instead, the way :mod:`kumolab.local.ecs_tasks` runs an ECS task:

- program: the job definition's tag ``kumolab.runtime.source`` names the repo directory that the image's
  Dockerfile copies in (Batch container properties have no docker labels; the tag is inert on AWS);
  argv is ``containerProperties.command`` (``containerOverrides.command`` replaces it, ``Ref::name``
  parameters substituted), a leading ``python`` this interpreter (:func:`kumolab.local.runtime.ecs.container_argv`);
- environment: what Batch sets (``AWS_BATCH_JOB_ID``, ``AWS_BATCH_JOB_ATTEMPT``, ``AWS_BATCH_JQ_NAME``,
  ``AWS_BATCH_CE_NAME``; for an array child ``AWS_BATCH_JOB_ARRAY_INDEX`` and ``AWS_BATCH_JOB_ARRAY_SIZE``),
  the definition's ``environment`` with the overrides' on top, and the keys of the job role
  (``jobRoleArn``, assumed in this emulator's STS, so the emulator enforces its policies);
- lifecycle, as ``describe-jobs`` reports it: SUBMITTED -> PENDING (until ``dependsOn`` jobs succeed) ->
  RUNNABLE -> STARTING -> RUNNING -> SUCCEEDED (exit 0) or FAILED; a non-zero exit is retried up to
  the job definition's ``retryStrategy.attempts``, each try one entry of
  ``attempts`` with its exit code; ``timeout.attemptDurationSeconds`` ends a try (SIGTERM, then SIGKILL
  after 30 s) with "Job attempt duration exceeded timeout"; ``TerminateJob``/``CancelJob`` end it with
  their reason;
- an array job's parent runs nothing: PENDING while its children wait, RUNNING once one runs, then
  SUCCEEDED when all children succeeded and FAILED when all ended and one failed, with
  ``arrayProperties.statusSummary`` counting the children by status;
- output goes to CloudWatch Logs, group ``/aws/batch/job``, stream ``<definition>/default/<job id>``
  (``container.logStreamName``), and to ``<state dir>/runtime/batch-jobs/<job id>.log``.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from kumolab.local.process import ServiceError
from kumolab.local.runtime.ecs import SOURCE_LABEL, container_argv, container_environment, container_source
from kumolab.paths import REPO_ROOT, state_dir

LOG_GROUP = "/aws/batch/job"
STEP_S = 0.3  # time spent in each of SUBMITTED, RUNNABLE and STARTING, so a watcher can see them
KILL_AFTER_S = 30
FINAL = ("SUCCEEDED", "FAILED")


def _ms(moment: datetime | None = None) -> int:
    return int((moment or datetime.now(UTC)).timestamp() * 1000)


def substitute(command: list[str], parameters: dict[str, str]) -> list[str]:
    """``Ref::name`` placeholders replaced by the job's parameters, as Batch does (an unknown name stays)."""
    out = []
    for part in command:
        for name, value in parameters.items():
            part = part.replace(f"Ref::{name}", str(value))
        out.append(part)
    return out


def merged_environment(definition_env: list[dict], override_env: list[dict]) -> list[dict]:
    env = {e["name"]: str(e["value"]) for e in definition_env or []}
    env.update({e["name"]: str(e["value"]) for e in override_env or []})
    return [{"name": k, "value": v} for k, v in env.items()]


def array_status(children: list[str]) -> str:
    """An array parent's status from its children's (Batch's rules)."""
    if any(s not in FINAL for s in children):
        return "RUNNING" if any(s in ("RUNNING", "SUCCEEDED", "FAILED") for s in children) else "PENDING"
    return "SUCCEEDED" if all(s == "SUCCEEDED" for s in children) else "FAILED"


class JobRun:
    """One (child) job's tries as local processes."""

    def __init__(self, runner: BatchRunner, job):
        self.runner, self.job = runner, job
        self.status = "SUBMITTED"
        self.reason: str | None = None
        self.proc: subprocess.Popen | None = None
        self.stop_reason: str | None = None
        self.exit_code: int | None = None
        self.log_path: Path | None = None
        self.attempts: list[dict] = []
        self.started_at: int | None = None
        self.stopped_at: int | None = None
        self.log_stream = None

    # -- what the job is ---------------------------------------------------------------------------
    @property
    def definition(self):
        return self.job.job_definition

    def _index(self) -> int | None:
        index = (self.job.array_properties or {}).get("index")
        return int(index) if index is not None else None

    def _retry_attempts(self) -> int:
        strategy = self.definition.retry_strategy or {}
        try:
            return max(1, min(10, int(strategy.get("attempts") or 1)))
        except (TypeError, ValueError):
            return 1

    def _attempt_timeout(self) -> float | None:
        timeout = self.job.timeout or self.definition.timeout or {}
        seconds = timeout.get("attemptDurationSeconds")
        return float(seconds) if seconds else None

    def container(self, attempt: int, size: int | None) -> tuple[list[str], Path, dict]:
        props = self.definition.container_properties or {}
        overrides = self.job.container_overrides or {}
        source_rel = self.runner.source_of(self.definition)
        spec = {
            "name": self.definition.name,
            "command": substitute(list(overrides.get("command") or props.get("command") or []), self.job.parameters),
            "environment": merged_environment(props.get("environment") or [], overrides.get("environment") or []),
            "dockerLabels": {SOURCE_LABEL: source_rel} if source_rel else {},
        }
        source = container_source(spec, self.runner.repo_root)
        batch_env = {
            "AWS_BATCH_JOB_ID": self.job.job_id,
            "AWS_BATCH_JOB_ATTEMPT": str(attempt),
            "AWS_BATCH_JQ_NAME": self.job.job_queue.name,
            "AWS_BATCH_CE_NAME": self.runner.compute_environment_of(self.job.job_queue),
        }
        index = self._index()
        if index is not None:
            batch_env["AWS_BATCH_JOB_ARRAY_INDEX"] = str(index)
            batch_env["AWS_BATCH_JOB_ARRAY_SIZE"] = str(size or 0)
        env = container_environment(self.runner.aws, spec, source, props.get("jobRoleArn"), **batch_env)
        env.update(batch_env)  # the container's own environment cannot hide Batch's variables
        return container_argv(spec, source), source, env

    # -- lifecycle -----------------------------------------------------------------------------------
    def run(self, size: int | None) -> None:
        time.sleep(STEP_S)
        self.status = "PENDING"
        if not self._dependencies_succeeded():
            return
        tries = self._retry_attempts()
        for attempt in range(1, tries + 1):
            self.status = "RUNNABLE"
            time.sleep(STEP_S)
            if self.stop_reason:
                return self._finish("FAILED", self.stop_reason)
            self.status = "STARTING"
            time.sleep(STEP_S)
            try:
                argv, source, env = self.container(attempt, size)
            except ServiceError as exc:
                return self._finish(
                    "FAILED",
                    f"CannotStartContainerError: {exc} (the local target runs a container's program from the "
                    f"repository, named by the job definition's tag {SOURCE_LABEL!r})",
                )
            code, reason = self._attempt(argv, source, env)
            self.exit_code = code
            if code == 0:
                return self._finish("SUCCEEDED", "Essential container in task exited")
            if self.stop_reason:
                return self._finish("FAILED", self.stop_reason)
            self.reason = reason
        self._finish("FAILED", self.reason or "Essential container in task exited")

    def _dependencies_succeeded(self) -> bool:
        for dependency in self.job.depends_on or []:
            while True:
                other = self.runner.status_of(self.job.backend, dependency.get("jobId", ""))
                if other == "SUCCEEDED":
                    break
                if other in ("FAILED", None) or self.stop_reason:
                    self._finish("FAILED", f"Dependent Job failed: {dependency.get('jobId')}")
                    return False
                time.sleep(0.5)
        return True

    def _attempt(self, argv: list[str], source: Path, env: dict) -> tuple[int, str]:
        directory = state_dir() / "runtime" / "batch-jobs"
        directory.mkdir(parents=True, exist_ok=True)
        self.log_path = directory / f"{self.job.job_id.replace(':', '-')}.log"
        task_id = f"{self.job.job_id.replace(':', '-')}-{len(self.attempts) + 1}"
        stream = f"{self.definition.name}/default/{task_id}"
        started = _ms()
        self.started_at = self.started_at or started
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603 - argv checked by container_argv (the lab's own program)
                argv,
                cwd=source,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        offset = self.log_path.stat().st_size
        self.status = "RUNNING"
        self.log_stream = stream
        limit = self._attempt_timeout()
        reason = "Essential container in task exited"
        while self.proc.poll() is None:
            if self.stop_reason:
                reason = self.stop_reason
                self._kill()
                break
            if limit is not None and (_ms() - started) / 1000 > limit:
                reason = "Job attempt duration exceeded timeout"
                self._kill()
                break
            time.sleep(0.1)
        code = self.proc.wait()
        code = 128 - code if code < 0 else code
        self.runner.put_logs(stream, self.log_path, offset)
        self.attempts.append(
            {
                "container": {"exitCode": code, "logStreamName": stream, "taskArn": task_id},
                "startedAt": started,
                "stoppedAt": _ms(),
                "statusReason": reason,
            }
        )
        return code, reason

    def _kill(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=KILL_AFTER_S)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)

    def _finish(self, status: str, reason: str) -> None:
        self.reason = reason
        self.stopped_at = _ms()
        self.status = status

    def terminate(self, reason: str) -> None:
        self.stop_reason = reason or "Terminated by user"

    def describe(self, answer: dict) -> dict:
        answer["status"] = self.status
        if self.reason and self.status in FINAL:
            answer["statusReason"] = self.reason
        if self.started_at:
            answer["startedAt"] = self.started_at
        if self.stopped_at:
            answer["stoppedAt"] = self.stopped_at
        answer["attempts"] = list(self.attempts)
        container = answer.setdefault("container", {})
        container.pop("exitCode", None)
        if self.status in FINAL and self.exit_code is not None:
            container["exitCode"] = self.exit_code
        if self.log_stream:
            container["logStreamName"] = self.log_stream
        return answer


class BatchRunner:
    """Installs the hooks on moto's Batch backend and keeps this emulator's job runs."""

    def __init__(self, aws, repo_root: Path = REPO_ROOT):
        self.aws, self.repo_root = aws, repo_root
        self.runs: dict[str, JobRun] = {}
        self.lock = threading.Lock()

    def source_of(self, definition) -> str | None:
        return definition.backend.list_tags_for_resource(definition.arn).get(SOURCE_LABEL)

    @staticmethod
    def compute_environment_of(queue) -> str:
        order = sorted(getattr(queue, "env_order_json", None) or [], key=lambda e: e.get("order", 0))
        name = (order[0].get("computeEnvironment") if order else "") or ""
        return name.split("/")[-1]

    def status_of(self, backend, job_id: str) -> str | None:
        job = backend._jobs.get(job_id)
        return job.status if job is not None else None

    def put_logs(self, stream: str, path: Path, offset: int = 0) -> None:
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                lines = f.read().decode(errors="replace").splitlines()
            logs = self.aws.client("logs")
            try:
                logs.create_log_group(logGroupName=LOG_GROUP)
            except logs.exceptions.ResourceAlreadyExistsException:
                pass
            try:
                logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
            except logs.exceptions.ResourceAlreadyExistsException:
                pass
            now = _ms()
            events = [{"timestamp": now, "message": line} for line in lines if line] or [
                {"timestamp": now, "message": ""}
            ]
            for i in range(0, len(events), 5000):
                logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=stream, logEvents=events[i : i + 5000])
        except Exception as exc:  # noqa: BLE001 - the job's result stands; say why its log is missing
            print(f"[batch-jobs] log stream {stream} not written: {exc}", flush=True)

    def shutdown(self) -> None:
        for run in list(self.runs.values()):
            if run.status not in FINAL:
                run.terminate("The emulator stopped")
                run._kill()

    # -- hooks on moto's backend -----------------------------------------------------------------------
    def install(self) -> None:
        from moto.batch.models import Job

        if getattr(Job, "_kumolab_runner", None) is not None:
            Job._kumolab_runner.__dict__.update(self.__dict__)
            return
        runner = self
        original_describe = Job.describe
        original_terminate = Job.terminate

        def run(job) -> None:
            size = getattr(job, "_kumolab_array_size", None)
            job_run = job._kumolab_run
            try:
                job_run.run(size)
            except Exception as exc:  # noqa: BLE001 - a bug here must show as the job's failure, not hang it
                job_run._finish("FAILED", f"kumolab local Batch runner: {type(exc).__name__}: {exc}")

        def start(job) -> None:
            job._kumolab_run = JobRun(runner, job)
            runner.runs[job.job_id] = job._kumolab_run
            threading.Thread.start(job)

        def get_status(job):
            children = getattr(job, "_child_jobs", None)
            if children:
                return array_status([c.status for c in children])
            job_run = job.__dict__.get("_kumolab_run")
            return job_run.status if job_run is not None else "SUBMITTED"

        def set_status(job, value):  # moto's own transitions are ignored: the run owns the status
            pass

        @functools.wraps(original_describe)
        def describe(job):
            answer = original_describe(job)
            job_run = job.__dict__.get("_kumolab_run")
            if job_run is not None:
                answer = job_run.describe(answer)
            children = getattr(job, "_child_jobs", None)
            if children:
                answer["status"] = job.status
                starts = [
                    c._kumolab_run.started_at
                    for c in children
                    if c.__dict__.get("_kumolab_run") and c._kumolab_run.started_at
                ]
                if starts:
                    answer["startedAt"] = min(starts)
                if answer["status"] in FINAL:
                    answer["stoppedAt"] = max((c._kumolab_run.stopped_at or 0) for c in children)
                    failed = [c.job_id for c in children if c.status == "FAILED"]
                    answer["statusReason"] = (
                        f"{len(failed)} of {len(children)} child jobs failed" if failed else "All child jobs succeeded"
                    )
            elif job.array_properties.get("index") is not None:
                answer["arrayProperties"] = {"index": job.array_properties["index"]}
            return answer

        def terminate(job, reason: str) -> None:
            original_terminate(job, reason)
            for target in getattr(job, "_child_jobs", None) or [job]:
                job_run = target.__dict__.get("_kumolab_run")
                if job_run is not None:
                    job_run.terminate(reason)

        original_init = Job.__init__

        @functools.wraps(original_init)
        def init(job, *args, **kwargs):
            original_init(job, *args, **kwargs)
            size = (kwargs.get("array_properties") or {}).get("size")
            job._kumolab_array_size = size
            parent = kwargs.get("provided_job_id")
            if parent and ":" in parent:
                owner = kwargs["all_jobs"].get(parent.split(":")[0])
                job._kumolab_array_size = getattr(owner, "_kumolab_array_size", None)

        Job._kumolab_runner = runner  # type: ignore[attr-defined]
        Job.__init__ = init
        Job.run = run
        Job.start = start
        Job.status = property(get_status, set_status)
        Job.describe = describe
        Job.terminate = terminate
