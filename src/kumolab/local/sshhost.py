"""The local lab host: an OpenSSH server on loopback that stands in for the emulated EC2 instances.

On AWS, cloud-init puts the launch key pair's public key into the instance's ``authorized_keys``. Here
the same decision is made at login time: sshd's ``AuthorizedKeysCommand`` calls
``kumolab-sshhost authorized-keys``, which asks the emulator for the running kumolab instances and
prints the public keys of the key pairs they were launched with. A terminated instance's key stops
working, a key pair that was never imported never works.

``kumolab-sshhost start|stop|status``; state in ``<state dir>/sshd/``; port ``$KUMOLAB_SSH_PORT``
(default :data:`kumolab.local.settings.SSH_PORT`). ``start`` records the port in ``<state dir>/sshd/port``,
where the local inventory reads it, and pins the host key in ``<state dir>/sshd/known_hosts`` (the inventory's
UserKnownHostsFile, checked strictly). The key lookup reaches the emulator through the local AWS profile.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import kumolab.aws
from kumolab.local import settings
from kumolab.local.settings import HOST
from kumolab.paths import state_dir

DEFAULT_PORT = settings.SSH_PORT
SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")


class SshHostError(RuntimeError):
    """Raised with a message that tells the user what to do."""


def configured_port() -> int:
    try:
        return settings.ssh_port()
    except settings.PortError as exc:
        raise SshHostError(str(exc)) from None


def find_sshd() -> str:
    for candidate in (shutil.which("sshd"), *SSHD_CANDIDATES):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise SshHostError(
        "sshd (the OpenSSH server) is not installed, so the local lab host cannot start. "
        "Install it with `apt-get install openssh-server` (the README's setup command does this)."
    )


def _banner(port: int) -> bytes:
    try:
        with socket.create_connection((HOST, port), timeout=1) as sock:
            return sock.recv(64)
    except OSError:
        return b""


@dataclass
class SshHost:
    port: int
    directory: Path
    profile: str = field(default_factory=settings.profile_name)

    @classmethod
    def from_environment(cls) -> "SshHost":
        return cls(port=configured_port(), directory=state_dir() / "sshd")

    @property
    def port_file(self) -> Path:
        return state_dir() / settings.SSH_PORT_FILE

    @property
    def config_file(self) -> Path:
        return self.directory / "sshd_config"

    @property
    def pid_file(self) -> Path:
        return self.directory / "sshd.pid"

    @property
    def log_file(self) -> Path:
        return self.directory / "sshd.log"

    @property
    def known_hosts_file(self) -> Path:
        """The host key pinned for SSH clients (the local inventory's UserKnownHostsFile)."""
        return self.directory / "known_hosts"

    def _write_known_hosts(self) -> None:
        key = (self.directory / "ssh_host_ed25519_key.pub").read_text().split()
        self.known_hosts_file.write_text(f"[{HOST}]:{self.port} {key[0]} {key[1]}\n")

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        return self.pid() is not None and _banner(self.port).startswith(b"SSH-2.0")

    def _write_config(self) -> None:
        host_key = self.directory / "ssh_host_ed25519_key"
        if not host_key.exists():
            keygen = shutil.which("ssh-keygen")
            if not keygen:
                raise SshHostError("ssh-keygen is not installed; install it with `apt-get install openssh-client`.")
            subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
        user = pwd.getpwuid(os.getuid()).pw_name
        # sshd runs AuthorizedKeysCommand only if the program and every directory above it are owned by
        # root and not writable by others; a checkout under /tmp or a home directory fails that, so the
        # program is root-owned /usr/bin/env, which starts this package with the current interpreter.
        command = f"/usr/bin/env {sys.executable} -m kumolab.local.sshhost"
        self.config_file.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    f"ListenAddress {HOST}",
                    f"HostKey {host_key}",
                    f"PidFile {self.pid_file}",
                    "AuthorizedKeysFile none",
                    # sshd gives the command no environment: name the profile and its file.
                    f"AuthorizedKeysCommand {command} authorized-keys --profile {self.profile} "
                    f"--config-file {settings.aws_config_file()} %u",
                    f"AuthorizedKeysCommandUser {user}",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    "UsePAM no",
                    "StrictModes no",
                    "AllowTcpForwarding local",
                    "X11Forwarding no",
                    "Subsystem sftp internal-sftp",
                    "",
                ]
            )
        )

    def start(self) -> bool:
        if self.running():
            self.port_file.write_text(f"{self.port}\n")
            self._write_known_hosts()
            return False
        sshd = find_sshd()
        if _banner(self.port) or self._port_taken():
            raise SshHostError(
                f"Port {self.port} on {HOST} is already in use by another program. Stop it, or choose a free "
                "port for the local lab host: export KUMOLAB_SSH_PORT=<port> (the local inventory reads it too)."
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        self._write_config()
        if os.getuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        test = subprocess.run([sshd, "-t", "-f", str(self.config_file)], capture_output=True, text=True)
        if test.returncode != 0:
            raise SshHostError(f"sshd rejected its configuration {self.config_file}: {test.stderr.strip()}")
        subprocess.run([sshd, "-f", str(self.config_file), "-E", str(self.log_file)], check=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.running():
                self.port_file.write_text(f"{self.port}\n")
                self._write_known_hosts()
                return True
            time.sleep(0.1)
        raise SshHostError(f"sshd did not answer on {HOST}:{self.port} within 10 s; see {self.log_file}.")

    def _port_taken(self) -> bool:
        with socket.socket() as sock:
            return sock.connect_ex((HOST, self.port)) == 0

    def stop(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and self.pid() is not None:
            time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        return True

    def status(self) -> dict:
        return {"running": self.running(), "host": HOST, "port": self.port, "pid": self.pid(), "log": str(self.log_file)}


def authorized_keys(profile: str | None = None, region: str | None = None) -> list[str]:
    """Public keys of the key pairs that running kumolab instances were launched with."""
    ec2 = kumolab.aws.client("ec2", profile or settings.profile_name(), region)
    names: set[str] = set()
    paginator = ec2.get_paginator("describe_instances")
    filters = [{"Name": "tag:Project", "Values": ["kumolab"]}, {"Name": "instance-state-name", "Values": ["running"]}]
    for page in paginator.paginate(Filters=filters):
        for reservation in page["Reservations"]:
            names.update(i["KeyName"] for i in reservation["Instances"] if i.get("KeyName"))
    if not names:
        return []
    pairs = ec2.describe_key_pairs(KeyNames=sorted(names), IncludePublicKey=True)["KeyPairs"]
    return [pair["PublicKey"].strip() for pair in pairs if pair.get("PublicKey")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kumolab-sshhost", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("start", "stop", "status"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--json", action="store_true", help="print a JSON object (for Ansible)")
    keys = sub.add_parser("authorized-keys", help="used by sshd's AuthorizedKeysCommand")
    keys.add_argument("--profile", help=f"AWS profile of the emulator (default {settings.PROFILE})")
    keys.add_argument("--config-file", help="AWS config file that holds it (default $AWS_CONFIG_FILE)")
    keys.add_argument("user", nargs="?")
    args = parser.parse_args(argv)

    if args.command == "authorized-keys":
        if args.config_file:
            os.environ["AWS_CONFIG_FILE"] = args.config_file
        try:
            print("\n".join(authorized_keys(args.profile)))
        except Exception as exc:  # sshd only sees the exit code; say why in its log
            print(f"kumolab-sshhost: cannot list keys through profile {args.profile}: {exc}", file=sys.stderr)
            return 1
        return 0

    try:
        host = SshHost.from_environment()
        if args.command == "start":
            result = dict(changed=host.start())
        elif args.command == "stop":
            result = dict(changed=host.stop())
        else:
            result = dict(changed=False)
        result.update(host.status())
    except SshHostError as exc:
        if args.json:
            print(json.dumps({"failed": True, "msg": str(exc)}))
        print(f"kumolab-sshhost: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        state = "running" if result["running"] else "not running"
        print(f"lab host sshd {state} on {result['host']}:{result['port']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
