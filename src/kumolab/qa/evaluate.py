"""SQuAD-style exact match and F1 (the official v1.1 normalisation: lower case, no punctuation, no
articles a/an/the, single spaces), and evaluation of a QA model on a JSON question set.

A question set is a JSON list of ``{"context": ..., "question": ..., "answers": [...]}``; a prediction is
scored against every acceptable answer and the best score counts, as in SQuAD.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_PUNCT = set(string.punctuation) | {"–", "—", "“", "”", "‘", "’"}


def normalize_answer(text: str) -> str:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(truth))


def f1(prediction: str, truth: str) -> float:
    pred = normalize_answer(prediction).split()
    gold = normalize_answer(truth).split()
    if not pred or not gold:
        return float(pred == gold)
    common = Counter(pred) & Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def best_of(metric, prediction: str, truths: Sequence[str]) -> float:
    return max(metric(prediction, t) for t in truths)


def load_questions(path: str | Path) -> list[dict[str, Any]]:
    items = json.loads(Path(path).read_text(encoding="utf-8"))
    for n, item in enumerate(items):
        missing = {"context", "question", "answers"} - set(item)
        if missing:
            raise ValueError(f"{path}: item {n} lacks {sorted(missing)}")
        for answer in item["answers"]:
            if answer not in item["context"]:
                raise ValueError(f"{path}: item {n}: answer {answer!r} is not a span of its context")
    return items


def evaluate(qa_model: Any, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Run ``qa_model.answer_batch`` on every item and return EM/F1 (0..1) plus per-item predictions."""
    answers = qa_model.answer_batch([(item["question"], item["context"]) for item in items])
    rows = []
    for item, answer in zip(items, answers, strict=False):
        rows.append(
            {
                "question": item["question"],
                "prediction": answer.answer,
                "answers": item["answers"],
                "score": answer.score,
                "em": best_of(exact_match, answer.answer, item["answers"]),
                "f1": best_of(f1, answer.answer, item["answers"]),
            }
        )
    n = max(len(rows), 1)
    return {
        "n": len(rows),
        "exact_match": sum(r["em"] for r in rows) / n,
        "f1": sum(r["f1"] for r in rows) / n,
        "predictions": rows,
    }
