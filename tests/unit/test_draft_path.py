"""Which file the ``draft_model`` load option names: in the model's folder or the models folder, never
outside them, never the model itself; each wrong value gets its own error before anything is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from webui.errors import ModelLoadError
from webui.loaders.llama_draft import draft_path
from webui.settings import options


@pytest.fixture
def models(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    (folder / "family").mkdir(parents=True)
    for name in ("big.gguf", "small.gguf", "family/big-7b.gguf", "family/small-05b.gguf", "notes.txt"):
        (folder / name).write_bytes(b"GGUF")
    (tmp_path / "elsewhere.gguf").write_bytes(b"GGUF")
    return folder


def test_no_draft(models):
    assert draft_path(models / "big.gguf", "") is None
    assert draft_path(models / "big.gguf", "  ") is None
    assert draft_path(models / "big.gguf", "none") is None


def test_a_name_beside_the_model_or_in_the_models_folder(models):
    assert draft_path(models / "big.gguf", "small.gguf") == models / "small.gguf"
    assert draft_path(models / "family" / "big-7b.gguf", "small-05b.gguf") == models / "family" / "small-05b.gguf"
    # a model in a folder of its own may be drafted for by one in the models folder
    assert draft_path(models / "family" / "big-7b.gguf", "small.gguf").resolve() == (models / "small.gguf").resolve()
    assert draft_path(models / "big.gguf", "family/small-05b.gguf") == models / "family" / "small-05b.gguf"


def test_an_absolute_path_inside_those_folders(models):
    assert draft_path(models / "big.gguf", str(models / "small.gguf")) == models / "small.gguf"


@pytest.mark.parametrize(
    ("choice", "key"),
    [
        ("../elsewhere.gguf", "error.draft_name"),
        ("family/../../elsewhere.gguf", "error.draft_name"),
        ("missing.gguf", "error.draft_missing"),
        ("big.gguf", "error.draft_itself"),
        ("notes.txt", "error.draft_not_gguf"),
    ],
)
def test_wrong_values_are_explained(models, choice, key):
    with pytest.raises(ModelLoadError) as info:
        draft_path(models / "big.gguf", choice)
    assert info.value.key == key
    assert choice.split("/")[-1] in str(info.value) or "big.gguf" in str(info.value)


def test_a_file_outside_the_folders_is_refused(models, tmp_path):
    outside = tmp_path.parent / "other.gguf"
    outside.write_bytes(b"GGUF")
    with pytest.raises(ModelLoadError) as info:
        draft_path(models / "family" / "big-7b.gguf", str(outside))
    assert info.value.key == "error.draft_outside"


def test_the_flags_people_know():
    by_name = {o.name: o for o in options()}
    assert by_name["draft_model"].flags == ("--draft-model", "--model-draft")  # text-generation-webui's name
    assert by_name["draft_max"].flags == ("--draft-max",)
    with pytest.raises(ValueError):
        by_name["draft_max"].convert("0")


def test_the_load_route_takes_text_generation_webuis_args_and_refuses_unknown_fields():
    from pydantic import ValidationError

    from webui.api.schemas import LoadModelRequest

    req = LoadModelRequest.model_validate(
        {"model_name": "big.gguf", "args": {"draft_model": "small.gguf", "n_ctx": 1024}, "options": {"n_ctx": 2048}}
    )
    assert req.options == {"draft_model": "small.gguf", "n_ctx": 2048}  # options win over args
    with pytest.raises(ValidationError, match="settings"):
        LoadModelRequest.model_validate({"model_name": "big.gguf", "settings": {"truncation_length": 4096}})
