"""A tiny, randomly initialised causal LM and tokenizer, built offline in a second.

For smoke runs and tests: it exercises every code path of the engine (chat template, batched
generation, log-probs, updates, checkpoints) without a download. Its Rust is noise.
The model is a Llama (2 layers unless asked for more); the tokenizer is ByT5's byte-level one,
which needs no vocabulary files (its 384 ids: 3 specials, 256 bytes, 125 sentinels), with a small
chat template added.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import ByT5Tokenizer, LlamaConfig, LlamaForCausalLM

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def make_tiny_model(
    out_dir: str | Path, *, seed: int = 0, hidden_size: int = 64, layers: int = 2
) -> Path:
    """Write a `save_pretrained` model and tokenizer to `out_dir` and return it.

    `hidden_size` and `layers` size it up for benchmarks (bench/pipeline.py); the defaults keep
    tests fast.
    """
    out_dir = Path(out_dir)
    tokenizer = ByT5Tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer),  # 384, not tokenizer.vocab_size (256): sentinels count too
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
