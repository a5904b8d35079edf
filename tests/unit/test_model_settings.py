"""Per-model settings in models/config-user.yaml, and importing/deleting models."""

from __future__ import annotations

import os

import pytest

from webui.errors import InvalidNameError, ModelLoadError, ModelNotFoundError, SettingsError
from webui.models.manager import ModelManager
from webui.models.model_settings import MODEL_SETTINGS_FILE, ModelSettings
from webui.params import LoadOptions
from webui.settings import Settings

GGUF_BYTES = b"GGUF" + b"\0" * 64


@pytest.fixture
def models(tmp_path):
    d = tmp_path / "models"
    d.mkdir()
    (d / "a.gguf").write_bytes(GGUF_BYTES)
    (d / "b-Q4_K_M.gguf").write_bytes(GGUF_BYTES)
    return ModelManager(d, LoadOptions(n_ctx=4096, threads=0))


def test_round_trip_keeps_other_entries(models):
    models.settings_file.write_text("# hand-written\nother.gguf:\n  n_ctx: 512\n")
    models.save_model_settings(
        "a.gguf",
        ModelSettings(
            loader="llama.cpp",
            options={"n_ctx": 2048, "threads": 2},
            instruction_template="ChatML",
            preset="Deterministic",
        ),
    )
    saved = models.model_settings("a.gguf")
    assert saved.loader == "llama.cpp" and saved.options == {"n_ctx": 2048, "threads": 2}
    assert (saved.instruction_template, saved.preset) == ("ChatML", "Deterministic")
    assert models.model_settings("other.gguf").options == {"n_ctx": 512}
    assert models.model_settings("b-Q4_K_M.gguf") == ModelSettings()
    text = models.settings_file.read_text()
    assert "a.gguf:" in text and "n_ctx: 2048" in text  # flat keys, like text-generation-webui's file


def test_text_generation_webui_patterns_and_aliases(models):
    models.settings_file.write_text(
        ".*q4_k_m.*$:\n  ctx_size: 1024\n  gpu_layers: 5\nb-Q4_K_M.gguf:\n  threads: 3\n  no_mmap: true\n"
    )
    saved = models.model_settings("b-Q4_K_M.gguf")
    assert saved.options == {"n_ctx": 1024, "n_gpu_layers": 5, "threads": 3, "use_mmap": False}
    assert models.model_settings("a.gguf").options == {}


def test_options_precedence_base_then_saved_then_explicit(models):
    models.save_model_settings("a.gguf", ModelSettings(loader="llama.cpp", options={"n_ctx": 2048, "threads": 2}))
    loader, opts = models.options_for("a.gguf", LoadOptions(n_ctx=8192, n_batch=256), {"threads": 1})
    assert loader == "llama.cpp"
    assert (opts.n_ctx, opts.threads, opts.n_batch) == (2048, 1, 256)


def test_remote_secrets_are_never_saved(models):
    models.save_model_settings("a.gguf", ModelSettings(options={"n_ctx": 512, "remote_key": "sk-secret"}))
    assert "sk-secret" not in models.settings_file.read_text()


def test_bad_values_and_broken_yaml_are_reported_and_never_overwritten(models):
    models.settings_file.write_text("a.gguf:\n  n_ctx: -5\n")
    with pytest.raises(SettingsError, match="n_ctx"):
        models.model_settings("a.gguf")
    broken = "a.gguf: [unclosed\n"
    models.settings_file.write_text(broken)
    with pytest.raises(SettingsError):
        models.model_settings("a.gguf")
    with pytest.raises(SettingsError):
        models.save_model_settings("a.gguf", ModelSettings(options={"n_ctx": 1}))
    assert models.settings_file.read_text() == broken
    with pytest.raises(InvalidNameError):
        models.save_model_settings("../evil", ModelSettings())


def test_import_link_and_copy_then_delete(models, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "lmstudio.gguf").write_bytes(GGUF_BYTES)
    folder = outside / "hf-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"\0" * 16)
    assert models.import_model(outside / "lmstudio.gguf", "link") == "lmstudio.gguf"
    assert (models.model_dir / "lmstudio.gguf").is_symlink()
    assert models.import_model(str(folder), "copy", name="copied-model") == "copied-model"
    assert not (models.model_dir / "copied-model").is_symlink()
    assert {"lmstudio.gguf", "copied-model"} <= set(models.list_models())
    assert not [p for p in models.model_dir.iterdir() if p.name.endswith(".tmp")]
    # deleting a link removes only the link; deleting a copy removes the folder
    assert "link" in models.delete_model("lmstudio.gguf")
    assert (outside / "lmstudio.gguf").is_file() and not (models.model_dir / "lmstudio.gguf").exists()
    models.delete_model("copied-model")
    assert not (models.model_dir / "copied-model").exists() and (folder / "config.json").is_file()


@pytest.mark.parametrize(
    "bad, error",
    [
        ("/no/such/file.gguf", ModelNotFoundError),
        ("", ModelNotFoundError),
    ],
)
def test_import_refuses_bad_paths(models, bad, error):
    with pytest.raises(error):
        models.import_model(bad)


def test_import_refuses_non_models_and_name_clashes(models, tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ModelLoadError, match="not a .gguf"):
        models.import_model(tmp_path / "notes.txt")
    (tmp_path / "fake.gguf").write_bytes(b"<html>error page</html>")
    with pytest.raises(ModelLoadError, match="not a GGUF"):
        models.import_model(tmp_path / "fake.gguf")
    (tmp_path / "a.gguf").write_bytes(GGUF_BYTES)
    with pytest.raises(InvalidNameError, match="already a model"):
        models.import_model(tmp_path / "a.gguf")
    with pytest.raises(InvalidNameError):
        models.import_model(tmp_path / "a.gguf", name="../../escape.gguf")


def test_delete_refuses_paths_outside(models, tmp_path):
    (tmp_path / "victim.gguf").write_bytes(GGUF_BYTES)
    for bad in ("../victim.gguf", "/etc/passwd", "..", ""):
        with pytest.raises((InvalidNameError, ModelNotFoundError)):
            models.delete_model(bad)
    assert (tmp_path / "victim.gguf").exists()


def test_services_load_model_applies_saved_loader_options_and_preset(tmp_path, loaders):
    from webui.services import Services

    user = tmp_path / "user"
    (user / "models").mkdir(parents=True)
    (user / "models" / "m.bin").write_bytes(b"weights")
    services = Services.build(Settings(user_data_dir=user), user / "settings.yaml", loaders=loaders)
    services.models.save_model_settings(
        "m.bin",
        ModelSettings(loader="fake", options={"n_ctx": 333}, instruction_template="Alpaca", preset="Deterministic"),
    )
    loaded = services.load_model("m.bin", explicit={})
    assert loaded.loader == "fake" and loaded.backend.n_ctx == 333
    assert services.settings.preset == "Deterministic"
    assert "preset: Deterministic" in (user / "settings.yaml").read_text()
    assert services.template_override_for("m.bin") == "Alpaca"
    # a flag typed on the command line wins over the saved value
    assert services.load_model("m.bin", explicit={"n_ctx": 777}).backend.n_ctx == 777
    # the Chat tab's choice wins over the saved template
    services.remember(template_overrides={"m.bin": "ChatML"})
    assert services.template_override_for("m.bin") == "ChatML"
    assert os.path.exists(services.models.model_dir / MODEL_SETTINGS_FILE)
