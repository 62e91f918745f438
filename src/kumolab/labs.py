"""The lab registry (``inventories/shared/labs.yml``), read from Python.

Ansible reads the same file as the variable ``kumolab_labs``; this module gives Python code (the local
runtime, the CLIs, tests) the same facts, so that a lab's name, prefix, ports and results directory are
written down once.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import yaml

from kumolab.paths import REPO_ROOT

REGISTRY_FILE = REPO_ROOT / "inventories" / "shared" / "labs.yml"
PROJECT = "kumolab"


@dataclass(frozen=True)
class Lab:
    name: str
    title: str
    playbook: str
    slug: str
    results: str
    teardown: tuple[str, ...]
    key_pair: bool = False
    local_services: tuple[str, ...] = ()
    ports: dict = field(default_factory=dict, compare=False, hash=False)
    guard: bool = False
    class_mode: bool = False

    @property
    def prefix(self) -> str:
        """What every resource name of the lab starts with: the project, a dash, the slug."""
        return f"{PROJECT}-{self.slug}"


@functools.cache
def labs() -> dict[str, Lab]:
    raw = yaml.safe_load(REGISTRY_FILE.read_text())["kumolab_labs"]
    return {
        name: Lab(
            name=name,
            title=spec["title"],
            playbook=spec["playbook"],
            slug=spec["slug"],
            results=spec["results"],
            teardown=tuple(spec["teardown"]),
            key_pair=bool(spec.get("key_pair", False)),
            local_services=tuple(spec.get("local_services", ())),
            ports=dict(spec.get("ports", {})),
            guard=bool(spec.get("guard", False)),
            class_mode=bool(spec.get("class_mode", False)),
        )
        for name, spec in raw.items()
    }


def lab(name: str) -> Lab:
    try:
        return labs()[name]
    except KeyError:
        raise LookupError(
            f"unknown lab {name!r}; the labs are {', '.join(labs())} (inventories/shared/labs.yml)"
        ) from None
