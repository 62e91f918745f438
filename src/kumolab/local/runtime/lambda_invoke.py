"""Run deployed Lambda functions locally, from what the emulator stores.

For every invocation the function's configuration (handler, runtime, environment, timeout, memory,
dead-letter target) is read back from the Lambda API (cached for ``config_ttl`` seconds) and its code
is the zip whose SHA-256 equals the deployed ``CodeSha256``:

1. ``GetFunction`` -> ``Code.Location`` when that is a URL we can fetch (real AWS: a presigned URL);
2. otherwise (moto keeps the zip but serves no Location) the content-addressed artifact store
   ``<state dir>/artifacts/lambda/*.zip``, where the playbooks leave every package they deploy. A zip
   is used only when its hash equals the deployed CodeSha256, so the code that runs is exactly the
   deployed code; none matching is an error that says so.

Execution: a warm pool of worker processes per function (``worker.py``: imports the handler once, then
serves one invocation at a time, like a Lambda execution environment). The pool grows on demand up to
``max_workers`` (the function's local concurrency). When the configuration or code changes
(RevisionId/CodeSha256), the pool is retired and new workers start: fresh-process semantics.

Semantics copied from AWS:
- Timeout: the worker is killed after ``Timeout`` seconds and the result is a function error
  ``Sandbox.Timedout`` / "Task timed out after N.00 seconds".
- Errors: ``FunctionError: Unhandled`` with ``errorType``/``errorMessage`` as awslambdaric reports them
  (Runtime.ImportModuleError, Runtime.HandlerNotFound, KeyError for a missing variable, ...).
- ``Event`` invocations return 202 at once and run on a background executor; a failed event is retried
  ``MaximumRetryAttempts`` times (the function's event-invoke config, default 2 as on AWS) with delays
  ``retry_delays`` (AWS waits about 1 and 2 minutes; locally 1 s and 2 s by default so labs and tests
  finish), then sent to the ``DeadLetterConfig.TargetArn`` SQS queue (or, since moto does not keep
  DeadLetterConfig, the queue named by the function's ``kumolab:dead-letter-target`` tag) with the message attributes AWS
  uses (``RequestID``, ``ErrorCode``, ``ErrorMessage``) and the original event as the body.
- Logs: what the handler prints (stdout, stderr, ``logging``) goes to the function's log file and is
  also kept per invocation (``InvokeResult.logs``: from ``START`` to ``REPORT``), which is what
  ``LogType: Tail`` returns (its last 4 KB).
- Qualifiers: ``$LATEST``, a version or an alias, as the Lambda API resolves them.
- Not emulated: memory limits (reported in the context only), reserved concurrency, layers, non-Python
  runtimes (an error says so), and the Python version (workers use this interpreter, whatever the
  function's ``Runtime`` says; the runtime string is checked to be ``python3.*``).
"""  # noqa: E501

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import os
import select
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from kumolab.local.runtime import sandbox
from kumolab.local.runtime.aws import AwsConfig
from kumolab.paths import state_dir

WORKER_SCRIPT = Path(__file__).with_name("worker.py")
MOUNT_SCRIPT = Path(__file__).with_name("mount_namespace.py")
INIT_TIMEOUT_S = 10.0
#: Tag naming a function's dead-letter queue, for targets that do not keep DeadLetterConfig (moto).
DLQ_TAG = "kumolab:dead-letter-target"


class FunctionNotFound(LookupError):
    pass


class CodeNotAvailable(RuntimeError):
    pass


class RuntimeNotSupported(CodeNotAvailable):
    """The function's runtime is one the local target cannot run (anything but Python)."""


class MountFailure(CodeNotAvailable):
    """An access point in the function's FileSystemConfigs cannot be mounted (AWS: EFSMountFailureException)."""


@dataclass(frozen=True)
class Mount:
    """One of the function's ``FileSystemConfigs``: the access point's local directory at its mount path."""

    access_point_arn: str
    local_mount_path: str
    source: Path


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    arn: str
    handler: str
    runtime: str
    environment: dict
    timeout: int
    memory: int
    code_sha256: str
    revision: str
    dlq_arn: str | None
    version: str = "$LATEST"
    role: str = ""
    #: ``FileSystemConfigs``: ((access point ARN, local mount path), ...)
    file_systems: tuple = ()

    @classmethod
    def from_configuration(cls, conf: dict) -> FunctionSpec:
        return cls(
            name=conf["FunctionName"],
            arn=conf["FunctionArn"],
            handler=conf.get("Handler", ""),
            runtime=conf.get("Runtime", ""),
            environment=dict((conf.get("Environment") or {}).get("Variables") or {}),
            timeout=int(conf.get("Timeout", 3)),
            memory=int(conf.get("MemorySize", 128)),
            code_sha256=conf.get("CodeSha256", ""),
            # Anything that changes the execution environment (moto keeps RevisionId/LastModified on
            # configuration updates, so hash what matters ourselves).
            revision=hashlib.sha256(
                json.dumps(
                    [
                        conf.get(k)
                        for k in (
                            "RevisionId",
                            "LastModified",
                            "CodeSha256",
                            "Handler",
                            "Runtime",
                            "Environment",
                            "Timeout",
                            "MemorySize",
                            "Role",
                            "FileSystemConfigs",
                        )
                    ],
                    sort_keys=True,
                    default=str,
                ).encode()
            ).hexdigest(),
            dlq_arn=(conf.get("DeadLetterConfig") or {}).get("TargetArn") or None,
            version=str(conf.get("Version") or "$LATEST"),
            role=conf.get("Role") or "",
            file_systems=tuple(
                (c.get("Arn", ""), c.get("LocalMountPath", "")) for c in conf.get("FileSystemConfigs") or []
            ),
        )

    @property
    def unqualified_arn(self) -> str:
        return ":".join(self.arn.split(":")[:7])


@dataclass
class InvokeResult:
    status_code: int
    payload: bytes = b""
    function_error: str | None = None
    request_id: str = ""
    logs: bytes = b""  # what this invocation logged, START to REPORT
    executed_version: str = "$LATEST"

    def json(self):
        return json.loads(self.payload) if self.payload else None


def artifact_dir() -> Path:
    return state_dir() / "artifacts" / "lambda"


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


class CodeStore:
    """Finds and unpacks the zip whose hash is the deployed CodeSha256."""

    def __init__(self, aws: AwsConfig, root: Path | None = None):
        self.aws = aws
        self.root = root or (state_dir() / "runtime" / "code")
        self._hashes: dict[tuple, str] = {}
        self._lock = threading.Lock()

    def _from_location(self, spec: FunctionSpec) -> bytes | None:
        if self.aws.is_emulator:
            return None  # moto's Location names a bucket that does not exist
        code = self.aws.client("lambda").get_function(FunctionName=spec.arn).get("Code", {})
        location = code.get("Location", "")
        if not location.startswith("https://"):
            return None
        with urllib.request.urlopen(location, timeout=30) as resp:
            return resp.read()

    def _from_artifacts(self, spec: FunctionSpec) -> bytes | None:
        directory = artifact_dir()
        for path in sorted(directory.glob("*.zip")) if directory.is_dir() else []:
            stat = path.stat()
            key = (str(path), stat.st_mtime_ns, stat.st_size)
            digest = self._hashes.get(key)
            if digest is None:
                digest = self._hashes[key] = sha256_b64(path.read_bytes())
            if digest == spec.code_sha256:
                return path.read_bytes()
        return None

    def code_dir(self, spec: FunctionSpec) -> Path:
        safe = hashlib.sha256(spec.code_sha256.encode()).hexdigest()[:32]
        target = self.root / safe
        with self._lock:
            if (target / ".complete").exists():
                return target
            data = self._from_location(spec) or self._from_artifacts(spec)
            if data is None or sha256_b64(data) != spec.code_sha256:
                raise CodeNotAvailable(
                    f"The code of {spec.name} (CodeSha256 {spec.code_sha256}) is not available locally: the emulator "
                    f"does not serve Lambda code, and no zip in {artifact_dir()} has that hash. Deploy with the "
                    f"kumolab playbook (it keeps every package it uploads there)."
                )
            tmp = target.with_name(target.name + f".tmp{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                zf.extractall(tmp)
            (tmp / ".complete").write_text(spec.code_sha256)
            shutil.rmtree(target, ignore_errors=True)
            tmp.rename(target)
            return target


class Worker:
    """One execution environment: a worker.py process for one function revision."""

    def __init__(self, spec: FunctionSpec, code_dir: Path, env: dict, log_path: Path, mounts: tuple = ()):
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")
        command = [sys.executable, "-I", str(WORKER_SCRIPT), str(code_dir), spec.handler]
        if mounts:  # its own mount namespace with the access points at their mount paths (mount_namespace.py)
            binds = [arg for m in mounts for arg in ("--bind", f"{m.source}:{m.local_mount_path}")]
            command = [sys.executable, "-I", str(MOUNT_SCRIPT), *binds, "--", *command]
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=str(code_dir),
            start_new_session=True,
        )
        self.ready = False
        # The worker's log (everything the handler prints) is pumped into the function's log file and, for
        # the invocation in progress, into a buffer: the invocation's own log lines, for LogType Tail.
        self._captured: list[bytes] | None = None
        self._reported = threading.Event()
        self._capture_lock = threading.Lock()
        self._pump = threading.Thread(target=self._pump_log, name=f"lambda-log-{self.proc.pid}", daemon=True)
        self._pump.start()

    def _pump_log(self) -> None:
        for line in iter(self.proc.stderr.readline, b""):
            try:
                self._log.write(line)
                self._log.flush()
            except (OSError, ValueError):
                pass
            with self._capture_lock:
                if self._captured is not None:
                    self._captured.append(line)
                    if line.startswith(b"REPORT RequestId:"):
                        self._reported.set()
        self._reported.set()

    def take_logs(self, wait: bool) -> bytes:
        """The current invocation's log lines (after its REPORT line when ``wait``); ends the capture."""
        if wait:
            self._reported.wait(2.0)
        with self._capture_lock:
            lines, self._captured = self._captured or [], None
        return b"".join(lines)

    def _readline(self, timeout: float) -> dict | None:
        ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, timeout))
        if not ready:
            return None
        line = self.proc.stdout.readline()
        if not line:
            raise EOFError("worker exited")
        return json.loads(line)

    def call(self, request: dict, timeout: float) -> dict | None:
        """The worker's answer, or None when it ran past ``timeout`` (the caller kills it)."""
        with self._capture_lock:
            self._captured = []
            self._reported.clear()
        if not self.ready:
            if self._readline(INIT_TIMEOUT_S) is None:
                return None
            self.ready = True
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.flush()
        return self._readline(timeout)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, 9)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self._close()

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()
        self._close()

    def _close(self) -> None:
        self._pump.join(timeout=1.0)
        for stream in (self.proc.stdout, self.proc.stderr, self._log):
            try:
                stream.close()
            except OSError:
                pass


class FunctionPool:
    """Warm workers of one function revision; grows on demand up to ``max_workers``."""

    def __init__(
        self, spec: FunctionSpec, code_dir: Path, env: dict, log_path: Path, max_workers: int, mounts: tuple = ()
    ):
        self.spec, self.code_dir, self.env, self.log_path = spec, code_dir, env, log_path
        self.mounts = mounts
        self.max_workers = max_workers
        self.idle: list[Worker] = []
        self.count = 0
        self.busy = 0
        self.peak_busy = 0
        self.retired = False
        self.cond = threading.Condition()
        self.expires_at: float | None = None  # when the role's keys in ``env`` expire

    def acquire(self) -> Worker:
        with self.cond:
            while True:
                while self.idle:
                    worker = self.idle.pop()
                    if worker.alive():
                        self._mark_busy()
                        return worker
                    self.count -= 1
                    worker.close()
                if self.count < self.max_workers:
                    self.count += 1
                    self._mark_busy()
                    break
                self.cond.wait()
        try:
            return Worker(self.spec, self.code_dir, self.env, self.log_path, self.mounts)
        except Exception:
            with self.cond:
                self.count -= 1
                self.busy -= 1
                self.cond.notify()
            raise

    def _mark_busy(self) -> None:
        self.busy += 1
        self.peak_busy = max(self.peak_busy, self.busy)

    def release(self, worker: Worker, healthy: bool) -> None:
        with self.cond:
            self.busy -= 1
            if healthy and worker.alive() and not self.retired:
                self.idle.append(worker)
            else:
                self.count -= 1
                threading.Thread(target=worker.kill if not healthy else worker.close, daemon=True).start()
            self.cond.notify()

    def retire(self) -> None:
        with self.cond:
            self.retired = True
            idle, self.idle = self.idle, []
            self.count -= len(idle)
            self.cond.notify_all()
        for worker in idle:
            worker.close()


@dataclass
class LambdaRuntime:
    aws: AwsConfig
    max_workers: int = 8
    config_ttl: float = 1.0
    retry_delays: tuple = (1.0, 2.0)
    _pools: dict = field(default_factory=dict)
    _specs: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._client = self.aws.client("lambda")
        self._sqs = None
        self.code = CodeStore(self.aws)
        self._async = ThreadPoolExecutor(max_workers=max(4, self.max_workers), thread_name_prefix="lambda-event")
        self.dead_lettered = 0

    # -- configuration -------------------------------------------------------------------------
    def spec(self, function: str, qualifier: str | None = None) -> FunctionSpec:
        now = time.monotonic()
        key = (function, qualifier)
        cached = self._specs.get(key)
        if cached and now - cached[0] < self.config_ttl:
            return cached[1]
        kwargs = {"Qualifier": qualifier} if qualifier and qualifier != "$LATEST" else {}
        try:
            conf = self._client.get_function_configuration(FunctionName=function, **kwargs)
        except self._client.exceptions.ResourceNotFoundException:
            shown = f"{function}:{qualifier}" if qualifier else function
            raise FunctionNotFound(f"Function not found: {shown}")  # noqa: B904
        spec = FunctionSpec.from_configuration(conf)
        self._specs[key] = (now, spec)
        return spec

    def _pool(self, spec: FunctionSpec) -> FunctionPool:
        with self._lock:
            pool = self._pools.get(spec.arn)
            fresh = pool is not None and (pool.expires_at is None or time.time() < pool.expires_at - 300)
            if pool is not None and pool.spec.revision == spec.revision and fresh:
                return pool  # same code and configuration, role keys not near expiry
            if pool is not None:
                pool.retire()
            if not spec.runtime.startswith("python3"):
                raise RuntimeNotSupported(
                    f"{spec.name}: runtime {spec.runtime!r} is not supported by the local target "
                    f"(it runs Python handlers only); nothing was run"
                )
            code_dir = self.code.code_dir(spec)
            mounts = self._mounts(spec)
            env, expires_at = self._environment(spec, code_dir)
            log_path = state_dir() / "runtime" / "logs" / f"{spec.name}.log"
            pool = self._pools[spec.arn] = FunctionPool(spec, code_dir, env, log_path, self.max_workers, mounts)
            pool.expires_at = expires_at
            return pool

    def _mounts(self, spec: FunctionSpec) -> tuple:
        """The function's access points as local directories (:mod:`kumolab.local.efs`), created as EFS would."""
        if not spec.file_systems:
            return ()
        from kumolab.local import efs

        client = self.aws.client("efs")
        mounts = []
        for arn, path in spec.file_systems:
            try:
                found = client.describe_access_points(AccessPointId=arn.rsplit("/", 1)[-1])["AccessPoints"]
                source = efs.access_point_directory(found[0])
            except (efs.RootDirectoryMissing, IndexError, client.exceptions.AccessPointNotFound) as exc:
                raise MountFailure(
                    f"{spec.name}: EFSMountFailureException: cannot mount {arn} at {path}: {exc}"
                ) from None
            mounts.append(Mount(arn, path, source))
        return tuple(mounts)

    def _environment(self, spec: FunctionSpec, code_dir: Path) -> tuple[dict, float | None]:
        """The function's environment as AWS sets it (its execution role's keys included), and their expiry."""
        try:  # loader and interpreter variables change what runs: the function does not run (review C2)
            sandbox.check_environment(f"function {spec.name}", spec.environment)
        except sandbox.Refused as exc:
            raise RuntimeNotSupported(str(exc)) from None
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "PYTHONUNBUFFERED": "1",
            "LAMBDA_TASK_ROOT": str(code_dir),
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_VERSION": spec.version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"{time.strftime('%Y/%m/%d')}/[{spec.version}]local",
        }
        role_environment = getattr(self.aws, "role_environment", None)
        if role_environment is not None:
            target, expires_at = role_environment(spec.role, spec.name)
        else:
            target, expires_at = self.aws.function_environment(), None
        env.update(target)
        env.update({k: str(v) for k, v in spec.environment.items()})
        return env, expires_at

    # -- invocation ----------------------------------------------------------------------------
    def invoke(
        self,
        function: str,
        payload: bytes | str | dict | None = None,
        invocation_type: str = "RequestResponse",
        qualifier: str | None = None,
    ) -> InvokeResult:
        spec = self.spec(function, qualifier)
        if isinstance(payload, dict) or payload is None:
            payload = json.dumps(payload or {})
        if isinstance(payload, str):
            payload = payload.encode()
        try:
            event = json.loads(payload or b"{}")
        except ValueError:
            return InvokeResult(
                400,
                json.dumps({"Type": "User", "message": "Could not parse request body into json"}).encode(),
                function_error=None,
            )
        request_id = str(uuid.uuid4())
        if invocation_type == "DryRun":
            return InvokeResult(204, request_id=request_id, executed_version=spec.version)
        if invocation_type == "Event":
            self._async.submit(self._run_event, function, event, request_id, qualifier)
            return InvokeResult(202, request_id=request_id, executed_version=spec.version)
        if invocation_type != "RequestResponse":
            raise ValueError(f"InvocationType must be RequestResponse, Event or DryRun, not {invocation_type!r}")
        return self._run(spec, event, request_id)

    def _run(self, spec: FunctionSpec, event, request_id: str) -> InvokeResult:
        pool = self._pool(spec)
        worker = pool.acquire()
        deadline = time.time() + spec.timeout
        request = {
            "event": event,
            "context": {
                "function_name": spec.name,
                "invoked_function_arn": spec.arn,
                "memory_limit_in_mb": spec.memory,
                "aws_request_id": request_id,
                "log_group_name": f"/aws/lambda/{spec.name}",
                "log_stream_name": "local",
                "deadline_ms": deadline * 1000,
                "function_version": spec.version,
            },
        }
        healthy = False
        started = time.monotonic()
        try:
            answer = worker.call(request, timeout=spec.timeout)
            healthy = answer is not None
        except (EOFError, OSError, ValueError) as exc:
            answer = {
                "error": {
                    "errorType": "Runtime.ExitError",
                    "requestId": request_id,
                    "errorMessage": f"RequestId: {request_id} Error: Runtime exited without providing a reason ({exc})",
                }
            }
        finally:
            logs = worker.take_logs(wait=healthy)
            pool.release(worker, healthy)
        done = functools.partial(InvokeResult, 200, request_id=request_id, executed_version=spec.version)
        if answer is None:
            error = {
                "errorType": "Sandbox.Timedout",
                "requestId": request_id,
                "errorMessage": f"RequestId: {request_id} Error: Task timed out after {spec.timeout:.2f} seconds",
            }
            took = (time.monotonic() - started) * 1000
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
            logs += (
                f"{stamp}Z {request_id} Task timed out after {spec.timeout:.2f} seconds\n"
                f"END RequestId: {request_id}\nREPORT RequestId: {request_id}\tDuration: {took:.2f} ms\t"
                f"Memory Size: {spec.memory} MB\tStatus: timeout\n"
            ).encode()
            return done(json.dumps(error).encode(), "Unhandled", logs=logs)
        if "error" in answer:
            return done(json.dumps(answer["error"]).encode(), "Unhandled", logs=logs)
        return done(answer["ok"].encode(), None, logs=logs)

    def _max_retries(self, function: str, qualifier: str | None = None) -> int:
        try:
            kwargs = {"Qualifier": qualifier} if qualifier else {}
            conf = self._client.get_function_event_invoke_config(FunctionName=function, **kwargs)
            return int(conf.get("MaximumRetryAttempts", 2))
        except Exception:
            return 2

    def _run_event(self, function: str, event, request_id: str, qualifier: str | None = None) -> None:
        attempts = 1 + self._max_retries(function, qualifier)
        result = None
        for attempt in range(attempts):
            try:
                result = self._run(self.spec(function, qualifier), event, request_id)
            except Exception as exc:  # code missing, function deleted meanwhile, ...
                result = InvokeResult(
                    200, json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}).encode(), "Unhandled"
                )
            if result.function_error is None:
                return
            if attempt < attempts - 1:
                time.sleep(self.retry_delays[min(attempt, len(self.retry_delays) - 1)])
        self._dead_letter(function, event, request_id, result)

    def _dead_letter(self, function: str, event, request_id: str, result: InvokeResult) -> None:
        try:
            spec = self.spec(function)
        except FunctionNotFound:
            return
        target = spec.dlq_arn
        if not target:
            # moto (5.2.5) drops DeadLetterConfig; the playbooks also record the target as a tag.
            tags = self._client.list_tags(Resource=spec.unqualified_arn).get("Tags", {})
            target = tags.get(DLQ_TAG)
        if not target or ":sqs:" not in target:
            return
        error = result.json() or {}
        sqs = self._sqs or self.aws.client("sqs")
        self._sqs = sqs
        account, name = target.split(":")[4], target.split(":")[5]
        url = sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
        sqs.send_message(
            QueueUrl=url,
            MessageBody=json.dumps(event),
            MessageAttributes={
                "RequestID": {"DataType": "String", "StringValue": request_id},
                "ErrorCode": {"DataType": "Number", "StringValue": "200"},
                "ErrorMessage": {
                    "DataType": "String",
                    "StringValue": str(error.get("errorMessage", ""))[:1024] or "error",
                },
            },
        )
        self.dead_lettered += 1

    def stats(self) -> dict:
        return {arn: {"workers": p.count, "busy": p.busy, "peak_busy": p.peak_busy} for arn, p in self._pools.items()}

    def shutdown(self) -> None:
        self._async.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.retire()
