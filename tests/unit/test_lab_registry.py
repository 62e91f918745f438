"""The lab registry (inventories/shared/labs.yml) declares every lab once; everything else derives from it.

Two kinds of checks: the registry is consistent with the repository (playbooks, the resource catalogue's
kinds, the local target's services, unique slugs and ports), and no file outside the places a lab owns
spells a lab's identity (its Lab tag, its resource-name prefix, a lookup of its registry entry, a list of
labs). A lab owns: the registry, its playbook, files and directories named after it (roles/qa_bot_*,
files/lambda/bashoutter/, inventories/*/group_vars/all/gpu_lab.yml, ...), any paths its entry lists under
``paths``, and docs and tests. Adding a lab therefore touches the registry and the lab's own files only.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
REGISTRY = REPO / "inventories" / "shared" / "labs.yml"
LABS: dict = yaml.safe_load(REGISTRY.read_text())["kumolab_labs"]
PROJECT = yaml.safe_load((REPO / "inventories" / "shared" / "kumolab.yml").read_text())["kumolab_project"]

sys.path.insert(0, str(REPO / "module_utils"))
import kumolab_resources as catalogue  # noqa: E402

# Playbooks that act on every lab rather than deploying one.
ACROSS_LABS_PLAYBOOKS = {"teardown.yml", "audit.yml"}
# Where naming a lab is the point: documentation and tests (with the roles' molecule scenarios), and the
# packaging (each lab's CLI entry point and Python extras are declared where pip reads them).
DOC_AND_TEST_DIRS = ("docs/", "tests/")
PACKAGING = {"pyproject.toml"}
TEXT_SUFFIXES = {
    ".py",
    ".yml",
    ".yaml",
    ".j2",
    ".cfg",
    ".toml",
    ".sh",
    ".json",
    ".ini",
    ".txt",
    ".service",
    ".timer",
    ".html",
    ".js",
    ".css",
    ".ipynb",
    "",
}


def prefix(name: str) -> str:
    return f"{PROJECT}-{LABS[name]['slug']}"


def local_services() -> dict:
    target = yaml.safe_load((REPO / "inventories" / "local" / "group_vars" / "all" / "target.yml").read_text())
    return target["kumolab_local_services"]


# --- the registry itself --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(LABS))
def test_every_lab_has_its_playbook_and_the_playbook_names_its_lab(name):
    playbook = REPO / "playbooks" / LABS[name]["playbook"]
    assert playbook.is_file(), f"{name}: playbooks/{LABS[name]['playbook']} does not exist"
    text = playbook.read_text()
    assert re.search(rf"(?<![A-Za-z])(lab|Lab)[\w]*:\s*[\"']?{re.escape(name)}(?![\w-])", text) or re.search(
        rf"kumolab_labs\.{re.escape(name)}\b", text
    ), f"playbooks/{LABS[name]['playbook']} never names lab {name}"


DEPLOYS_A_LAB = re.compile(r"role:\s*(lab_tags|lab_outputs)\b|kumolab_lab_tags:|^\s+Lab:\s", re.MULTILINE)


def test_every_playbook_that_deploys_a_lab_is_in_the_registry():
    """A playbook that tags resources for a lab or ends with lab_outputs deploys a lab; teardown and the audit
    act on all of them and deploy none."""
    deploying = {p.name for p in (REPO / "playbooks").glob("*.yml") if DEPLOYS_A_LAB.search(p.read_text())}
    registered = {lab["playbook"] for lab in LABS.values()}
    # and the playbooks a lab's entry lists under paths (class mode's, which deploy Lab 1 per student)
    registered |= {Path(p).name for lab in LABS.values() for p in lab.get("paths") or [] if p.startswith("playbooks/")}
    assert deploying - ACROSS_LABS_PLAYBOOKS <= registered, f"not in the lab registry: {deploying - registered}"
    assert not deploying & ACROSS_LABS_PLAYBOOKS


@pytest.mark.parametrize("name", sorted(LABS))
def test_teardown_kinds_are_kinds_of_the_resource_catalogue(name):
    kinds = LABS[name]["teardown"]
    assert kinds, f"{name}: an empty teardown list would delete nothing"
    assert not set(kinds) - set(catalogue.KIND_NAMES), f"{name}: unknown kinds {set(kinds) - set(catalogue.KIND_NAMES)}"
    assert len(kinds) == len(set(kinds)), f"{name}: a kind listed twice"


def test_slugs_results_and_ports_are_unique():
    for field in ("slug", "results"):
        values = [lab[field] for lab in LABS.values()]
        assert len(values) == len(set(values)), f"two labs share a {field}: {values}"
    ports = [port for lab in LABS.values() for port in (lab.get("ports") or {}).values()]
    assert len(ports) == len(set(ports)), f"two local services share a port: {ports}"
    assert all(1024 < port < 65536 for port in ports)
    for name, lab in LABS.items():
        assert re.fullmatch(r"[a-z][a-z0-9-]*", lab["slug"]), f"{name}: slug {lab['slug']!r} is not a name prefix"
        assert isinstance(lab.get("key_pair", False), bool) and isinstance(lab.get("guard", False), bool)


def test_local_services_of_every_lab_are_kinds_the_local_target_can_stop():
    services = local_services()
    for name, lab in LABS.items():
        for kind in lab.get("local_services") or []:
            assert kind in services, f"{name}: local service {kind!r} is not in kumolab_local_services"
            assert "stop" in services[kind], (
                f"local service {kind!r} has no stop command, so teardown leaves it running"
            )
    used = {kind for lab in LABS.values() for kind in lab.get("local_services") or []}
    assert set(services) <= used, f"kumolab_local_services has kinds no lab uses: {set(services) - used}"


def test_labs_with_runtime_ports_run_the_local_runtime():
    for name, lab in LABS.items():
        if lab.get("ports"):
            assert "runtime" in lab["local_services"], f"{name} has runtime ports but no runtime service"


# --- nothing outside the registry spells a lab ----------------------------------------------------------


def identity_patterns(name: str) -> list[re.Pattern]:
    """How a file spells lab ``name``'s identity: its Lab tag or lab argument, its resource-name prefix, a
    lookup of its registry entry."""
    n = re.escape(name)
    return [
        # Lab: gpu, Lab=gpu, "Lab": "gpu", lab_tags_lab: gpu, -e lab=gpu, "lab": "gpu"
        re.compile(rf"(?<![A-Za-z])(lab|Lab)[\"']?\s*[:=]\s*[\"']?{n}(?![\w-])"),
        re.compile(rf"--lab[ =][\"']?{n}(?![\w-])"),
        re.compile(rf"(?<![\w-]){re.escape(prefix(name))}(?![\w])"),
        re.compile(rf"kumolab_labs(\.{n}\b|\[[\"']{n}[\"']\])"),
        re.compile(rf"\blabs?\(\)?\[?[\"']{n}[\"']"),
    ]


LAB_WORD = re.compile(
    r"(?<![\w-])(" + "|".join(re.escape(n) for n in sorted(LABS, key=len, reverse=True)) + r")(?![\w-])"
)


def owners(path: str) -> set[str]:
    """The labs that own ``path``: by name (a path component that is the lab's name or starts with it and
    ``_``, ``-`` or ``.``), by playbook, or by the ``paths`` its registry entry lists."""
    parts = path.split("/")
    found = set()
    for name, lab in LABS.items():
        if path == f"playbooks/{lab['playbook']}":
            found.add(name)
        if any(p == name or p.startswith((f"{name}_", f"{name}-", f"{name}.")) for p in parts):
            found.add(name)
        if any(path == extra or path.startswith(extra.rstrip("/") + "/") for extra in lab.get("paths") or []):
            found.add(name)
    return found


def tracked_files() -> list[str]:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return sorted(set(listed))


def findings() -> list[str]:
    found = []
    for path in tracked_files():
        file = REPO / path
        if (
            path == str(REGISTRY.relative_to(REPO))
            or path.startswith(DOC_AND_TEST_DIRS)
            or path.endswith(".md")
            or re.match(r"roles/[^/]+/molecule/", path)
            or path in PACKAGING
            or Path(path).suffix not in TEXT_SUFFIXES
            or not file.is_file()
            or file.is_symlink()
        ):
            continue
        try:
            text = file.read_text()
        except UnicodeDecodeError:
            continue
        own = owners(path)
        for number, line in enumerate(text.splitlines(), 1):
            for name in LABS:
                if name in own:
                    continue
                if any(p.search(line) for p in identity_patterns(name)):
                    found.append(f"{path}:{number}: names lab {name}: {line.strip()[:120]}")
            listed = set(LAB_WORD.findall(line)) - own
            if len(listed) >= 3:
                found.append(f"{path}:{number}: lists labs {sorted(listed)}: {line.strip()[:120]}")
    return found


def test_no_lab_is_named_outside_the_registry_and_its_own_files():
    leftovers = findings()
    assert not leftovers, (
        "A lab's identity is spelled outside inventories/shared/labs.yml and the lab's own files; derive it from "
        "kumolab_labs (Ansible) or kumolab.labs (Python), or pass it in as an argument:\n" + "\n".join(leftovers)
    )


def test_the_scan_recognises_each_spelling():
    """The scan's patterns, on the spellings it exists to catch (so that a green scan means something)."""
    name = sorted(LABS)[0]
    for line in [
        f"lab_tags_lab: {name}",
        f"Lab: {name}",
        f'"Lab": "{name}"',
        f"-e lab={name}",
        f"--lab {name} --json",
        f"name: {prefix(name)}-table",
        f"{{{{ kumolab_labs.{name}.slug }}}}",
        f"labs()['{name}']",
    ]:
        assert any(p.search(line) for p in identity_patterns(name)), line
    for line in [f"lab_tags_lab: {name}x", f"kumolab: {name} lab", f"{prefix(name)}_x"]:
        assert not any(p.search(line) for p in identity_patterns(name)), line
    assert len(set(LAB_WORD.findall(", ".join(LABS)))) == len(LABS)


# --- owners in names ---------------------------------------------------------------------------------------

OWNERS = {
    "alice": "alice",
    "s01": "s01",
    "Tanaka.Hiroshi": "tanaka-",  # 14 characters: the first 7 (trailing dash dropped), a dash, 4 of the SHA-1
    "arn:aws:sts::123456789012:assumed-role/Lab/x": "arn-aws-",
}


@pytest.mark.parametrize("owner", OWNERS)
def test_the_owner_ends_every_prefix_the_same_way_in_ansible_and_python(owner):
    """kumolab_lab_prefixes (Jinja, inventories/shared/kumolab.yml) and kumolab.labs (Python) agree on every
    lab's prefix for an owner, and the slug fits S3's bucket-name limit wherever a lab puts it."""
    from kumolab import labs

    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "localhost", "-i", "inventories/local", "-c", "local",
         "-m", "ansible.builtin.debug", "-a", "var=kumolab_lab_prefixes", "-e", f"owner={owner}"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ansible_prefixes = json.loads(proc.stdout.split("=>", 1)[1])["kumolab_lab_prefixes"]
    slug = labs.owner_slug(owner)
    assert slug.startswith(OWNERS[owner]) and len(slug) <= labs.OWNER_SLUG_MAX
    assert re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", slug)
    assert ansible_prefixes == {name: labs.lab(name).prefix(owner) for name in LABS}
    assert all(p == f"{PROJECT}-{LABS[n]['slug']}-{slug}" for n, p in ansible_prefixes.items())
    longest_bucket = max(len(p) for p in ansible_prefixes.values()) + len("-123456789012-ap-southeast-5")
    assert longest_bucket <= 63


def test_owners_that_share_a_beginning_get_different_slugs():
    from kumolab import labs

    assert labs.owner_slug("tanaka.hiroshi") != labs.owner_slug("tanaka.hiroko")
    with pytest.raises(ValueError, match="KUMOLAB_OWNER"):
        labs.owner_slug("@@@")
