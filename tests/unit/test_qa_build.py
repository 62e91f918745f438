"""Pieces of the offline QA model build: SQuAD metrics, question generation, answer-to-token mapping,
the cache key, the held-out set's integrity."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from kumolab.qa import build_model
from kumolab.qa.evaluate import exact_match, f1, load_questions, normalize_answer


def test_squad_normalisation_metrics():
    assert normalize_answer("The  Atlantic Ocean!") == "atlantic ocean"
    assert exact_match("the Sorbonne", "Sorbonne") == 1.0
    assert exact_match("Warsaw to Paris", "Warsaw") == 0.0
    assert f1("Warsaw to Paris", "Warsaw") == pytest.approx(0.5)
    assert f1("", "Warsaw") == 0.0


@pytest.fixture(scope="module")
def nlp():
    import spacy

    return spacy.load(build_model.SPACY_MODEL)


def test_entities_become_questions_with_exact_answer_spans(nlp):
    from kumolab.qa.questions import examples_from_docs

    text = (
        "Wichert Akkerman succeeded Ian Jackson as Debian Project Leader in January of 1999. "
        "Debian 2.1 was released on 09 March, 1999, after being delayed by a week."
    )
    examples = examples_from_docs([nlp(text)], seed=1)
    assert examples and all(e.check() for e in examples)
    # Surface style varies on purpose (a lower-case first word, " ?"): compare case-insensitively.
    questions = {e.question.lower().replace(" ?", "?"): e.answer for e in examples}
    assert questions.get("who succeeded ian jackson as debian project leader in january of 1999?") == "Wichert Akkerman"
    assert any(q.startswith("who did wichert akkerman succeed") and a == "Ian Jackson" for q, a in questions.items())
    assert all(q.rstrip().endswith("?") for q in questions)


def test_featurize_maps_character_answers_to_tokens():
    from transformers import AutoTokenizer

    from kumolab.qa.questions import Example

    tokenizer = AutoTokenizer.from_pretrained(str(build_model.base_model_dir()), use_fast=True)
    context = "Ian Murdock founded Debian in August 1993 while at Purdue University."
    ex = Example(context, "When was Debian founded?", "August 1993", context.index("August"))
    cut = Example(context * 20, "Where?", "Purdue University", len(context) * 19 + context.index("Purdue"))
    (feature,) = build_model.featurize(tokenizer, [ex, cut], max_length=48)  # the truncated one is dropped
    tokens = feature["input_ids"][feature["start_positions"] : feature["end_positions"] + 1]
    assert tokenizer.decode(tokens) == "august 1993"


def test_cache_key_changes_with_the_config_and_is_stable():
    config = build_model.BuildConfig()
    key = build_model.build_key(config)
    assert build_model.key_hash(key) == build_model.key_hash(build_model.build_key(config))
    assert build_model.key_hash(build_model.build_key(replace(config, steps=config.steps + 1))) != build_model.key_hash(
        key
    )
    assert set(key) >= {"config", "corpus", "generator", "base_model", "versions"}


def test_heldout_set_is_large_and_every_answer_is_a_span(tmp_path):
    items = load_questions(build_model.HELDOUT)
    assert len(items) >= 40
    assert len({i["context"] for i in items}) >= 15
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps([{"context": "abc", "question": "q?", "answers": ["xyz"]}]))
    with pytest.raises(ValueError, match="not a span"):
        load_questions(broken)
