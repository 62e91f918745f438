"""The lab registry (``inventories/shared/labs.yml``), read from Python.

Ansible reads the same file as the variable ``kumolab_labs``; this module gives Python code (the local
runtime, the CLIs, tests) the same facts, so that a lab's name, prefix, ports and results directory are
written down once.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pwd
import re
from dataclasses import dataclass, field

import yaml

from kumolab.paths import REPO_ROOT

REGISTRY_FILE = REPO_ROOT / "inventories" / "shared" / "labs.yml"
PROJECT = "kumolab"
#: The longest owner slug: ``<project>-<slug>-<owner>-<account>-<region>`` (Lab 7's bucket) must fit S3's 63.
OWNER_SLUG_MAX = 12


def default_owner() -> str:
    """Who a run belongs to when nobody says: ``$KUMOLAB_OWNER``, else the login name, as ``id -un`` prints it
    (``kumolab_owner`` in inventories/shared/kumolab.yml)."""
    return os.environ.get("KUMOLAB_OWNER") or pwd.getpwuid(os.geteuid()).pw_name


def owner_slug(owner: str) -> str:
    """The owner as it ends every resource name: lower case, each run of other characters one dash, at most
    ``OWNER_SLUG_MAX`` characters (a longer one keeps its first 7 and 4 hex digits of its SHA-1, so two long
    names that share a beginning still differ). ``kumolab_owner_slug`` in inventories/shared/kumolab.yml is
    the same rule in Jinja; tests/unit/test_labs.py checks that both agree."""
    slug = re.sub(r"[^a-z0-9]+", "-", owner.lower()).strip("-")
    if not slug:
        raise ValueError(f"owner {owner!r} has no letters or digits; set KUMOLAB_OWNER (or -e owner=...) to a name")
    if len(slug) <= OWNER_SLUG_MAX:
        return slug
    return f"{slug[:7].rstrip('-')}-{hashlib.sha1(owner.encode()).hexdigest()[:4]}"


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
    def base_prefix(self) -> str:
        """The project, a dash, the slug: what every owner's resource names of the lab start with."""
        return f"{PROJECT}-{self.slug}"

    def prefix(self, owner: str | None = None) -> str:
        """What the names of ``owner``'s resources of the lab start with: ``<project>-<slug>-<owner slug>``
        (``kumolab_lab_prefixes`` in Ansible). ``owner`` defaults to :func:`default_owner`."""
        return f"{self.base_prefix}-{owner_slug(owner or default_owner())}"


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
