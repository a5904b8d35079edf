"""Reading what the user typed, and grouping a repository's files into downloads (no network)."""

from __future__ import annotations

import pytest

from webui.downloads.hub import RemoteFile, Source, _safe_relpath, parse_source, plan_choices, quant_of
from webui.errors import DownloadError


@pytest.mark.parametrize(
    "text, repo, rev, file, endpoint",
    [
        ("bartowski/SmolLM2-GGUF", "bartowski/SmolLM2-GGUF", "main", None, None),
        ("bartowski/SmolLM2-GGUF:dev", "bartowski/SmolLM2-GGUF", "dev", None, None),
        (
            "https://huggingface.co/bartowski/SmolLM2-GGUF",
            "bartowski/SmolLM2-GGUF",
            "main",
            None,
            "https://huggingface.co",
        ),
        (
            "https://huggingface.co/bartowski/SmolLM2-GGUF/tree/v2",
            "bartowski/SmolLM2-GGUF",
            "v2",
            None,
            "https://huggingface.co",
        ),
        ("https://hf-mirror.com/a/b/blob/main/m-Q4_K_M.gguf", "a/b", "main", "m-Q4_K_M.gguf", "https://hf-mirror.com"),
        ("https://huggingface.co/a/b/resolve/main/sub/m.gguf?download=true", "a/b", "main", "sub/m.gguf", None),
    ],
)
def test_parse_source(text, repo, rev, file, endpoint):
    s = parse_source(text)
    assert (s.repo_id, s.revision, s.filename) == (repo, rev, file)
    if endpoint:
        assert s.endpoint == endpoint


def test_parse_source_uses_hf_endpoint_for_bare_names(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.local:8080/")
    assert parse_source("a/b").endpoint == "http://mirror.local:8080"


def test_parse_plain_file_url():
    s = parse_source("https://example.org/files/model.Q4_0.gguf")
    assert s.url and s.filename == "model.Q4_0.gguf" and s.repo_id is None


@pytest.mark.parametrize("bad", ["", "justaname", "../../etc/passwd", "a/../b", "https://huggingface.co/"])
def test_parse_source_rejects_nonsense(bad):
    with pytest.raises(DownloadError):
        parse_source(bad)


def test_quant_names():
    assert quant_of("SmolLM2-135M-Instruct-Q4_K_M.gguf") == "Q4_K_M"
    assert quant_of("model.Q8_0.gguf") == "Q8_0"
    assert quant_of("model-IQ2_XXS.gguf") == "IQ2_XXS"
    assert quant_of("model-f16.gguf") == "F16"
    assert quant_of("big-Q4_K_M-00001-of-00002.gguf") == "Q4_K_M"


def test_gguf_repo_choices_sorted_by_size_with_split_models_grouped():
    files = [
        RemoteFile("m-Q8_0.gguf", 8_000),
        RemoteFile("m-Q2_K.gguf", 2_000),
        RemoteFile("README.md", 10),
        RemoteFile("m-F16-00002-of-00002.gguf", 9_000),
        RemoteFile("m-F16-00001-of-00002.gguf", 9_000),
    ]
    listing = plan_choices(Source("a/b"), files)
    assert listing.kind == "gguf"
    assert [c.key for c in listing.choices] == ["m-Q2_K.gguf", "m-Q8_0.gguf", "m-F16.gguf"]
    split = listing.choices[-1]
    assert split.is_folder and split.target == "m-F16" and len(split.files) == 2
    assert "RAM" in listing.choices[0].label and "Q2_K" in listing.choices[0].label


def test_transformers_repo_takes_safetensors_config_tokenizer_not_pickle():
    files = [
        RemoteFile(p, 10)
        for p in (
            "config.json",
            "model.safetensors",
            "pytorch_model.bin",
            "tokenizer.json",
            "tokenizer_config.json",
            "README.md",
            "onnx/model.onnx",
        )
    ]
    listing = plan_choices(Source("org/model"), files)
    (choice,) = listing.choices
    assert listing.kind == "transformers" and choice.is_folder and choice.target == "org_model"
    assert sorted(f.path for f in choice.files) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]


def test_pickle_only_repo_needs_consent():
    files = [RemoteFile("config.json", 10), RemoteFile("pytorch_model.bin", 100)]
    with pytest.raises(DownloadError, match="pickle"):
        plan_choices(Source("org/old"), files)
    listing = plan_choices(Source("org/old"), files, allow_pickle=True)
    assert "pytorch_model.bin" in [f.path for f in listing.choices[0].files]


def test_repo_with_nothing_loadable():
    with pytest.raises(DownloadError, match="nothing here"):
        plan_choices(Source("org/data"), [RemoteFile("data.csv", 10)])


@pytest.mark.parametrize("bad", ["../evil.gguf", "a/../../b", "/abs/x", "con.gguf", "x\x00y"])
def test_server_file_names_are_checked(bad):
    if bad == "/abs/x":  # a leading slash is dropped, the rest is a safe relative path
        assert _safe_relpath(bad) == "abs/x"
        return
    with pytest.raises(DownloadError):
        _safe_relpath(bad)
