"""Extractive question answering without the transformers pipeline (removed in transformers 5).

Loads any extractive-QA model (``AutoModelForQuestionAnswering`` + a *fast* tokenizer) from a Hugging
Face id or a local directory and decodes the best answer span itself:

* question and context are encoded as a pair; only the context is truncated (``only_second``);
* a context longer than ``max_length`` tokens is split into overlapping windows (``stride`` tokens of
  overlap, ``return_overflowing_tokens``), every window is scored and the best span over all windows wins;
* a span may only start and end on context tokens, with ``start <= end`` and at most
  ``max_answer_tokens`` tokens;
* the span's score is ``p_start * p_end`` where each probability is a softmax over that window's context
  tokens (question, special and padding tokens are masked out), so it is a float in (0, 1];
* character offsets come from the fast tokenizer's offset mapping and index the Python ``str`` (code
  points, not UTF-8 bytes), so ``context[start:end] == answer`` for any text, non-ASCII included;
* windows from many questions are run through the model in batches of ``batch_size``.

Unanswerable questions: an extractive model trained without "no answer" examples always points at
*some* span. We return that best span with its (typically low) score; with ``min_score`` > 0 a best
span scoring below it is reported as no answer: ``answer == ""``, ``start == end == -1``, the score kept.
An empty context (no context tokens at all) is always no answer with score 0.0.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

DEFAULT_MAX_LENGTH = 384
DEFAULT_STRIDE = 128
DEFAULT_MAX_ANSWER_TOKENS = 30
DEFAULT_TOP_K = 20


@dataclass(frozen=True)
class Answer:
    answer: str
    score: float
    start: int
    end: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


NO_ANSWER = Answer(answer="", score=0.0, start=-1, end=-1)


def _log_softmax(values: np.ndarray) -> np.ndarray:
    shifted = values - values.max()
    return shifted - math.log(float(np.exp(shifted).sum()))


def best_span(
    start_logits: Sequence[float],
    end_logits: Sequence[float],
    context_mask: Sequence[bool],
    max_answer_tokens: int = DEFAULT_MAX_ANSWER_TOKENS,
    top_k: int = DEFAULT_TOP_K,
) -> tuple[int, int, float] | None:
    """Best (start_token, end_token, score) of one window, or None when it has no context token.

    Only positions where ``context_mask`` is true are candidates; ``start <= end`` and
    ``end - start + 1 <= max_answer_tokens``. Score is ``p_start * p_end`` with softmaxes over the
    context positions of this window.
    """
    mask = np.asarray(context_mask, dtype=bool)
    if not mask.any():
        return None
    starts = np.asarray(start_logits, dtype=np.float64)[mask]
    ends = np.asarray(end_logits, dtype=np.float64)[mask]
    positions = np.flatnonzero(mask)
    log_p_start = _log_softmax(starts)
    log_p_end = _log_softmax(ends)
    k = min(top_k, len(positions))
    start_candidates = np.argsort(-log_p_start, kind="stable")[:k]
    end_candidates = np.argsort(-log_p_end, kind="stable")[:k]
    best: tuple[int, int, float] | None = None
    for si in start_candidates:
        for ei in end_candidates:
            s_tok, e_tok = int(positions[si]), int(positions[ei])
            if e_tok < s_tok or e_tok - s_tok + 1 > max_answer_tokens:
                continue
            score = float(log_p_start[si] + log_p_end[ei])
            if best is None or score > best[2]:
                best = (s_tok, e_tok, score)
    if best is None:
        # top-k candidates never formed a legal pair: fall back to the best single-token span.
        si = int(np.argmax(log_p_start + log_p_end))
        best = (int(positions[si]), int(positions[si]), float(log_p_start[si] + log_p_end[si]))
    return best[0], best[1], math.exp(best[2])


class QAModel:
    """A loaded extractive-QA model plus its fast tokenizer."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        model_id: str = "unknown",
        max_length: int = DEFAULT_MAX_LENGTH,
        stride: int = DEFAULT_STRIDE,
        max_answer_tokens: int = DEFAULT_MAX_ANSWER_TOKENS,
        batch_size: int = 16,
        min_score: float = 0.0,
    ) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("a fast tokenizer is required (character offsets come from its offset mapping)")
        if stride >= max_length // 2:
            raise ValueError(f"stride {stride} must be well below max_length {max_length}")
        self.model = model
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.max_length = max_length
        self.stride = stride
        self.max_answer_tokens = max_answer_tokens
        self.batch_size = batch_size
        self.min_score = min_score
        # The question side must leave room for context; cap questions at a third of the window.
        self.max_question_tokens = max_length // 3

    @classmethod
    def load(cls, source: str, **kwargs: Any) -> QAModel:
        """Load from a Hugging Face id (needs the hub or its cache) or from a local directory."""
        from transformers import AutoModelForQuestionAnswering, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(source, use_fast=True)
        model = AutoModelForQuestionAnswering.from_pretrained(source)
        model.eval()
        model_id = kwargs.pop("model_id", None) or _model_id_of(source)
        return cls(model, tokenizer, model_id=model_id, **kwargs)

    # -- encoding ---------------------------------------------------------------------------------

    def _clip_question(self, question: str) -> str:
        ids = self.tokenizer(question, add_special_tokens=False)["input_ids"]
        if len(ids) <= self.max_question_tokens:
            return question
        return self.tokenizer.decode(ids[: self.max_question_tokens])

    def encode(self, questions: Sequence[str], contexts: Sequence[str]) -> Any:
        """Tokenize pairs into windows: BatchEncoding with offset_mapping and overflow_to_sample_mapping."""
        questions = [self._clip_question(q.strip()) for q in questions]
        return self.tokenizer(
            questions,
            list(contexts),
            truncation="only_second",
            max_length=self.max_length,
            stride=self.stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding=False,
        )

    # -- inference --------------------------------------------------------------------------------

    def _logits(self, features: list[dict[str, list[int]]]) -> list[tuple[np.ndarray, np.ndarray]]:
        import torch

        out: list[tuple[np.ndarray, np.ndarray]] = []
        for i in range(0, len(features), self.batch_size):
            chunk = features[i : i + self.batch_size]
            batch = self.tokenizer.pad(chunk, return_tensors="pt")
            with torch.inference_mode():
                result = self.model(**batch)
            starts = result.start_logits.float().numpy()
            ends = result.end_logits.float().numpy()
            for j, feature in enumerate(chunk):
                n = len(feature["input_ids"])
                out.append((starts[j, :n], ends[j, :n]))
        return out

    def answer_batch(self, pairs: Iterable[tuple[str, str]]) -> list[Answer]:
        """Answer (question, context) pairs; one Answer per pair, in order."""
        pairs = list(pairs)
        if not pairs:
            return []
        questions = [q for q, _ in pairs]
        contexts = [c for _, c in pairs]
        enc = self.encode(questions, contexts)
        keep = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        features = [{k: enc[k][i] for k in keep} for i in range(len(enc["input_ids"]))]
        logits = self._logits(features)
        best: list[Answer | None] = [None] * len(pairs)
        for f, (start_logits, end_logits) in enumerate(logits):
            sample = enc["overflow_to_sample_mapping"][f]
            sequence_ids = enc.sequence_ids(f)
            offsets = enc["offset_mapping"][f]
            mask = [sid == 1 and offsets[t][1] > offsets[t][0] for t, sid in enumerate(sequence_ids)]
            span = best_span(start_logits, end_logits, mask, self.max_answer_tokens)
            if span is None:
                continue
            s_tok, e_tok, score = span
            start_char, end_char = offsets[s_tok][0], offsets[e_tok][1]
            current = best[sample]
            if current is None or score > current.score:
                best[sample] = Answer(contexts[sample][start_char:end_char], score, start_char, end_char)
        answers: list[Answer] = []
        for found in best:
            if found is None:
                answers.append(NO_ANSWER)
            elif found.score < self.min_score:
                answers.append(Answer("", found.score, -1, -1))
            else:
                answers.append(found)
        return answers

    def answer(self, question: str, context: str) -> Answer:
        return self.answer_batch([(question, context)])[0]


def _model_id_of(source: str) -> str:
    """A stable, human-readable model id: the HF id, or a local directory's recorded id / its name."""
    if os.path.isdir(source):
        info = os.path.join(source, "build_info.json")
        if os.path.exists(info):
            import json

            with open(info, encoding="utf-8") as fh:
                recorded = json.load(fh).get("model_id")
            if recorded:
                return str(recorded)
        return os.path.basename(os.path.normpath(source))
    return source
