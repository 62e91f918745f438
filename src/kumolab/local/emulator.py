"""The embedded AWS emulator: moto in server mode on 127.0.0.1, run in the background.

``kumolab-emulator start`` starts it (or reuses the one already up) and writes the AWS profile that
names it (:mod:`kumolab.local.settings`), ``stop`` stops it, ``status`` reports, ``endpoint`` prints the
URL, ``profile`` prints the profile's name. State lives in ``<state dir>/emulator/``: ``pid``,
``moto.log`` (a :class:`kumolab.local.process.BackgroundService`) and ``credentials.json``. The port
comes from ``--port``, else ``$KUMOLAB_EMULATOR_PORT``, else :data:`kumolab.local.settings.EMULATOR_PORT`;
the playbooks and every client find it through the profile, so they always agree.

Teardown never stops the emulator: what a teardown left behind can still be inspected. Stop it
explicitly with ``kumolab-emulator stop``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import kumolab.aws
from kumolab.local import settings
from kumolab.local.guard import SECRET_HEADER
from kumolab.local.process import BackgroundService, ServiceError, pid_alive, python_module_argv, stop_pid
from kumolab.local.settings import HOST
from kumolab.paths import state_dir, state_lock

DEFAULT_PORT = settings.EMULATOR_PORT
START_TIMEOUT_S = 90.0  # a loaded machine (CI, several sessions) imports moto slowly

# What real AWS publishes and moto does not, seeded under a prefix of our own (moto refuses /aws/):
# the local inventory points the GPU lab's AMI parameter root and quota source here.
SEED_PREFIX = "/kumolab/emulator"
SEED_DLAMI_FLAVORS = ("base-oss-nvidia-driver-gpu-ubuntu-24.04",)
SEED_DLAMI_NAME = "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 24.04) {date}"
# On-demand G and VT: one g4dn.2xlarge; Spot G and VT: the same; P (on-demand and Spot): none.
SEED_QUOTAS_VCPUS = {"L-DB2E81BA": 8, "L-3819A6DF": 8, "L-417A185B": 0, "L-7212CCBC": 0}


def stop_lab_host(emulator_dir: Path) -> bool:
    """Stop the loopback sshd next to this emulator (``<state>/sshd/sshd.pid``, written by :mod:`.sshhost`'s sshd):
    the lab host never outlives the emulator whose instances it trusts (review C1). True when one was stopped."""
    pid_file = emulator_dir.parent / "sshd" / "sshd.pid"
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return False
    if not pid_alive(pid):
        return False
    stop_pid(pid, grace_s=5.0, group=False)
    pid_file.unlink(missing_ok=True)
    return True


class EmulatorError(RuntimeError):
    """Raised with a message that tells the user what to do."""


def configured_port() -> int:
    try:
        return settings.emulator_port()
    except settings.PortError as exc:
        raise EmulatorError(str(exc)) from None


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def is_moto(endpoint: str, timeout: float = 2.0) -> bool:
    """True when ``endpoint`` answers like a moto server (its /moto-api/ dashboard is there)."""
    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=timeout) as resp:
            return resp.status == 200 and b"moto" in resp.read(65536).lower()
    except (urllib.error.URLError, OSError, ValueError):
        return False


@dataclass
class Emulator:
    port: int
    directory: Path
    service: BackgroundService = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.service = BackgroundService(
            name="moto",
            # moto's server behind kumolab's front door (executes Invoke, run-task, execute-api; moto's fixes).
            # It accepts only this directory's key (kumolab.local.guard); global CORS is off.
            argv=python_module_argv(
                "kumolab.local.front_door",
                "-H",
                HOST,
                "-p",
                str(self.port),
                "--credentials",
                str(self.directory / "credentials.json"),
            ),
            healthy=lambda _service: is_moto(self.endpoint, timeout=0.5),
            env=dict(os.environ, MOTO_IAM_LOAD_MANAGED_POLICIES="true", MOTO_DISABLE_GLOBAL_CORS="true"),
            start_timeout_s=START_TIMEOUT_S,
            directory=self.directory,
        )

    @classmethod
    def from_environment(cls, port: int | None = None) -> Emulator:
        return cls(port=port or configured_port(), directory=state_dir() / "emulator")

    @property
    def endpoint(self) -> str:
        return settings.endpoint(self.port)

    def credentials(self) -> dict[str, str]:
        return settings.credentials(self.directory)

    def write_profile(self, region: str, name: str | None = None) -> bool:
        """Write the AWS profile that names this emulator (see :mod:`kumolab.local.settings`)."""
        return settings.write_profile(self.endpoint, region, self.credentials(), name)

    @property
    def log_file(self) -> Path:
        return self.service.log_file

    def pid(self) -> int | None:
        return self.service.pid()

    def running(self) -> bool:
        return self.service.running()

    def start(self) -> bool:
        """Start the emulator unless it is already up. Returns True when a new process was started."""
        if self.running():
            return False
        if _port_in_use(self.port):
            owner = "a moto server kumolab did not start" if is_moto(self.endpoint) else "another program"
            raise EmulatorError(
                f"Port {self.port} on {HOST} is already in use by {owner}. Stop it, or pick a free port for "
                f"the emulator: export KUMOLAB_EMULATOR_PORT=<port> (the local inventory reads the same variable)."
            )
        self.credentials()  # generated before the first start: the front door accepts only this key
        try:
            self.service.start()
        except ServiceError as exc:
            raise EmulatorError(f"The emulator did not start on {self.endpoint}: {exc}") from exc
        self._configure()
        return True

    def seed(self, region: str, profile: str | None = None) -> None:
        """Publish, idempotently, the public parameters moto lacks (Deep Learning AMI, EC2 GPU quotas).

        Goes through the profile (written by :meth:`write_profile`), like every other client.
        """
        ssm = kumolab.aws.client("ssm", profile or settings.profile_name(), region)
        ec2 = kumolab.aws.client("ec2", profile or settings.profile_name(), region)
        existing = {
            p["Name"]
            for page in ssm.get_paginator("get_parameters_by_path").paginate(Path=SEED_PREFIX, Recursive=True)
            for p in page["Parameters"]
        }
        for code, vcpus in SEED_QUOTAS_VCPUS.items():
            name = f"{SEED_PREFIX}/service-quotas/ec2/{code}"
            if name not in existing:
                ssm.put_parameter(Name=name, Value=str(vcpus), Type="String")
        for flavor in SEED_DLAMI_FLAVORS:
            name = f"{SEED_PREFIX}/aws/service/deeplearning/ami/x86_64/{flavor}/latest/ami-id"
            if name in existing:
                continue
            # A copy of moto's Amazon Linux image under the Deep Learning AMI's name: an image that exists,
            # with a root device, so that launching from the parameter behaves as on AWS.
            source = ssm.get_parameter(Name="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64")
            copy = ec2.copy_image(
                SourceImageId=source["Parameter"]["Value"],
                SourceRegion=region,
                Name=SEED_DLAMI_NAME.format(date=time.strftime("%Y%m%d")),
            )
            ssm.put_parameter(Name=name, Value=copy["ImageId"], Type="String")

    def _configure(self) -> None:
        # Without Docker, moto's default Lambda backend cannot even store functions; the project's own
        # local runtime executes handlers, so moto only needs to keep their configuration and code.
        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/config",
            data=json.dumps({"lambda": {"use_docker": False}}).encode(),
            headers={"Content-Type": "application/json", SECRET_HEADER: self.credentials()["aws_secret_access_key"]},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5):
            pass

    def stop(self) -> bool:
        """Stop the emulator, and the local lab host that trusts it (review C1). True when the emulator was stopped."""
        stop_lab_host(self.directory)
        return self.service.stop()

    def status(self) -> dict:
        return {
            "running": self.running(),
            "endpoint": self.endpoint,
            "pid": self.pid(),
            "log": str(self.log_file),
            "profile": settings.profile_name(),
            "config_file": str(settings.aws_config_file()),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kumolab-emulator", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["start", "stop", "status", "endpoint", "profile", "rules"])
    parser.add_argument("--port", type=int, help=f"port on {HOST} (default $KUMOLAB_EMULATOR_PORT or {DEFAULT_PORT})")
    parser.add_argument("--json", action="store_true", help="print a JSON object (for Ansible)")
    args = parser.parse_args(argv)
    if args.command == "rules":  # the fidelity layer's AWS rules (kumolab.local.fidelity, docs/fidelity.md)
        from kumolab.local import fidelity

        return fidelity.print_rules(as_json=args.json)
    try:
        emulator = Emulator.from_environment(args.port)
        if args.command == "start":
            with state_lock("emulator"):
                changed = emulator.start()
                region = settings.region()
                # The profile is rewritten whenever it differs (another port, keys, region), and only then.
                changed = emulator.write_profile(region) or changed
                emulator.seed(region)
            result = dict(emulator.status(), changed=changed)
        elif args.command == "stop":
            result = dict(emulator.status(), changed=emulator.stop(), running=False)
        elif args.command == "status":
            result = dict(emulator.status(), changed=False)
        elif args.command == "profile":
            print(settings.profile_name())
            return 0
        else:
            print(emulator.endpoint)
            return 0
    except EmulatorError as exc:
        if args.json:
            print(json.dumps({"failed": True, "msg": str(exc)}))
        print(f"kumolab-emulator: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        verb = {
            "start": "started" if result["changed"] else "already running",
            "stop": "stopped" if result["changed"] else "not running",
        }
        print(
            f"emulator {verb.get(args.command, 'running' if result['running'] else 'not running')} at {result['endpoint']}"  # noqa: E501
        )
    return 0 if args.command != "status" or result["running"] else 1


if __name__ == "__main__":
    sys.exit(main())
