"""Bake a model into the image: ``python -m qa_worker.fetch_model MODEL_ID OUT_DIR``.

Runs at ``docker build`` time (the only time the container may reach the Hugging Face hub): downloads an
extractive-QA model and its fast tokenizer, saves both to OUT_DIR with a ``build_info.json`` recording
the id, then loads the saved copy back and answers one question so a broken model fails the build.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m qa_worker.fetch_model MODEL_ID OUT_DIR", file=sys.stderr)
        return 2
    model_id, out = argv[0], Path(argv[1])
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_id, use_fast=True)
    if not tokenizer.is_fast:
        print(f"{model_id} has no fast tokenizer; the worker needs its offset mapping", file=sys.stderr)
        return 1
    model = AutoModelForQuestionAnswering.from_pretrained(model_id)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    model.save_pretrained(out)
    (out / "build_info.json").write_text(json.dumps({"model_id": model_id}) + "\n")

    from qa_worker.inference import QAModel

    answer = QAModel.load(str(out)).answer("Who wrote the letter?", "The letter was written by Ada Lovelace.")
    print(f"baked {model_id} into {out}; smoke test answer: {answer.answer!r} ({answer.score:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
