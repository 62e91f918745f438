"""The local lab host: an OpenSSH server on loopback that stands in for the emulated EC2 instances.

On AWS, cloud-init puts the launch key pair's public key into the instance's ``authorized_keys``. Here
the same decision is made at login time: sshd's ``AuthorizedKeysCommand`` calls
``kumolab-sshhost authorized-keys``, which asks the emulator for the key *names* of the running kumolab
instances and prints, for each valid name, the project's own public key ``<state dir>/keys/<name>.pub``
(written by roles/lab_keypair), reparsed strictly, as one ``restrict,pty,...`` line. Key material stored in the
emulator is never printed (review C1): a key pair imported into the emulator by anyone else, or material with an
extra ``command=`` line, grants nothing. A terminated instance's key stops working.

The lab host serves one account and never root (``AllowUsers``, ``PermitRootLogin no``; the command prints
nothing for any other ``%u``): the user who started it, or, when the labs run as root, the dedicated unprivileged
account ``kumolab-lab`` (``$KUMOLAB_LAB_USER``), created on first start, as ``ec2-user``/``ubuntu`` are on AWS.
Started as root it refuses a group- or world-writable checkout or venv (sshd runs the key command as root), and it
stops with ``kumolab-emulator stop``. ``start`` records the account and where its files live in
``<state dir>/sshd/lab_host.json`` (see :class:`LabAccount`), which the local inventory reads.

``kumolab-sshhost start|stop|status``; state in ``<state dir>/sshd/``; port ``$KUMOLAB_SSH_PORT``
(default :data:`kumolab.local.settings.SSH_PORT`). ``start`` records the port in ``<state dir>/sshd/port``,
where the local inventory reads it, and pins the host key in ``<state dir>/sshd/known_hosts`` (the inventory's
UserKnownHostsFile, checked strictly). The key lookup reaches the emulator through the local AWS profile.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import kumolab.aws
from kumolab.local import settings
from kumolab.local.settings import HOST
from kumolab.paths import state_dir, state_lock

DEFAULT_PORT = settings.SSH_PORT
#: Key names the lab host accepts: the project name, or the project name and a lab's slug (the registry's prefixes).
KEY_NAME = re.compile(r"^kumolab(-[a-z0-9-]+)?$")
#: One public key line: type, base64, optional comment (dropped).
PUBLIC_KEY = re.compile(
    r"^(?P<type>ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256) (?P<blob>[A-Za-z0-9+/]+={0,3})( [^\r\n]*)?$"
)
#: The JupyterLab port the GPU lab's tunnel (ssh -L) may reach; nothing else is forwarded.
JUPYTER_PORT_VARIABLE = "KUMOLAB_JUPYTER_PORT"
SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")
#: The account the lab host serves when the labs run as root, and the home it gets when kumolab creates it.
LAB_ACCOUNT = "kumolab-lab"
LAB_ACCOUNT_VARIABLE = "KUMOLAB_LAB_USER"
LAB_ACCOUNT_HOME = Path("/var/lib/kumolab-lab")


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


def writable_by_others(path: Path) -> list[Path]:
    """``path``, the directories above it and (for a directory) the files under it that a group or other users
    can write; a sticky root-owned directory above (``/tmp``) is fine: others cannot replace what is in it."""
    found = []
    for candidate in [path, *path.parents]:
        try:
            st = candidate.stat()
        except OSError:
            continue
        sticky_root = candidate != path and st.st_mode & stat.S_ISVTX and st.st_uid == 0
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky_root:
            found.append(candidate)
    if path.is_dir():
        for child in path.rglob("*.py"):
            if not child.is_symlink() and child.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                found.append(child)
    return found


def refuse_writable_code() -> None:
    """As root, sshd runs the key command (this checkout's Python) as root: refuse code others can change."""
    from kumolab.paths import REPO_ROOT

    venv = Path(sys.prefix)
    for place in (Path(REPO_ROOT) / "src", venv / "bin", Path(__file__).resolve().parent):
        bad = writable_by_others(place.resolve())
        if bad:
            raise SshHostError(
                f"Refusing to start the lab host as root: {bad[0]} is writable by other users, and sshd runs this "
                f"checkout's code ({place}) as root for every login attempt. Run `chmod go-w {bad[0]}`, or run the "
                f"labs as a normal user."
            )


@dataclass(frozen=True)
class LabAccount:
    """Who the lab host lets in, and where the labs keep their files on it (the instance's disk, as it were)."""

    user: str
    uid: int
    gid: int
    home: Path
    #: This state directory's files on the host (pytorch_env_home, JupyterLab, the idle-stop check).
    lab_dir: Path
    #: What every state directory on this machine shares (the 5.5 GB PyTorch venv).
    shared_dir: Path

    def as_dict(self) -> dict:
        return {
            "user": self.user,
            "uid": self.uid,
            "home": str(self.home),
            "lab_dir": str(self.lab_dir),
            "shared_dir": str(self.shared_dir),
        }


def _create_account(name: str) -> None:
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    # -p '*': no password, but not locked ('!'), which sshd without PAM would refuse even for a key.
    command = [useradd, "--system", "--user-group", "--create-home", "--home-dir", str(LAB_ACCOUNT_HOME)]
    command += ["--shell", "/bin/sh", "--comment", "kumolab lab host", "-p", "*", name]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode == 0:
        LAB_ACCOUNT_HOME.chmod(0o700)  # as a cloud image's ec2-user: no other account reads the lab's files
    else:
        raise SshHostError(
            f"Cannot create the lab host's account {name!r} ({' '.join(command)}): {result.stderr.strip()}. "
            f"Create an unprivileged account yourself and name it in ${LAB_ACCOUNT_VARIABLE}, or run the labs as a "
            "normal user."
        )


def lab_account(state: Path) -> LabAccount:
    """The account of the user who runs the labs; as root, the dedicated unprivileged account (created if missing),
    with this state directory's files in ``<its home>/labs/<hash of the state dir>``."""
    from kumolab.paths import REPO_ROOT

    if os.getuid() != 0:
        entry = pwd.getpwuid(os.getuid())
        shared = Path(REPO_ROOT) / ".state" / "lab-host"
        return LabAccount(entry.pw_name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir), state / "lab-host", shared)
    name = os.environ.get(LAB_ACCOUNT_VARIABLE) or LAB_ACCOUNT
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        _create_account(name)
        entry = pwd.getpwnam(name)
    if entry.pw_uid == 0:
        raise SshHostError(
            f"${LAB_ACCOUNT_VARIABLE} names {name!r}, which is root (uid 0); the lab host never serves root. "
            "Name an unprivileged account."
        )
    home = Path(entry.pw_dir)
    digest = hashlib.sha256(str(state.resolve()).encode()).hexdigest()[:12]
    return LabAccount(name, entry.pw_uid, entry.pw_gid, home, home / "labs" / digest, home / "shared")


def _pip_configuration() -> str:
    """This machine's pip settings (mirrors, local wheel directories) as a pip.conf: the lab account's pip installs
    what the user's would, from the same places."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    )
    settings_ = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        scope, _, option = key.partition(".")
        if scope in ("global", ":env:") and option and option not in settings_:
            settings_[option] = value.strip().strip("'\"")
    return "[global]\n" + "".join(f"{key} = {value}\n" for key, value in sorted(settings_.items()))


def prepare_lab_account(account: LabAccount) -> None:
    """As root: give the dedicated account its directories and this machine's pip configuration."""
    if os.getuid() != 0:
        return
    pip_dir = account.home / ".config" / "pip"
    for directory in (account.home / "labs", account.lab_dir, account.shared_dir, pip_dir.parent, pip_dir):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chown(directory, account.uid, account.gid)
    pip_conf = account.home / ".config" / "pip" / "pip.conf"
    text = _pip_configuration()
    if not pip_conf.exists() or pip_conf.read_text() != text:
        pip_conf.write_text(text)
        os.chown(pip_conf, account.uid, account.gid)


@dataclass
class SshHost:
    port: int
    directory: Path
    profile: str = field(default_factory=settings.profile_name)

    @classmethod
    def from_environment(cls) -> SshHost:
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

    @property
    def account_file(self) -> Path:
        """The served account and its directories (LabAccount), for the local inventory."""
        return self.directory / "lab_host.json"

    def account(self) -> LabAccount:
        return lab_account(self.directory.parent)

    def _write_account(self, account: LabAccount) -> None:
        prepare_lab_account(account)
        self.account_file.write_text(json.dumps(account.as_dict(), indent=2) + "\n")

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

    def _write_config(self, account: LabAccount | None = None) -> None:
        host_key = self.directory / "ssh_host_ed25519_key"
        if not host_key.exists():
            keygen = shutil.which("ssh-keygen")
            if not keygen:
                raise SshHostError("ssh-keygen is not installed; install it with `apt-get install openssh-client`.")
            subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
        user = (account or self.account()).user
        # The key command runs as the user who started the lab host: it reads the emulator's credentials and
        # the project's keys. As root it must not run code others can change.
        command_user = pwd.getpwuid(os.getuid()).pw_name
        if os.getuid() == 0:
            refuse_writable_code()
        # sshd runs AuthorizedKeysCommand only if the program and every directory above it are owned by
        # root and not writable by others; a checkout under /tmp or a home directory fails that, so the
        # program is root-owned /usr/bin/env, which starts this package with the current interpreter, isolated
        # (-I: no PYTHON* variables, no user site, not the working directory); as root the checkout and venv
        # must not be writable by others (refuse_writable_code).
        command = f"/usr/bin/env {sys.executable} -I -m kumolab.local.sshhost"
        jupyter = settings.port(JUPYTER_PORT_VARIABLE, 8888)
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
                    f"--config-file {settings.aws_config_file()} --state-dir {state_dir()} --serves {user} "
                    f"--jupyter-port {jupyter} %u",
                    f"AuthorizedKeysCommandUser {command_user}",
                    f"AllowUsers {user}",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin no",
                    "UsePAM no",
                    "PermitUserEnvironment no",
                    "AllowTcpForwarding local",
                    "X11Forwarding no",
                    "Subsystem sftp internal-sftp",
                    "",
                ]
            )
        )

    def start(self) -> bool:
        account = self.account()
        if self.running():
            self.port_file.write_text(f"{self.port}\n")
            self._write_known_hosts()
            self._write_account(account)
            return False
        sshd = find_sshd()
        if _banner(self.port) or self._port_taken():
            raise SshHostError(
                f"Port {self.port} on {HOST} is already in use by another program. Stop it, or choose a free "
                "port for the local lab host: export KUMOLAB_SSH_PORT=<port> (the local inventory reads it too)."
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        self._write_config(account)
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
                self._write_account(account)
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
        return {
            "running": self.running(),
            "host": HOST,
            "port": self.port,
            "pid": self.pid(),
            "log": str(self.log_file),
        }


def running_key_names(profile: str | None = None, region: str | None = None) -> set[str]:
    """Key names of the running kumolab instances (names only: their material in the emulator is never used)."""
    ec2 = kumolab.aws.client("ec2", profile or settings.profile_name(), region)
    names: set[str] = set()
    paginator = ec2.get_paginator("describe_instances")
    filters = [{"Name": "tag:Project", "Values": ["kumolab"]}, {"Name": "instance-state-name", "Values": ["running"]}]
    for page in paginator.paginate(Filters=filters):
        for reservation in page["Reservations"]:
            names.update(i["KeyName"] for i in reservation["Instances"] if i.get("KeyName"))
    return names


def project_key(name: str, keys_dir: Path) -> tuple[str, str] | None:
    """``(type, base64)`` of the project's own public key ``<keys_dir>/<name>.pub``, or None unless it is exactly
    one well-formed key line (comment dropped) for a valid name."""
    if not KEY_NAME.match(name):
        return None
    try:
        text = (keys_dir / f"{name}.pub").read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return None
    lines = text.rstrip("\n").split("\n")
    found = PUBLIC_KEY.match(lines[0]) if len(lines) == 1 and "\r" not in lines[0] else None
    return (found["type"], found["blob"]) if found else None


def key_options(jupyter_port: int | None) -> str:
    """``restrict,pty``; with a JupyterLab port, local forwarding to it only (the GPU lab's ``ssh -L`` tunnel)."""
    if not jupyter_port:
        return "restrict,pty"
    return f'restrict,pty,port-forwarding,permitopen="localhost:{jupyter_port}",permitopen="127.0.0.1:{jupyter_port}"'


def authorized_keys(
    profile: str | None = None, region: str | None = None, keys_dir: Path | None = None, jupyter_port: int | None = None
) -> list[str]:
    """``authorized_keys`` lines for the project's own keys of the key pairs running kumolab instances use."""
    directory = keys_dir or state_dir() / "keys"
    lines = []
    for name in sorted(running_key_names(profile, region)):
        key = project_key(name, directory)
        if key is not None:
            lines.append(f"{key_options(jupyter_port)} {key[0]} {key[1]}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kumolab-sshhost", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("start", "stop", "status"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--json", action="store_true", help="print a JSON object (for Ansible)")
    keys = sub.add_parser("authorized-keys", help="used by sshd's AuthorizedKeysCommand")
    keys.add_argument("--profile", help=f"AWS profile of the emulator (default {settings.PROFILE})")
    keys.add_argument("--config-file", help="AWS config file that holds it (default $AWS_CONFIG_FILE)")
    keys.add_argument("--state-dir", help="the kumolab state directory whose keys/ are the project's keys")
    keys.add_argument("--serves", help="the one account this lab host serves; any other user gets no key")
    keys.add_argument("--jupyter-port", type=int, help="the JupyterLab port an ssh -L tunnel may reach")
    keys.add_argument("user", nargs="?")
    args = parser.parse_args(argv)

    if args.command == "authorized-keys":
        if args.config_file:
            os.environ["AWS_CONFIG_FILE"] = args.config_file
        if not args.serves or args.user != args.serves:
            print(f"kumolab-sshhost: user {args.user!r} is not the lab host's account {args.serves!r}", file=sys.stderr)
            return 0
        keys_dir = Path(args.state_dir) / "keys" if args.state_dir else None
        try:
            lines = authorized_keys(args.profile, keys_dir=keys_dir, jupyter_port=args.jupyter_port)
            if lines:
                print("\n".join(lines))
        except Exception as exc:  # sshd only sees the exit code; say why in its log
            print(f"kumolab-sshhost: cannot list keys through profile {args.profile}: {exc}", file=sys.stderr)
            return 1
        return 0

    try:
        host = SshHost.from_environment()
        if args.command == "start":
            with state_lock("sshhost"):
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
