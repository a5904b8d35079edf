"""A tiny random-weight vision-language model for the tests: a transformers folder and its GGUFs.

No model hub is reachable from the test machines, and the smallest real vision models are
hundreds of megabytes, so the vision tests run on a model we make: a SmolVLM / Idefics3
(a SigLIP-style vision encoder, a pixel-shuffle connector and a Llama text model) with a few
MB of random weights drawn from a fixed seed. Its answers are nonsense, but it takes images
the way real SmolVLM does, so everything around the model (processor, chat template,
projector, prompt positions, caching) is exercised for real.

- :func:`ensure_tiny_vlm_hf`: a transformers folder (``config.json`` + ``model.safetensors``
  + the SmolLM2 tokenizer with the image tokens + an ``Idefics3Processor`` + a chat template
  that takes image content parts). ``AutoProcessor.from_pretrained`` and
  ``AutoModelForImageTextToText.from_pretrained`` read it.
- :func:`ensure_tiny_vlm_gguf`: that folder converted by llama.cpp's own
  ``convert_hf_to_gguf.py`` (the one vendored in llama-cpp-python's sdist, so the GGUF matches
  the llama.cpp we run) into the text model and its vision projector (``mmproj``).

Both are written to a temporary folder next to the target and renamed into place in one step,
so a folder that exists is always complete. They live in the same cache as
``tests/hf_checkpoint.py`` (``$WEBUI_TEST_CACHE`` or ``~/.cache/localllm-webui/test-models``).

Run it by hand with ``python tests/vlm_models.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from hf_checkpoint import (
    atomic_folder,
    default_cache_dir,
    default_checkpoint_dir,
    ensure_hf_checkpoint,
)
from testdata import MODELS_DIR, SMOLLM

HF_NAME = "tiny-smolvlm-random-hf"
GGUF_NAME = "tiny-smolvlm-gguf"
MODEL_FILE = "tiny-smolvlm-F16.gguf"
MMPROJ_FILE = "mmproj-tiny-smolvlm-F16.gguf"
#: The llama-cpp-python release whose vendored llama.cpp converts the model (the one we run).
LLAMA_CPP_PYTHON = "0.3.36"
SEED = 1234

#: Image side in pixels and patch side: 8 x 8 patches, merged 2 x 2 by the connector, so an
#: image is 16 embeddings in the prompt (plus the few tokens around it).
IMAGE_SIZE = 128
PATCH_SIZE = 16
SCALE_FACTOR = 2
IMAGE_SEQ_LEN = (IMAGE_SIZE // PATCH_SIZE) ** 2 // SCALE_FACTOR**2

#: The tokens Idefics3's processor and llama.cpp's libmtmd put around an image.
IMAGE_TOKENS = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"] + [
    f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)
]

#: ChatML (SmolLM2's format); a message's content is a string or a list of parts, and an image
#: part becomes ``<image>``, which the processor expands to the image's tokens.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] in ('image', 'image_url') -%}{{- '<image>' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def default_hf_dir() -> Path:
    return default_cache_dir() / HF_NAME


def default_gguf_dir() -> Path:
    return default_cache_dir() / GGUF_NAME


def hf_is_complete(folder: Path) -> bool:
    return all((folder / f).is_file() for f in ("config.json", "model.safetensors", "processor_config.json"))


def gguf_files(folder: Path) -> tuple[Path, Path]:
    return folder / MODEL_FILE, folder / MMPROJ_FILE


def gguf_is_complete(folder: Path) -> bool:
    return all(f.is_file() and f.stat().st_size > 0 for f in gguf_files(folder))


def ensure_tiny_vlm_hf(out_dir: Path | None = None) -> Path:
    """Return the transformers folder of the tiny vision model, making it first if needed (~10 s)."""
    out = Path(out_dir) if out_dir is not None else default_hf_dir()
    return atomic_folder(out, hf_is_complete, _make_hf)


def ensure_tiny_vlm_gguf(out_dir: Path | None = None) -> tuple[Path, Path]:
    """Return (model GGUF, projector GGUF) of the tiny vision model, converting it first if needed.

    The transformers folder (:func:`ensure_tiny_vlm_hf`) is made first if it is missing; the
    converter comes from llama-cpp-python's sdist (downloaded into the cache once).
    """
    out = Path(out_dir) if out_dir is not None else default_gguf_dir()
    atomic_folder(out, gguf_is_complete, lambda dest: _convert(ensure_tiny_vlm_hf(), dest))
    return gguf_files(out)


def _smollm_tokenizer_dir() -> Path:
    """The SmolLM2 transformers folder (SmolVLM uses SmolLM2's tokenizer)."""
    folder = default_checkpoint_dir()
    if (folder / "tokenizer.json").is_file():
        return folder
    return ensure_hf_checkpoint(MODELS_DIR / SMOLLM, folder)


def _make_hf(dest: Path) -> None:
    import torch
    from tokenizers import AddedToken
    from transformers import (
        AutoModelForImageTextToText,
        AutoProcessor,
        AutoTokenizer,
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessor,
        Idefics3Processor,
    )

    tokenizer = AutoTokenizer.from_pretrained(_smollm_tokenizer_dir())
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in IMAGE_TOKENS])
    tokenizer.chat_template = CHAT_TEMPLATE
    vocab = len(tokenizer)
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")

    text_config = {
        "model_type": "llama",
        # Named so llama.cpp's converter picks its Llama text model for the language part.
        "architectures": ["VLlama3ForCausalLM"],
        "vocab_size": vocab,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5,
        "rope_theta": 100000.0,
        "tie_word_embeddings": True,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    vision_config = {
        "model_type": "idefics3_vision",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": IMAGE_SIZE,
        "patch_size": PATCH_SIZE,
    }
    config = Idefics3Config(
        text_config=text_config,
        vision_config=vision_config,
        scale_factor=SCALE_FACTOR,
        image_token_id=image_token_id,
        tie_word_embeddings=True,
        architectures=["Idefics3ForConditionalGeneration"],
    )
    torch.manual_seed(SEED)
    model = Idefics3ForConditionalGeneration(config).to(torch.float32).eval()
    # Random weights at the usual 0.02 scale make every logit almost equal; wider ones give the
    # model preferences, so different images lead to visibly different next-token distributions.
    with torch.no_grad():
        generator = torch.Generator().manual_seed(SEED)
        for _, param in sorted(model.named_parameters()):
            if param.dim() >= 2:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)

    image_processor = Idefics3ImageProcessor(
        do_resize=True,
        size={"longest_edge": IMAGE_SIZE},
        max_image_size={"longest_edge": IMAGE_SIZE},
        do_image_splitting=False,
    )
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=IMAGE_SEQ_LEN,
        chat_template=CHAT_TEMPLATE,
    )
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(dest, safe_serialization=True)
    processor.save_pretrained(dest)

    # Check what we wrote reads back the way the tests use it.
    AutoProcessor.from_pretrained(dest)
    AutoModelForImageTextToText.from_pretrained(dest)


def converter_dir() -> Path:
    """llama.cpp's ``convert_hf_to_gguf.py`` with what it imports, from llama-cpp-python's sdist."""
    cache = default_cache_dir()
    target = cache / f"llama-cpp-converter-{LLAMA_CPP_PYTHON}"
    return atomic_folder(target, lambda d: (d / "convert_hf_to_gguf.py").is_file(), _extract_converter)


def _extract_converter(dest: Path) -> None:
    """Download llama-cpp-python's sdist (about 75 MB, 40 s) and keep only the converter's files."""
    download = dest / ".sdist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"llama-cpp-python=={LLAMA_CPP_PYTHON}",
            "-d",
            str(download),
        ],
        check=True,
    )
    sdist = download / f"llama_cpp_python-{LLAMA_CPP_PYTHON}.tar.gz"
    if not sdist.is_file():
        raise RuntimeError(f"pip download did not leave {sdist.name} in {download}")
    prefix = f"llama_cpp_python-{LLAMA_CPP_PYTHON}/vendor/llama.cpp/"
    wanted = ("convert_hf_to_gguf.py", "gguf-py/", "conversion/")
    with tarfile.open(sdist) as tar:
        members = []
        for member in tar.getmembers():
            rel = member.name[len(prefix) :] if member.name.startswith(prefix) else ""
            if rel and rel.startswith(wanted) and (member.isfile() or member.isdir()):
                member.name = rel
                members.append(member)
        tar.extractall(dest, members=members, filter="data")
    shutil.rmtree(download)


def _convert(hf_dir: Path, dest: Path) -> None:
    converter = converter_dir()
    env = dict(os.environ)
    # The converter's own gguf-py: it may write keys newer than the gguf package installed.
    env["PYTHONPATH"] = os.pathsep.join([str(converter / "gguf-py"), str(converter)])
    env.setdefault("HF_HUB_OFFLINE", "1")
    model, mmproj = gguf_files(dest)
    base = [sys.executable, str(converter / "convert_hf_to_gguf.py"), str(hf_dir), "--outtype", "f16"]
    for extra, out in (([], model), (["--mmproj"], mmproj)):
        result = subprocess.run(
            [*base, *extra, "--outfile", str(out)], env=env, capture_output=True, text=True, cwd=dest
        )
        if result.returncode != 0 or not out.is_file():
            raise RuntimeError(f"convert_hf_to_gguf.py {' '.join(extra)} failed:\n{result.stderr[-4000:]}")
    (dest / "source.json").write_text(
        json.dumps({"from": HF_NAME, "converter": f"llama-cpp-python {LLAMA_CPP_PYTHON}"}) + "\n"
    )


if __name__ == "__main__":
    start = time.perf_counter()
    print(ensure_tiny_vlm_hf(), f"({time.perf_counter() - start:.1f} s)")
    start = time.perf_counter()
    print(*ensure_tiny_vlm_gguf(), f"({time.perf_counter() - start:.1f} s)")
