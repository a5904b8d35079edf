"""Model facts read from the files agree with what the loaders report after a real load."""

from __future__ import annotations

import json
import struct

import pytest

from testdata import GEMMA, SMOLLM
from webui.errors import ModelInfoError
from webui.models.facts import gguf_facts, model_facts

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "name, arch, quant, ctx, template",
    [
        (SMOLLM, "llama", "Q4_1", 8192, True),
        (GEMMA, "gemma3", "Q4_K_M", 32768, False),
    ],
)
def test_gguf_facts_match_llama_cpp(models_dir, name, arch, quant, ctx, template):
    from gguf import LlamaFileType
    from llama_cpp import Llama

    facts = model_facts(models_dir / name)
    assert (facts.format, facts.architecture, facts.quantization) == ("GGUF", arch, quant)
    assert facts.context_length == ctx and facts.has_chat_template is template
    llm = Llama(str(models_dir / name), n_ctx=256, verbose=False)
    try:
        assert llm._model.n_ctx_train() == facts.context_length
        assert llm.metadata["general.architecture"] == facts.architecture
        assert LlamaFileType(int(llm.metadata["general.file_type"])).name.endswith(facts.quantization)
        assert llm._model.n_params() == facts.parameters
        assert llm._model.n_embd() == facts.n_embd
        assert ("tokenizer.chat_template" in llm.metadata) is facts.has_chat_template
    finally:
        llm.close()
    assert facts.file_size == (models_dir / name).stat().st_size
    # RAM estimate: the weights plus a KV cache that grows with the context
    assert facts.file_size < facts.ram_estimate(2048) < facts.ram_estimate(32768)
    from webui.ui.model_tab import facts_markdown  # the table the Model tab shows

    table = facts_markdown(facts, 4096, "en")
    assert "RAM needed at 4,096 tokens" in table and quant in table


def test_transformers_folder_facts_match_config_and_weights(hf_checkpoint):
    import safetensors
    from transformers import AutoConfig

    facts = model_facts(hf_checkpoint)
    config = AutoConfig.from_pretrained(hf_checkpoint)
    assert facts.format == "transformers" and facts.architecture == config.model_type == "llama"
    assert facts.context_length == config.max_position_embeddings == 8192
    assert facts.n_layers == config.num_hidden_layers and facts.has_chat_template
    n = 0
    with safetensors.safe_open(str(hf_checkpoint / "model.safetensors"), "np") as f:
        for key in f.keys():
            shape = f.get_slice(key).get_shape()
            size = 1
            for d in shape:
                size *= d
            n += size
    assert facts.parameters == n
    assert facts.ram_estimate(4096) > n * 4  # float32 on a CPU


def _gguf_header(kv: bytes, n_kv: int, n_tensors: int = 0) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv) + kv


def _kv_string(key: str, value: str) -> bytes:
    k, v = key.encode(), value.encode()
    return struct.pack("<Q", len(k)) + k + struct.pack("<I", 8) + struct.pack("<Q", len(v)) + v


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "only 0 bytes"),
        (b"PK\x03\x04" + b"\0" * 100, "not a GGUF"),
        (_gguf_header(b"", 10**12), "claims"),
        (_gguf_header(_kv_string("general.architecture", "llama")[:-3], 1), "truncated"),
        (_gguf_header(struct.pack("<Q", 4) + b"abcd" + struct.pack("<I", 99), 1), "unknown metadata value type"),
        # an array that claims 2**60 strings: refused before any is read
        (_gguf_header(struct.pack("<Q", 1) + b"a" + struct.pack("<IIQ", 9, 8, 2**60), 1), "truncated"),
    ],
)
def test_hostile_or_broken_gguf_headers_fail_fast_with_a_message(tmp_path, content, message):
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)
    with pytest.raises(ModelInfoError, match=message):
        gguf_facts(path)


def test_truncated_real_model_is_reported(tmp_path, models_dir):
    data = (models_dir / SMOLLM).read_bytes()[:200_000]
    path = tmp_path / "cut.gguf"
    path.write_bytes(data)
    with pytest.raises(ModelInfoError, match="truncated"):
        gguf_facts(path)


def test_broken_config_json(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelInfoError, match="config.json"):
        model_facts(folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", 10**15))
    with pytest.raises(ModelInfoError, match="corrupt"):
        model_facts(folder)
