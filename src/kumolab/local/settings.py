"""The local target's fixed facts: loopback host, default ports, region, and the AWS profile that names the emulator.

This is the bottom layer of :mod:`kumolab.local`; it imports nothing from the layers above. The default
ports of the emulator and the SSH host are defined here and nowhere else: ``$KUMOLAB_EMULATOR_PORT`` and
``$KUMOLAB_SSH_PORT`` override them (the tests use free ports). The local runtime's per-lab ports are in
the lab registry (``inventories/shared/labs.yml``, :mod:`kumolab.labs`).

**The profile.** ``kumolab-emulator start`` writes one AWS shared-config profile (``kumolab-local``, or
``$KUMOLAB_AWS_PROFILE``) into ``$AWS_CONFIG_FILE`` (default ``~/.aws/config``)::

    [profile kumolab-local]
    endpoint_url = http://127.0.0.1:<EMULATOR_PORT>
    region = ap-northeast-1
    aws_access_key_id = ...
    aws_secret_access_key = ...

``endpoint_url`` is the SDKs' standard setting (boto3/botocore, the AWS CLI, the amazon.aws modules
through ``profile:``), so everything that reaches the emulator — the playbooks, the local runtime, the
lab CLIs, a user's own ``aws`` command or boto3 script — does so by naming this profile. The keys are
random, generated at the first start and kept (mode 0600) in ``<state dir>/emulator/credentials.json``.
"""

from __future__ import annotations

import configparser
import io
import json
import os
import secrets
import string
from pathlib import Path

from kumolab.paths import state_dir

HOST = "127.0.0.1"
EMULATOR_PORT = 5127
SSH_PORT = 2227
DEFAULT_REGION = "ap-northeast-1"
PROFILE = "kumolab-local"

# Where the local SSH host records the port it listens on; the local inventory reads it.
SSH_PORT_FILE = Path("sshd") / "port"


class PortError(ValueError):
    """A port variable that is not a port number; the message says which and what to set."""


def port(variable: str, default: int) -> int:
    """``$variable`` as a port number (unset or empty: ``default``)."""
    raw = os.environ.get(variable) or str(default)
    try:
        value = int(raw)
    except ValueError:
        raise PortError(f"{variable}={raw!r} is not a port number; set it to e.g. {default}.") from None
    if not 1 <= value <= 65535:
        raise PortError(f"{variable}={value} is out of range 1-65535.")
    return value


def emulator_port() -> int:
    return port("KUMOLAB_EMULATOR_PORT", EMULATOR_PORT)


def ssh_port() -> int:
    return port("KUMOLAB_SSH_PORT", SSH_PORT)


def endpoint(port_number: int | None = None) -> str:
    return f"http://{HOST}:{port_number or emulator_port()}"


def region() -> str:
    return os.environ.get("KUMOLAB_AWS_REGION") or DEFAULT_REGION


def profile_name() -> str:
    return os.environ.get("KUMOLAB_AWS_PROFILE") or PROFILE


def aws_config_file() -> Path:
    return Path(os.environ.get("AWS_CONFIG_FILE") or "~/.aws/config").expanduser().absolute()


def profile_environment(profile: str | None = None) -> dict[str, str]:
    """What a child process needs in its environment to reach the emulator through the profile."""
    env = {"AWS_PROFILE": profile or profile_name(), "AWS_CONFIG_FILE": str(aws_config_file())}
    if os.environ.get("AWS_SHARED_CREDENTIALS_FILE"):
        env["AWS_SHARED_CREDENTIALS_FILE"] = str(
            Path(os.environ["AWS_SHARED_CREDENTIALS_FILE"]).expanduser().absolute()
        )
    return env


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def credentials(directory: Path | None = None) -> dict[str, str]:
    """The emulator's access key: generated at the first start, then read back (mode 0600)."""
    path = (directory or state_dir() / "emulator") / "credentials.json"
    try:
        stored = json.loads(path.read_text())
        if stored.get("aws_access_key_id") and stored.get("aws_secret_access_key"):
            return {k: stored[k] for k in ("aws_access_key_id", "aws_secret_access_key")}
    except (OSError, ValueError):
        pass
    alphabet = string.ascii_uppercase + string.digits
    created = {
        # The shape of an AWS access key id; never 12 digits (moto would read that as an account id).
        "aws_access_key_id": "AKIA" + "".join(secrets.choice(alphabet) for _ in range(16)),
        "aws_secret_access_key": secrets.token_urlsafe(30),
    }
    _write_private(path, json.dumps(created, indent=2) + "\n")
    return created


def write_profile(
    endpoint_url: str, region_name: str, keys: dict[str, str], name: str | None = None, config_file: Path | None = None
) -> bool:
    """Write (idempotently) the local profile into the AWS config file, keeping every other profile.

    Returns True when the file changed.
    """
    path = config_file or aws_config_file()
    section = f"profile {name or profile_name()}"
    parser = configparser.RawConfigParser()
    try:
        parser.read_string(path.read_text())
    except FileNotFoundError:
        pass
    wanted = {"endpoint_url": endpoint_url, "region": region_name, **keys}
    if parser.has_section(section) and dict(parser.items(section)) == wanted and path.stat().st_mode & 0o077 == 0:
        return False
    if not parser.has_section(section):
        parser.add_section(section)
    for key in list(parser.options(section)):
        if key not in wanted:
            parser.remove_option(section, key)
    for key, value in wanted.items():
        parser.set(section, key, value)
    text = io.StringIO()
    parser.write(text)
    _write_private(path, text.getvalue())
    return True
