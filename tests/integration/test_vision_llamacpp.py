"""Images on the llama.cpp loader: the tiny SmolVLM GGUF and its projector (tests/vlm_models.py).

The model's weights are random, so its words mean nothing; what is checked is that an image
reaches the model (its tokens are counted, different pictures change the next-token
distribution, the same picture gives the same answer) and that the cache stays honest around
images (a prompt after an image prompt answers as on a fresh model).
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from PIL import Image, ImageColor

from vlm_models import ensure_tiny_vlm_gguf
from webui.attachments.types import IMAGE_MARKER, ImageInput
from webui.errors import AttachmentError, ModelLoadError, PromptTooLongError, UnsupportedFeatureError
from webui.loaders.base import Chunk, StreamExtras
from webui.loaders.llamacpp import LlamaCppBackend, find_projectors
from webui.loaders.mtmd import Projector, placeholder, resolve_projector
from webui.params import LoadOptions, SamplingParams

pytestmark = pytest.mark.integration
GREEDY = SamplingParams(do_sample=False, max_tokens=6, seed=1)
OPTIONS = LoadOptions(n_ctx=1024, threads=2)
ASK = f"<|im_start|>user\n{IMAGE_MARKER}What is in the picture?<|im_end|>\n<|im_start|>assistant\n"


def picture(color: str, size: tuple[int, int] = (96, 64), stripe: str | None = None) -> ImageInput:
    image = Image.new("RGB", size, color)
    if stripe:
        image.paste(ImageColor.getrgb(stripe), (size[0] // 3, 0, size[0] // 2, size[1]))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return ImageInput(buf.getvalue(), "image/png", size[0], size[1], name=f"{color}.png")


RED, BLUE = picture("red"), picture("navy", stripe="yellow")


@pytest.fixture(scope="module")
def vlm_files() -> tuple[Path, Path]:
    return ensure_tiny_vlm_gguf()


@pytest.fixture(scope="module")
def vlm(vlm_files):
    backend = LlamaCppBackend.load(vlm_files[0], OPTIONS)
    yield backend
    backend.close()


def run(backend, prompt: str, images=(), params: SamplingParams = GREEDY, **extras) -> tuple[str, list[Chunk]]:
    chunks = list(backend.stream(prompt, params, threading.Event(), StreamExtras(images=tuple(images), **extras)))
    return "".join(c.text for c in chunks), chunks


def prompt_tokens(backend, prompt: str, images) -> int:
    count = run(backend, prompt, images)[1][-1].prompt_tokens
    assert count is not None
    return count


def first_distribution(chunks: list[Chunk]) -> dict[str, float]:
    entries = [e for c in chunks for e in (c.logprobs or [])]
    return {t.token: t.logprob for t in entries[0].top}


def test_projector_found_next_to_the_model(vlm, vlm_files):
    model, mmproj = vlm_files
    assert find_projectors(model) == [mmproj]
    assert vlm.capabilities.images and not LlamaCppBackend.capabilities.images  # per instance only
    assert vlm.metadata["vision"] == "yes" and vlm.metadata["vision.projector"] == mmproj.name


def test_an_image_counts_its_tokens_in_the_prompt(vlm):
    per_image = vlm.image_tokens(RED)
    assert per_image > 16  # 16 embeddings per 128 px tile, plus the model's image tokens around them
    assert vlm.image_tokens(RED) == per_image  # cached

    _, chunks = run(vlm, ASK, [RED])
    before, after = ASK.split(IMAGE_MARKER)
    text_tokens = len(vlm.tokenize(before)) + len(vlm.tokenize(after)) - len(vlm.tokenize(""))
    assert chunks[-1].prompt_tokens == text_tokens + per_image

    # the chat layer's estimate: the prompt with its markers as text, each marker counted as the image
    marker = len(vlm.tokenize(IMAGE_MARKER)) - len(vlm.tokenize(""))
    assert len(vlm.tokenize(ASK)) - marker + per_image == chunks[-1].prompt_tokens

    _, two = run(vlm, ASK.replace(IMAGE_MARKER, IMAGE_MARKER + " and " + IMAGE_MARKER), [RED, BLUE])
    and_tokens = len(vlm.tokenize(" and ")) - len(vlm.tokenize(""))
    assert two[-1].prompt_tokens == text_tokens + and_tokens + per_image + vlm.image_tokens(BLUE)


def test_different_images_give_different_next_token_distributions(vlm):
    _, red = run(vlm, ASK, [RED], top_logprobs=5)
    _, blue = run(vlm, ASK, [BLUE], top_logprobs=5)
    assert first_distribution(red) != first_distribution(blue)


def test_the_same_image_gives_the_same_answer_cached_or_not(vlm, vlm_files):
    text_a, a = run(vlm, ASK, [RED], top_logprobs=5)
    text_b, b = run(vlm, ASK, [RED], top_logprobs=5)  # the image's cache entries are reused
    assert text_a == text_b and first_distribution(a) == first_distribution(b)
    seeded = SamplingParams(temperature=1.0, max_tokens=8, seed=77)
    assert run(vlm, ASK, [BLUE], seeded)[0] == run(vlm, ASK, [BLUE], seeded)[0]


def test_a_chat_about_a_picture_reuses_the_encoded_image(vlm, vlm_files, monkeypatch):
    """The next turn of a chat evaluates only what is new, and answers as a fresh model does."""
    turn2 = ASK + f"A red square.<|im_end|>\n<|im_start|>user\nAnd {IMAGE_MARKER}?<|im_end|>\n<|im_start|>assistant\n"
    run(vlm, ASK, [RED])
    evaluated: list[int] = []
    real = Projector.eval_image

    def counting(self, llm, piece, logits_last):
        evaluated.append(piece.ids[0])
        return real(self, llm, piece, logits_last)

    monkeypatch.setattr(Projector, "eval_image", counting)
    text, chunks = run(vlm, turn2, [RED, BLUE], top_logprobs=5)
    monkeypatch.undo()
    assert evaluated and set(evaluated) == {placeholder(BLUE)}  # the red picture came from the cache

    fresh = LlamaCppBackend.load(vlm_files[0], OPTIONS)
    try:
        fresh_text, fresh_chunks = run(fresh, turn2, [RED, BLUE], top_logprobs=5)
    finally:
        fresh.close()
    assert text == fresh_text and first_distribution(chunks) == first_distribution(fresh_chunks)


def test_a_text_prompt_after_an_image_prompt_answers_as_on_a_fresh_model(vlm, vlm_files):
    # the text shares its start with the image prompt, so a careless prefix match would reuse image cells
    text_prompt = (
        "<|im_start|>user\n<fake_token_around_image>What is in the picture?<|im_end|>\n<|im_start|>assistant\n"
    )
    run(vlm, ASK, [BLUE])
    after_image, chunks = run(vlm, text_prompt, top_logprobs=5)
    fresh = LlamaCppBackend.load(vlm_files[0], OPTIONS.model_copy(update={"mmproj": "none"}))
    try:
        assert not fresh.capabilities.images and fresh.metadata["vision"] == "no"
        fresh_text, fresh_chunks = run(fresh, text_prompt, top_logprobs=5)
    finally:
        fresh.close()
    assert after_image == fresh_text and first_distribution(chunks) == first_distribution(fresh_chunks)
    assert chunks[-1].prompt_tokens == fresh_chunks[-1].prompt_tokens == len(vlm.tokenize(text_prompt))


def test_marker_count_must_match_the_images(vlm):
    with pytest.raises(UnsupportedFeatureError, match="1 image marker.*2 image"):
        run(vlm, ASK, [RED, BLUE])
    with pytest.raises(UnsupportedFeatureError, match="0 image marker.*1 image"):
        run(vlm, "<|im_start|>user\nHi<|im_end|>\n", [RED])
    with pytest.raises(UnsupportedFeatureError, match="echo"):
        run(vlm, ASK, [RED], echo_logprobs=True)
    assert run(vlm, ASK, [RED])[0]  # and the backend still works


def test_an_image_that_does_not_decode_is_refused(vlm):
    broken = ImageInput(b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "image/png", 10, 10, name="broken.png")
    with pytest.raises(AttachmentError, match="broken.png"):
        run(vlm, ASK, [broken])
    assert run(vlm, ASK, [RED])[0]


def test_prompt_limits_never_cut_through_an_image(vlm):
    full = prompt_tokens(vlm, ASK, [RED])
    # a cut inside the text before the image is fine (the BOS token stays) ...
    long_start = "<|im_start|>system\n" + "Look closely. " * 20 + "<|im_end|>\n" + ASK
    whole = prompt_tokens(vlm, long_start, [RED])
    limit = whole - 10
    _, chunks = run(vlm, long_start, [RED], GREEDY.model_copy(update={"truncation_length": limit}))
    assert chunks[-1].prompt_tokens == limit and chunks[-1].prompt_cut == 10
    # ... a cut that would reach the image is refused
    with pytest.raises(PromptTooLongError):
        run(vlm, ASK, [RED], GREEDY.model_copy(update={"truncation_length": full - 5}))
    # and images beyond the context
    many = 1 + vlm.n_ctx // vlm.image_tokens(RED)
    with pytest.raises(PromptTooLongError):
        run(vlm, IMAGE_MARKER * many, [RED] * many)
    assert run(vlm, ASK, [RED])[0]


def test_cancel_before_the_first_token(vlm):
    cancel = threading.Event()
    cancel.set()
    chunks = list(vlm.stream(ASK, GREEDY, cancel, StreamExtras(images=(RED,))))
    assert chunks[-1].finish_reason == "cancelled" and chunks[-1].prompt_tokens > 16


def test_text_model_refuses_images_clearly(smollm_path):
    backend = LlamaCppBackend.load(smollm_path, LoadOptions(n_ctx=512, threads=2))
    try:
        assert not backend.capabilities.images and backend.image_tokens(RED) == 0
        with pytest.raises(UnsupportedFeatureError, match="without a vision projector"):
            run(backend, ASK, [RED])
    finally:
        backend.close()


@pytest.fixture
def model_folder(tmp_path, vlm_files, smollm_path) -> Path:
    """A models folder with the vision model, its projector and a text model."""
    for p in (*vlm_files, smollm_path):
        (tmp_path / p.name).symlink_to(p)
    return tmp_path


def test_projector_choices(model_folder, vlm_files, smollm_path):
    model, mmproj = model_folder / vlm_files[0].name, model_folder / vlm_files[1].name
    text_model = model_folder / smollm_path.name
    assert find_projectors(model) == [mmproj] == find_projectors(text_model)
    assert resolve_projector(model, "") == (mmproj, "")  # named like the model
    picked, note = resolve_projector(text_model, "")  # in a shared folder, not named like it: no guess
    assert picked is None and "several models" in note
    assert resolve_projector(model, "none") == (None, "")
    assert resolve_projector(model, mmproj.name) == (mmproj, "")
    assert resolve_projector(model, str(mmproj)) == (mmproj, "")
    with pytest.raises(ModelLoadError, match="not in the model's folder"):
        resolve_projector(model, "mmproj-other.gguf")
    with pytest.raises(ModelLoadError, match="file name"):
        resolve_projector(model, "../" + mmproj.name)
    with pytest.raises(ModelLoadError, match="not a vision projector"):
        resolve_projector(model, text_model.name)
    outside = model_folder / "a" / "b"
    outside.mkdir(parents=True)
    (outside / "mmproj-x.gguf").symlink_to(vlm_files[1])
    with pytest.raises(ModelLoadError, match="not in the model's folder"):
        resolve_projector(model, str(outside / "mmproj-x.gguf"))


def test_load_refuses_bad_projector_choices_before_reading_the_model(model_folder, vlm_files, smollm_path):
    model, mmproj = model_folder / vlm_files[0].name, model_folder / vlm_files[1].name
    missing = OPTIONS.model_copy(update={"mmproj": "mmproj-missing.gguf"})
    with pytest.raises(ModelLoadError, match="mmproj-missing.gguf"):
        LlamaCppBackend.check(model, missing)
    with pytest.raises(ModelLoadError, match="mmproj-missing.gguf"):
        LlamaCppBackend.load(model, missing)
    # the projector itself picked as the model, by its usual name or by its header under any name
    renamed = model_folder / "vision-adapter.gguf"
    renamed.symlink_to(vlm_files[1])
    for projector in (mmproj, renamed):
        for call in (LlamaCppBackend.check, LlamaCppBackend.load):
            with pytest.raises(ModelLoadError, match="vision projector.*Load the model next to it"):
                call(projector, OPTIONS)
    assert find_projectors(model) == [mmproj, renamed]


def test_a_projector_made_for_another_model_is_a_clear_load_error(model_folder, vlm_files, smollm_path):
    text_model = model_folder / smollm_path.name
    options = LoadOptions(n_ctx=256, threads=2, mmproj=vlm_files[1].name)
    with pytest.raises(ModelLoadError, match=r"could not be loaded: .*n_embd.*another model"):
        LlamaCppBackend.load(text_model, options)
    # the text model loads without it, as the auto choice found none named like it
    backend = LlamaCppBackend.load(text_model, LoadOptions(n_ctx=256, threads=2))
    try:
        assert not backend.capabilities.images and "several models" in backend.metadata["vision.note"]
    finally:
        backend.close()
