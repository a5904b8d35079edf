"""Model files from strangers: chat templates that try to escape the sandbox, broken files, unsafe folders.

The hostile GGUFs are built here with the ``gguf`` package (the same writer llama.cpp's tools use).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from testdata import SMOLLM
from webui.errors import ModelLoadError
from webui.models.facts import model_facts
from webui.models.manager import ModelManager
from webui.params import LoadOptions
from webui.settings import PROJECT_DIR
from webui.templates.chat_template import FALLBACK_TEMPLATE_NAME, InstructionTemplateStore, choose_template

ESCAPES = {
    "class_mro": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "globals": "{{ raise_exception.__globals__['os'].popen('id').read() }}",
    "cycler_init": "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "lipsum": "{{ lipsum.__globals__['os'].popen('cat /etc/passwd').read() }}",
    "joiner": "{{ joiner.__init__.__globals__.__builtins__.open('/etc/passwd').read() }}",
    "namespace": "{{ namespace.__init__.__globals__ }}",
    "range_loop": "{% for i in range(10**9) %}{{ i }}{% endfor %}",
    "nested_loops": "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
    "string_mul": "{{ 'A' * 10**10 }}",
    "string_mul_loop": "{% set s = namespace(v='x') %}{% for i in range(60) %}{% set s.v = s.v ~ s.v %}{% endfor %}"
    "{{ s.v }}",
    "big_int": "{{ 9 ** 9999999 }}",
    "format_width": "{{ '%99999999999s' % 'x' }}",
    "recursion": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "attr_setter": "{{ messages.append(1) }}{{ messages.clear() }}",
    "self_module": "{{ self.__init__.__globals__ }}",
}


def write_gguf(path: Path, template: str) -> Path:
    import gguf

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(2048)
    w.add_chat_template(template)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def store() -> InstructionTemplateStore:
    return InstructionTemplateStore(PROJECT_DIR / "instruction-templates")


@pytest.mark.parametrize("kind", sorted(ESCAPES))
def test_escaping_template_in_a_gguf_falls_back_safely(kind, tmp_path, store):
    path = write_gguf(tmp_path / f"{kind}.gguf", ESCAPES[kind])
    source = model_facts(path).metadata["tokenizer.chat_template"]
    assert source == ESCAPES[kind]
    start = time.monotonic()
    template, note = choose_template(source, None, store)
    took = time.monotonic() - start
    assert template.name == FALLBACK_TEMPLATE_NAME, note
    assert "unsafe" in note or "unusable" in note, note
    assert took < 15, f"{kind} took {took:.1f} s"  # generous: the budget stops it after at most 5 s
    # the fallback renders a normal prompt, nothing of the host leaks
    prompt = template.render([{"role": "user", "content": "hi"}])
    assert "root:" not in prompt and "uid=" not in prompt and "hi" in prompt


def test_attribute_escapes_are_named_unsafe(tmp_path, store):
    for kind in ("class_mro", "globals", "cycler_init", "lipsum", "range_loop", "string_mul", "big_int"):
        _, note = choose_template(ESCAPES[kind], None, store)
        assert "unsafe" in note, (kind, note)


def test_real_model_with_a_hostile_template_loads_and_chats_with_the_fallback(tmp_path, smollm_path, store):
    """SmolLM2 with its template replaced (same byte length, so the tensor data stays aligned)."""
    data = smollm_path.read_bytes()
    original = model_facts(smollm_path).metadata["tokenizer.chat_template"].encode()
    hostile = ESCAPES["cycler_init"].encode()
    assert len(hostile) <= len(original)
    hostile += b" " * (len(original) - len(hostile))
    assert data.count(original) == 1
    d = tmp_path / "models"
    d.mkdir()
    (d / "hostile.gguf").write_bytes(data.replace(original, hostile))
    models = ModelManager(d, LoadOptions(n_ctx=512, threads=1))
    loaded = models.load("hostile.gguf")
    try:
        assert loaded.backend.chat_template.startswith("{{ cycler")
        template, note = choose_template(loaded.backend.chat_template, None, store)
        assert template.name == FALLBACK_TEMPLATE_NAME and "unsafe" in note
    finally:
        models.unload()


@pytest.fixture(scope="module")
def manager(tmp_path_factory, smollm_path):
    """SmolLM2 loaded, with a folder of broken and unsafe models beside it."""
    d = tmp_path_factory.mktemp("bad-models")
    (d / SMOLLM).symlink_to(smollm_path)
    with open(smollm_path, "rb") as f:
        (d / "truncated.gguf").write_bytes(f.read(3_000_000))
    (d / "random.gguf").write_bytes(bytes(range(256)) * 400)
    (d / "folder.gguf").mkdir()
    pickle_only = d / "pickle-only"
    pickle_only.mkdir()
    (pickle_only / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (pickle_only / "pytorch_model.bin").write_bytes(b"\x80\x04cos\nsystem\n")
    remote_code = d / "remote-code"
    remote_code.mkdir()
    (remote_code / "config.json").write_text(json.dumps({"model_type": "x", "auto_map": {"AutoModel": "m.Model"}}))
    (remote_code / "model.safetensors").write_bytes(b"\0" * 16)
    models = ModelManager(d, LoadOptions(n_ctx=512, threads=1))
    models.load(SMOLLM)
    yield models
    models.unload()


@pytest.mark.parametrize(
    "name, loader, says",
    [
        ("truncated.gguf", None, "truncated or corrupt"),
        ("random.gguf", None, "not a GGUF model file"),
        ("folder.gguf", None, "folder"),
        ("pickle-only", "transformers", "pickle"),
        ("remote-code", "transformers", "trust remote code"),
    ],
)
def test_bad_model_refused_and_the_loaded_one_kept(manager, name, loader, says):
    with pytest.raises(ModelLoadError) as err:
        manager.load(name, loader)
    assert says in err.value.message
    assert manager.current is not None and manager.current.name == SMOLLM


def test_context_too_big_for_ram_refused_before_allocating(manager):
    need = model_facts(manager.path_of(SMOLLM)).ram_estimate(1_048_576)
    with pytest.raises(ModelLoadError, match="Not enough memory") as err:
        manager.load(SMOLLM, options={"n_ctx": 1_048_576})
    assert "context" in err.value.message
    assert manager.current is not None and manager.current.options.n_ctx == 512  # reloaded? never unloaded
    # the same check with a machine that has little free memory, at a normal context
    small = ModelManager(manager.model_dir, LoadOptions(n_ctx=512), available_memory=lambda: 50_000_000)
    with pytest.raises(ModelLoadError, match="Not enough memory"):
        small.load(SMOLLM)
    assert need > 1e10
