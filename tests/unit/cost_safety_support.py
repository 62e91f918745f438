"""Helpers shared by the cost-safety tests: a private emulator, boto3 sessions, and running modules.

Each test module that needs AWS starts its own moto server through the project's ``Emulator`` class on a
free port with a temporary state directory, so it never touches a user's lab or another test's state.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import boto3

REPO = Path(__file__).resolve().parents[2]
REGION = "ap-northeast-1"
VENV_BIN = Path(sys.executable).parent

sys.path.insert(0, str(REPO / "src"))
from kumolab.local.emulator import Emulator  # noqa: E402
from kumolab.local.runtime.httpserve import free_port  # noqa: E402

# The emulator accepts only its own access key (kumolab.local.guard): each private emulator's keys, by endpoint.
_KEYS: dict[str, dict[str, str]] = {}


def start_emulator(directory: Path) -> Emulator:
    emulator = Emulator(port=free_port(), directory=directory)
    emulator.start()
    _KEYS[emulator.endpoint] = emulator.credentials()
    _KEYS[""] = _KEYS[emulator.endpoint]  # the latest one, for session() without an endpoint
    return emulator


def keys(endpoint: str = "") -> dict[str, str]:
    """The access key of the emulator at ``endpoint`` (default: the latest private one started)."""
    return _KEYS.get(endpoint) or _KEYS.get("") or {"aws_access_key_id": "none", "aws_secret_access_key": "none"}


def session(endpoint: str = "") -> boto3.session.Session:
    return boto3.session.Session(**keys(endpoint), region_name=REGION)


def clients(endpoint: str):
    """A factory ``make(service)`` of boto3 clients on the emulator."""
    sess = session(endpoint)
    return lambda service: sess.client(service, endpoint_url=endpoint, region_name=REGION)


def endpoint_env(endpoint: str) -> dict:
    key = keys(endpoint)
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": key["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": key["aws_secret_access_key"],
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
    }


def profile_env(emulator: Emulator, directory: Path) -> dict:
    """The environment for a playbook on this emulator: the local profile naming it, in a private AWS config file
    (the session's profile keeps naming the session's emulator), and none of the keys that endpoint_env sets."""
    from kumolab.local import settings

    config = directory / "aws-config"
    settings.write_profile(emulator.endpoint, REGION, emulator.credentials(), config_file=config)
    env = {k: v for k, v in os.environ.items() if k not in endpoint_env("")}
    return dict(env, AWS_CONFIG_FILE=str(config), KUMOLAB_EMULATOR_PORT=str(emulator.port))


def aws_args(endpoint: str) -> dict:
    """The module_defaults group/aws of the local inventory, for modules run directly."""
    key = keys(endpoint)
    return {
        "endpoint_url": endpoint,
        "access_key": key["aws_access_key_id"],
        "secret_key": key["aws_secret_access_key"],
        "region": REGION,
    }


def _module_cfg() -> Path:
    """An ansible.cfg with the project's library and module_utils but none of its callbacks (JSON out)."""
    import hashlib

    path = Path(tempfile.gettempdir()) / f"kumolab-module-test-{hashlib.sha1(str(REPO).encode()).hexdigest()[:10]}.cfg"
    if not path.exists():
        path.write_text(
            f"[defaults]\nlibrary = {REPO / 'library'}\nmodule_utils = {REPO / 'module_utils'}\n"
            f"collections_path = {REPO / 'collections'}\n"
        )
    return path


def run_module(name: str, args: dict, check: bool = False, extra_env: dict | None = None) -> dict:
    """Run a module from library/ with ``ansible localhost -m`` and return its result dict."""
    env = dict(
        os.environ,
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        ANSIBLE_STDOUT_CALLBACK="json",
        ANSIBLE_CONFIG=str(_module_cfg()),
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        **(extra_env or {}),
    )
    cmd = [
        str(VENV_BIN / "ansible"),
        "localhost",
        "-i",
        "localhost,",
        "-c",
        "local",
        "-m",
        name,
        "-a",
        json.dumps(args),
    ]
    if check:
        cmd.append("--check")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    try:
        out = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"ansible printed no JSON (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")  # noqa: B904
    return out["plays"][0]["tasks"][0]["hosts"]["localhost"]


def load_library_module(name: str):
    """Import library/<name>.py for its pure functions, with the project's module_utils importable the way
    Ansible makes them (``ansible.module_utils.kumolab_*``)."""
    import importlib
    import importlib.util

    import ansible.module_utils

    # As ansible.cfg's module_utils does: they import each other (kumolab_aws imports kumolab_resources).
    if str(REPO / "module_utils") not in ansible.module_utils.__path__:
        ansible.module_utils.__path__.append(str(REPO / "module_utils"))
    for util in sorted((REPO / "module_utils").glob("kumolab_*.py")):
        importlib.import_module(f"ansible.module_utils.{util.stem}")
    spec = importlib.util.spec_from_file_location(name, REPO / "library" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
