"""Which vision projector goes with a GGUF model (``webui.loaders.mtmd``), on small GGUF headers."""

from __future__ import annotations

from pathlib import Path

import pytest
from gguf import GGUFWriter

from webui.errors import ModelLoadError
from webui.loaders.mtmd import find_projectors, gguf_general_keys, is_projector, resolve_projector


def write_gguf(path: Path, arch: str, kind: str) -> Path:
    writer = GGUFWriter(str(path), arch)
    writer.add_type(kind)
    writer.add_name(path.stem)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def model(folder: Path, name: str) -> Path:
    return write_gguf(folder / name, "llama", "model")


def projector(folder: Path, name: str) -> Path:
    return write_gguf(folder / name, "clip", "mmproj")


def test_a_projector_is_known_by_its_name_or_its_header(tmp_path):
    m = model(tmp_path, "gemma-3-4b-it-Q4_K_M.gguf")
    p = projector(tmp_path, "vision-adapter.gguf")
    assert gguf_general_keys(p)["general.architecture"] == "clip"
    assert is_projector(p) and not is_projector(m)
    assert is_projector(tmp_path / "mmproj-not-written-yet.gguf")  # by its name alone
    (tmp_path / "garbage.gguf").write_bytes(b"not a gguf at all" * 10)
    assert not is_projector(tmp_path / "garbage.gguf") and gguf_general_keys(tmp_path / "garbage.gguf") == {}
    assert find_projectors(m) == [p]


def test_auto_with_one_model_takes_its_projector_preferring_f16(tmp_path):
    m = model(tmp_path, "SmolVLM-256M-Instruct-Q4_K_M.gguf")
    projector(tmp_path, "mmproj-model-q8_0.gguf")
    f16 = projector(tmp_path, "mmproj-model-f16.gguf")
    assert resolve_projector(m, "") == (f16, "")


def test_auto_in_a_shared_folder_takes_only_a_projector_named_like_the_model(tmp_path):
    gemma = model(tmp_path, "gemma-3-4b-it-Q4_K_M.gguf")
    qwen = model(tmp_path, "Qwen2.5-VL-3B-Instruct-Q4_K_M.gguf")
    text = model(tmp_path, "SmolLM2-135M-Instruct.Q4_1.gguf")
    gemma_p = projector(tmp_path, "mmproj-gemma-3-4b-it-f16.gguf")
    qwen_p = projector(tmp_path, "Qwen2.5-VL-3B-Instruct-mmproj-f16.gguf")
    projector(tmp_path, "mmproj-model-f16.gguf")  # says nothing about whose it is
    assert resolve_projector(gemma, "") == (gemma_p, "")
    assert resolve_projector(qwen, "") == (qwen_p, "")
    picked, note = resolve_projector(text, "")
    assert picked is None and "several models" in note and "mmproj-model-f16.gguf" in note


def test_the_parts_of_a_split_model_are_one_model(tmp_path):
    first = model(tmp_path, "big-vl-Q4_K_M-00001-of-00002.gguf")
    model(tmp_path, "big-vl-Q4_K_M-00002-of-00002.gguf")
    p = projector(tmp_path, "mmproj-F16.gguf")
    assert resolve_projector(first, "") == (p, "")


def test_named_and_absolute_choices(tmp_path):
    sub = tmp_path / "gemma"
    sub.mkdir()
    m = model(sub, "gemma-3-4b-it-Q4_K_M.gguf")
    here = projector(sub, "mmproj-gemma-3-4b-it-f16.gguf")
    above = projector(tmp_path, "mmproj-shared.gguf")
    assert resolve_projector(m, "none") == resolve_projector(m, "NONE") == (None, "")
    assert resolve_projector(m, here.name) == (here, "")
    assert resolve_projector(m, str(here)) == (here, "")
    assert resolve_projector(m, str(above)) == (above, "")  # the folder holding the model's folder
    assert resolve_projector(sub, "") == (here, "")  # a model folder works like its .gguf file
    with pytest.raises(ModelLoadError, match="not in the model's folder"):
        resolve_projector(m, "mmproj-shared.gguf")  # a bare name means the model's folder
    with pytest.raises(ModelLoadError, match="file name"):
        resolve_projector(m, "../mmproj-shared.gguf")
    with pytest.raises(ModelLoadError, match="not a vision projector"):
        resolve_projector(m, m.name)
    deeper = tmp_path / "a" / "b"
    deeper.mkdir(parents=True)
    far = projector(deeper, "mmproj-far.gguf")
    with pytest.raises(ModelLoadError, match="not in the model's folder"):
        resolve_projector(m, str(far))
