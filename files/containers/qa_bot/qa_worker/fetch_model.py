"""Bake a model into the image: ``python -m qa_worker.fetch_model MODEL_ID OUT_DIR --revision COMMIT``.

Runs at ``docker build`` time (the only time the container may reach the Hugging Face hub): downloads an
extractive-QA model and its fast tokenizer at one hub commit (a 40-hex-digit sha, so the weights cannot change
under the same name), saves both to OUT_DIR with a ``build_info.json`` recording the id and revision, then
loads the saved copy back and answers one question so a broken model fails the build.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

COMMIT = re.compile(r"[0-9a-f]{40}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m qa_worker.fetch_model", description=__doc__.splitlines()[0])
    parser.add_argument("model_id", help="hub model id, e.g. distilbert-base-cased-distilled-squad")
    parser.add_argument("out_dir", type=Path, help="where to save the model (the image's /opt/model)")
    parser.add_argument("--revision", required=True, help="the model's commit sha on the hub (40 hex digits)")
    args = parser.parse_args(argv)
    if not COMMIT.fullmatch(args.revision):
        parser.error(
            f"--revision {args.revision!r} is not a commit sha (40 hex digits); a branch or tag can move. "
            f"Find the commit on the model's 'Files and versions' page of the hub."
        )
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    model_id, out, revision = args.model_id, args.out_dir, args.revision
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_id, revision=revision, use_fast=True)
    if not tokenizer.is_fast:
        print(f"{model_id} has no fast tokenizer; the worker needs its offset mapping", file=sys.stderr)
        return 1
    model = AutoModelForQuestionAnswering.from_pretrained(model_id, revision=revision)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    model.save_pretrained(out)
    (out / "build_info.json").write_text(json.dumps({"model_id": model_id, "revision": revision}) + "\n")

    from qa_worker.inference import QAModel

    answer = QAModel.load(str(out)).answer("Who wrote the letter?", "The letter was written by Ada Lovelace.")
    print(f"baked {model_id}@{revision[:12]} into {out}; smoke test answer: {answer.answer!r} ({answer.score:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
