"""Images on the transformers loader, on a real (tiny, random-weight) SmolVLM / Idefics3 folder.

The model's answers are nonsense, but it reads images the way SmolVLM does: its processor turns
each image into pixel values and its placeholder into the image's tokens, and the model's
next-token distribution depends on the pixels. So these tests check what the loader does with
images (loading, token counts, the pixels reaching the model, the KV cache, refusals) for real.
The vision model is loaded once for the module; generations are a few tokens long.
"""

from __future__ import annotations

import io
import random
import shutil
import threading
from typing import Any

import pytest
from PIL import Image

from vlm_models import IMAGE_SEQ_LEN, ensure_tiny_vlm_hf
from webui.attachments.types import IMAGE_MARKER, ImageInput
from webui.errors import ModelLoadError, PromptTooLongError, UnsupportedFeatureError
from webui.loaders import infer_loader
from webui.loaders.base import Chunk, StreamExtras
from webui.loaders.transformers import TransformersBackend
from webui.params import LoadOptions, SamplingParams

pytestmark = pytest.mark.integration

GREEDY = SamplingParams(do_sample=False, max_tokens=6)
BEFORE = "<|im_start|>user\n"
AFTER = "What is in this picture?<|im_end|>\n<|im_start|>assistant\n"
PROMPT = BEFORE + IMAGE_MARKER + AFTER
#: Idefics3 without image splitting: ``<fake_token_around_image><global-img>``, the image's
#: embeddings, ``<fake_token_around_image>``.
TOKENS_PER_IMAGE = IMAGE_SEQ_LEN + 3


def picture(seed: int, size: tuple[int, int] = (96, 64), fmt: str = "PNG") -> ImageInput:
    """A noise picture (different seeds give different pixels), encoded as a real image file."""
    rng = random.Random(seed)
    img = Image.new("RGB", size)
    img.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(size[0] * size[1])])
    buf = io.BytesIO()
    img.save(buf, fmt)
    return ImageInput(buf.getvalue(), f"image/{fmt.lower()}", size[0], size[1], name=f"noise-{seed}.{fmt.lower()}")


RED_NOISE = picture(1)
BLUE_NOISE = picture(2, (160, 120), "JPEG")


@pytest.fixture(scope="module")
def vlm() -> TransformersBackend:
    path = ensure_tiny_vlm_hf()
    backend = TransformersBackend.load(path, LoadOptions(n_ctx=1024))
    yield backend
    backend.close()


def run(
    backend: TransformersBackend,
    prompt: str,
    images: tuple[ImageInput, ...],
    params: SamplingParams = GREEDY,
    **extras: Any,
) -> tuple[str, list[Chunk]]:
    chunks = list(backend.stream(prompt, params, threading.Event(), StreamExtras(images=images, **extras)))
    return "".join(c.text for c in chunks), chunks


def test_vision_folder_loads_with_its_processor_and_sees_images(vlm):
    assert infer_loader(vlm.path) == "transformers"
    assert vlm.capabilities.images
    assert not TransformersBackend.capabilities.images  # per loaded model, never the class
    assert vlm.capabilities.grammar and vlm.capabilities.logprobs  # kept from the class
    # The chat template and tokenizer are the processor's (SmolLM2's ChatML with the image tokens).
    assert "<|im_start|>" in (vlm.chat_template or "")
    assert vlm.tokenize("<image>") == [vlm._vision.image_token_id]


def test_image_tokens_are_counted_in_the_prompt(vlm):
    assert vlm.image_tokens(RED_NOISE) == TOKENS_PER_IMAGE
    assert vlm.image_tokens(BLUE_NOISE) == TOKENS_PER_IMAGE  # this processor resizes every image alike
    text, chunks = run(vlm, PROMPT, (RED_NOISE,))
    last = chunks[-1]
    assert last.finish_reason in ("stop", "length") and text
    expected = len(vlm.tokenize(BEFORE)) + vlm.image_tokens(RED_NOISE) + len(vlm.tokenize(AFTER))
    assert last.prompt_tokens == expected
    # Two images: two runs of image tokens.
    two = BEFORE + IMAGE_MARKER + "and" + IMAGE_MARKER + AFTER
    _, chunks = run(vlm, two, (RED_NOISE, BLUE_NOISE))
    assert chunks[-1].prompt_tokens == expected + TOKENS_PER_IMAGE + len(vlm.tokenize("and"))


def first_top(chunks: list[Chunk]) -> dict[str, float]:
    entries = [e for c in chunks for e in (c.logprobs or [])]
    assert entries, "no logprobs came back"
    return {t.token: t.logprob for t in entries[0].top}


def test_the_pixels_reach_the_model(vlm):
    """Same text, different pictures: a different next-token distribution."""
    _, red = run(vlm, PROMPT, (RED_NOISE,), top_logprobs=5)
    _, blue = run(vlm, PROMPT, (BLUE_NOISE,), top_logprobs=5)
    red_top, blue_top = first_top(red), first_top(blue)
    assert len(red_top) == len(blue_top) == 5
    assert red_top != pytest.approx(blue_top, abs=1e-3)


def test_same_image_gives_the_same_greedy_reply_and_the_cache_never_mixes_images(vlm):
    first, chunks1 = run(vlm, PROMPT, (RED_NOISE,), top_logprobs=5)
    again, chunks2 = run(vlm, PROMPT, (RED_NOISE,), top_logprobs=5)
    assert again == first
    # The second run continued the first's KV cache, image tokens included.
    assert vlm.reused_tokens == chunks2[-1].prompt_tokens - 1
    # A different picture has the same image token ids: the cache must not stand in for its pixels.
    other, _ = run(vlm, PROMPT, (BLUE_NOISE,))
    assert vlm.reused_tokens < len(vlm.tokenize(BEFORE)) + 3  # only the text before the image's tokens
    back, chunks3 = run(vlm, PROMPT, (RED_NOISE,), top_logprobs=5)
    assert back == first
    assert first_top(chunks3) == pytest.approx(first_top(chunks1), abs=1e-4)
    # Cache off: the whole prompt with its pixels in generate's first pass, same reply.
    vlm.reuse_cache = False
    try:
        fresh, _ = run(vlm, PROMPT, (RED_NOISE,))
    finally:
        del vlm.reuse_cache
    assert fresh == first


def test_a_chat_continues_about_its_image(vlm):
    """The next turn holds the same image: its tokens come from the cache, only new text is read."""
    reply, _ = run(vlm, PROMPT, (RED_NOISE,))
    turn2 = PROMPT + reply + "<|im_end|>\n<|im_start|>user\nAnd the colours?<|im_end|>\n<|im_start|>assistant\n"
    text, chunks = run(vlm, turn2, (RED_NOISE,))
    assert text and vlm.reused_tokens >= chunks[-1].prompt_tokens - 20


def test_text_prompts_still_work_on_a_vision_model(vlm):
    prompt = "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
    text, chunks = run(vlm, prompt, ())
    assert text and chunks[-1].prompt_tokens == len(vlm.tokenize(prompt))


def test_grammar_still_applies_with_an_image(vlm):
    params = SamplingParams(do_sample=False, max_tokens=5, grammar_string='root ::= "yes" | "no"')
    text, _ = run(vlm, PROMPT, (RED_NOISE,), params)
    assert text in ("yes", "no")


def test_marker_count_must_match_the_images(vlm):
    with pytest.raises(UnsupportedFeatureError, match=r"2 image marker\(s\).*1 image\(s\)"):
        run(vlm, BEFORE + IMAGE_MARKER + IMAGE_MARKER + AFTER, (RED_NOISE,))
    with pytest.raises(UnsupportedFeatureError, match=r"0 image marker\(s\).*1 image\(s\)"):
        run(vlm, BEFORE + AFTER, (RED_NOISE,))


def test_image_token_typed_as_text_is_refused(vlm):
    with pytest.raises(UnsupportedFeatureError, match="image token '<image>' as text"):
        run(vlm, BEFORE + "<image>" + IMAGE_MARKER + AFTER, (RED_NOISE,))


def test_echo_with_images_is_refused(vlm):
    with pytest.raises(UnsupportedFeatureError, match="echo"):
        run(vlm, PROMPT, (RED_NOISE,), echo_logprobs=True, top_logprobs=0)


def test_truncation_never_cuts_into_an_image(vlm):
    long_text = "Some words before the picture. " * 12
    prompt = BEFORE + long_text + IMAGE_MARKER + AFTER
    keep_image = len(vlm.tokenize(AFTER)) + TOKENS_PER_IMAGE + 4
    _, chunks = run(
        vlm, prompt, (RED_NOISE,), SamplingParams(do_sample=False, max_tokens=2, truncation_length=keep_image)
    )
    assert chunks[-1].prompt_tokens == keep_image and chunks[-1].prompt_cut > 0
    with pytest.raises(PromptTooLongError):
        run(vlm, prompt, (RED_NOISE,), SamplingParams(do_sample=False, max_tokens=2, truncation_length=keep_image - 10))


def test_a_text_only_model_refuses_images(hf_checkpoint):
    backend = TransformersBackend.load(hf_checkpoint, LoadOptions(n_ctx=512))
    try:
        assert not backend.capabilities.images
        assert backend.image_tokens(RED_NOISE) == 0
        with pytest.raises(UnsupportedFeatureError, match="text-only model: it cannot see images"):
            run(backend, PROMPT, (RED_NOISE,))
    finally:
        backend.close()


def test_a_vision_folder_without_its_processor_says_so(tmp_path):
    folder = tmp_path / "vlm-no-processor"
    shutil.copytree(ensure_tiny_vlm_hf(), folder)
    (folder / "processor_config.json").unlink()
    with pytest.raises(ModelLoadError, match="is a vision-language model, but its processor could not be loaded"):
        TransformersBackend.load(folder, LoadOptions(n_ctx=512))
