"""Turn English prose into extractive-QA training examples with spaCy's named entities.

For each sentence and each named entity in it, the entity becomes the answer and the sentence is rewritten
into a question about it, using the dependency parse for the usual English transformations:

* the entity is the subject  -> "Who became the leader of Debian in 1998?"
* a past-tense main verb      -> "When did Wichert Akkerman succeed Ian Jackson as leader?"
* an auxiliary                -> "When was Debian 2.0 released for the Intel i386 ...?"
* a year inside a date        -> "In what year ..." with only the four digits as the answer
* an entity in apposition or as the object complement of "name"/"call" ->
  "What is the name of the <noun>?"

The questions are not all grammatical; they only have to teach an encoder where answers start and end.
Contexts are windows of 1 to 4 sentences around the answer sentence so that short and longer contexts
both occur.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

YEAR = re.compile(r"\b(1[5-9]\d\d|20\d\d)\b")

WH_BY_LABEL = {
    "PERSON": ["Who"],
    "ORG": ["What organization", "Which organization", "What"],
    "GPE": ["Where", "What place"],
    "LOC": ["Where"],
    "FAC": ["Where", "What"],
    "NORP": ["What nationality", "Which group"],
    "DATE": ["When"],
    "TIME": ["When", "What time"],
    "CARDINAL": ["How many"],
    "QUANTITY": ["How much"],
    "MONEY": ["How much"],
    "PERCENT": ["What percentage"],
    "ORDINAL": ["Which"],
    "PRODUCT": ["What"],
    "EVENT": ["What event"],
    "WORK_OF_ART": ["What"],
    "LAW": ["What"],
}
LOCATIVE_PREPS = {"in", "at", "on", "from", "during", "since", "until", "by", "of", "to", "into"}


@dataclass(frozen=True)
class Example:
    context: str
    question: str
    answer: str
    answer_start: int  # character offset in context
    label: str = ""  # the spaCy entity label of the answer

    def check(self) -> bool:
        return self.context[self.answer_start : self.answer_start + len(self.answer)] == self.answer


def _clean(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([,.;:?!)])", r"\1", text)
    text = re.sub(r"\(\s+", "(", text)
    text = re.sub(r"\(\)", "", text)
    return re.sub(r"\s+", " ", text).strip(" ,;:")


def _without(sent, drop: set[int]) -> str:
    return "".join(_lower_first(t, sent) + t.whitespace_ for t in sent if t.i not in drop)


def _lower_first(token, sent) -> str:
    """The sentence's first word moves after a wh-word: lower-case it unless it is a name."""
    if token.i == sent.start and token.pos_ != "PROPN" and token.text != "I":
        return token.text.lower()
    return token.text


def _drop_set(ent) -> set[int]:
    """Token indices to remove with the entity: the entity and a preposition that only governs it."""
    drop = set(range(ent.start, ent.end))
    head = ent.root.head
    if ent.root.dep_ == "pobj" and head.dep_ == "prep" and head.lower_ in LOCATIVE_PREPS:
        if all(c.i in drop for c in head.children):
            drop.add(head.i)
    if ent.label_ == "CARDINAL" and ent.root.dep_ == "nummod":
        drop.add(ent.root.head.i)
    return drop


def _wh(ent, rng: random.Random) -> str:
    wh = rng.choice(WH_BY_LABEL.get(ent.label_, ["What"]))
    if ent.label_ == "CARDINAL" and ent.root.dep_ == "nummod" and ent.root.head.pos_ in ("NOUN", "PROPN"):
        wh = f"How many {ent.root.head.text}"
    return wh


def questions_for_entity(sent, ent, rng: random.Random) -> Iterator[tuple[str, str, int]]:
    """(question, answer, answer_char_offset_in_doc) for one entity of one sentence."""
    root = sent.root
    drop = _drop_set(ent)
    answer, answer_start = ent.text, ent.start_char
    wh = _wh(ent, rng)
    if ent.label_ == "DATE":
        year = YEAR.search(ent.text)
        year_wh = ["In what year", "In which year", "What year"]
        if year and year.group(0) != ent.text.strip():
            if rng.random() < 0.6:
                answer, answer_start = year.group(0), ent.start_char + year.start()
                wh = rng.choice(year_wh)
        elif year:
            wh = rng.choice(year_wh + ["When"])
    # 1. entity is (part of) the subject at the front of the sentence: replace it by the wh-phrase.
    if ent.start == sent.start or (ent.root.dep_ in ("nsubj", "nsubjpass") and ent.start <= sent.start + 1):
        rest = _clean(_without(sent, set(range(sent.start, ent.end))))
        if len(rest.split()) >= 3:
            yield f"{wh} {rest.rstrip('.')}?", answer, answer_start
    # 2. inversion with an auxiliary or do-support around the sentence's main verb.
    elif root.pos_ in ("VERB", "AUX") and ent.root.i != root.i and not (set(range(ent.start, ent.end)) & {root.i}):
        aux = [c for c in root.children if c.dep_ in ("aux", "auxpass") and c.i < root.i]
        subj = [c for c in root.children if c.dep_ in ("nsubj", "nsubjpass")]
        if subj and not any(t.i in drop for t in subj[0].subtree):
            if aux:
                words = _without(sent, drop | {aux[0].i})
                question = f"{wh} {aux[0].text} {_clean(words)}"
            elif root.tag_ == "VBD" and root.lemma_ != "be":
                support = "did"
                words = "".join(
                    (root.lemma_ + root.whitespace_) if t.i == root.i else _lower_first(t, sent) + t.whitespace_
                    for t in sent
                    if t.i not in drop
                )
                question = f"{wh} {support} {_clean(words)}"
            elif root.lemma_ == "be":
                words = _without(sent, drop | {root.i})
                question = f"{wh} {root.text} {_clean(words)}"
            else:
                words = _without(sent, drop)
                question = f"{wh} {_clean(words)}"
            yield question.rstrip(".") + "?", answer, answer_start
    # 3. "the X, Ent," / "named the X Ent" -> "What is the name of the X?"
    if ent.label_ in ("PERSON", "ORG", "PRODUCT", "GPE", "WORK_OF_ART"):
        head = ent.root.head
        noun = None
        if ent.root.dep_ == "appos" and head.pos_ == "NOUN":
            noun = head
        elif ent.root.dep_ in ("oprd", "dobj", "attr") and head.lemma_ in ("name", "call", "dub", "title"):
            objs = [c for c in head.children if c.dep_ == "dobj" and c.i != ent.root.i and c.pos_ == "NOUN"]
            noun = objs[0] if objs else None
        if noun is not None:
            phrase = " ".join(t.text for t in noun.subtree if t.i < noun.i + 1 and t.i not in range(ent.start, ent.end))
            phrase = (
                phrase
                if phrase.lower().startswith(("the ", "a ", "an ", "its ", "his ", "her ", "their "))
                else f"the {phrase}"
            )
            yield f"What is the name of {phrase.strip()}?", answer, answer_start


def _style(question: str, rng: random.Random) -> str:
    """Vary surface style a little: a lower-case first word or a space before the question mark."""
    r = rng.random()
    if r < 0.1:
        question = question[:-1] + " ?"
    elif r < 0.2:
        question = question[0].lower() + question[1:]
    return question


def examples_from_docs(docs: Iterable, seed: int = 0, max_context_sentences: int = 4) -> list[Example]:
    rng = random.Random(seed)
    examples: list[Example] = []
    for doc in docs:
        sents = list(doc.sents)
        for si, sent in enumerate(sents):
            if len(sent) < 5:
                continue
            for ent in sent.ents:
                if len(ent.text) > 60 or not ent.text.strip():
                    continue
                for question, answer, answer_start in questions_for_entity(sent, ent, rng):
                    if len(question.split()) < 3:
                        continue
                    n_before = rng.randint(0, max_context_sentences - 1)
                    n_after = rng.randint(0, max_context_sentences - 1 - n_before)
                    first = sents[max(0, si - n_before)]
                    last = sents[min(len(sents) - 1, si + n_after)]
                    context = doc.text[first.start_char : last.end_char]
                    example = Example(
                        context, _style(question, rng), answer, answer_start - first.start_char, ent.label_
                    )
                    if example.check():
                        examples.append(example)
    return examples
