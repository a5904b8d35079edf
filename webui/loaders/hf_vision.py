"""Images on the transformers loader: a vision-language model folder and its processor.

A folder whose ``config.json`` describes a vision-language model (a ``vision_config``, or a
``model_type`` that transformers maps to ``AutoModelForImageTextToText``) comes with a
processor: the model's tokenizer plus an image processor that turns pictures into
``pixel_values`` and each image placeholder of the text into the run of tokens the image's
embeddings take. :class:`VisionProcessor` wraps that processor for the loader: it turns a
prompt with ``IMAGE_MARKER`` placeholders and its :class:`ImageInput` images into the model's
inputs, and counts the tokens an image takes.

Why the processor and not our own expansion: the number of tokens per image depends on the
model (a fixed count, or tiles by image size) and on its image processor's settings, which only
the processor knows. Calling it once per request keeps the text and the ``pixel_values`` in step.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webui.attachments.types import IMAGE_MARKER, ImageInput
from webui.errors import AttachmentError, UnsupportedFeatureError

log = logging.getLogger(__name__)

#: Processor outputs that are not per-token: fed to the model once, when the image tokens are read.
_TOKEN_KEYS = ("input_ids", "attention_mask")


def is_vision_config(config: dict[str, Any]) -> bool:
    """True for a ``config.json`` of a vision-language model (text in, images in, text out)."""
    if isinstance(config.get("vision_config"), dict):
        return True
    auto_map = config.get("auto_map")
    if isinstance(auto_map, dict) and "AutoModelForImageTextToText" in auto_map:
        return True
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    return config.get("model_type") in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES


def load_processor(path: Path, *, trust_remote_code: bool) -> tuple[Any | None, str]:
    """The folder's image + text processor, or None and why there is none that handles images.

    ``AutoProcessor`` falls back to the bare tokenizer for a folder without processor files
    (a vision model downloaded without its ``preprocessor_config.json``); that is no help with
    images, so it counts as none and the model loads as a text model where transformers can.
    """
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as exc:  # missing files, or a package the processor needs: load it as a text model
        log.debug("AutoProcessor failed on %s", path.name, exc_info=True)
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        log.warning("No usable processor in %s (%s); loading it without images", path.name, reason)
        return None, f"its processor could not be loaded ({reason})"
    if getattr(processor, "image_processor", None) is None or getattr(processor, "tokenizer", None) is None:
        log.warning("The processor of %s handles no images; loading it without images", path.name)
        return None, "its folder has no image processor files (preprocessor_config.json or processor_config.json)"
    return processor, ""


def uses_multimodal_positions(text_config: Any) -> bool:
    """True for models whose positions depend on the images (Qwen-VL's multimodal RoPE).

    Their position ids come from the images' grid in the pass that reads them, so a KV cache
    cannot be continued with plain text positions: the loader then evaluates every prompt whole.
    """
    for name in ("rope_parameters", "rope_scaling"):
        rope = getattr(text_config, name, None)
        if isinstance(rope, dict) and "mrope_section" in rope:
            return True
    return False


@dataclass
class VisionInputs:
    """A prompt with images as the model takes it."""

    #: ``input_ids`` and ``attention_mask`` (1 x tokens), the image placeholders expanded.
    tokens: dict[str, Any]
    #: The other processor outputs (``pixel_values``, ``pixel_attention_mask``, ``image_grid_thw``...).
    media: dict[str, Any]
    #: Digests of the images in order: which pictures the image tokens stand for.
    key: tuple[bytes, ...]

    def on_device(self, model: Any) -> dict[str, Any]:
        """``media`` on the model's device, floating-point tensors (pixel values) in its dtype."""
        device, dtype = model.device, model.dtype
        return {
            k: (v.to(device, dtype=dtype) if v.is_floating_point() else v.to(device)) if hasattr(v, "to") else v
            for k, v in self.media.items()
        }


def per_token(media: dict[str, Any], n_tokens: int) -> bool:
    """True when a processor output has one entry per prompt token (Gemma 3's ``token_type_ids``...).

    Those would have to be cut in step with the tokens when a KV cache is continued.
    """
    for value in media.values():
        shape = getattr(value, "shape", None)
        if shape is not None and len(shape) == 2 and int(shape[0]) == 1 and int(shape[1]) == n_tokens:
            return True
    return False


class VisionProcessor:
    """A model's processor, as the transformers loader uses it (see the module docstring)."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_token: str = getattr(processor, "image_token", None) or "<image>"
        self.image_token_id = _image_token_id(processor, self.tokenizer, self.image_token)
        #: What stands for one image in the text the processor reads (what replaces each marker).
        self.placeholder = image_placeholder(processor, getattr(processor, "boi_token", None) or self.image_token)
        self._sizes: dict[tuple[int, int], int] = {}

    @property
    def chat_template(self) -> str | None:
        template = getattr(self.tokenizer, "chat_template", None) or getattr(self.processor, "chat_template", None)
        return template if isinstance(template, str) and template else None

    def inputs(self, prompt: str, images: Sequence[ImageInput]) -> VisionInputs:
        """The model's inputs for ``prompt`` (one ``IMAGE_MARKER`` per image, in order) and ``images``."""
        markers = prompt.count(IMAGE_MARKER)
        if markers != len(images):
            raise UnsupportedFeatureError(
                f"The prompt has {markers} image marker(s) ({IMAGE_MARKER}) but the request has "
                f"{len(images)} image(s): each image needs exactly one marker where it goes."
            )
        for literal in {self.placeholder, self.image_token}:
            if literal and literal in prompt:
                raise UnsupportedFeatureError(
                    f"The prompt contains this model's image token {literal!r} as text. Images are "
                    f"placed with {IMAGE_MARKER} markers; remove {literal!r} from the text."
                )
        text = prompt.replace(IMAGE_MARKER, self.placeholder)
        out = self._run(text, [decode(image) for image in images])
        tokens = {k: out[k] for k in _TOKEN_KEYS if k in out}
        if "attention_mask" not in tokens:
            import torch

            tokens["attention_mask"] = torch.ones_like(tokens["input_ids"])
        media = {k: v for k, v in out.items() if k not in _TOKEN_KEYS}
        return VisionInputs(tokens, media, tuple(hashlib.sha256(image.data).digest() for image in images))

    def count_images(self, ids: list[int]) -> int:
        """Image tokens among ``ids`` (0 when the model's image token is unknown)."""
        return ids.count(self.image_token_id) if self.image_token_id is not None else 0

    def keeps_images(self, whole: list[int], kept: list[int]) -> bool:
        """True when the cut prompt ``kept`` still holds every image token of ``whole``."""
        return self.image_token_id is not None and self.count_images(kept) == self.count_images(whole)

    def image_tokens(self, image: ImageInput) -> int:
        """Prompt tokens one image of this size takes (its placeholder expanded), cached per size."""
        width, height = image.width, image.height
        if width <= 0 or height <= 0:
            width, height = decode(image).size
        size = (width, height)
        if size not in self._sizes:
            from PIL import Image

            blank = Image.new("RGB", size)
            with_image = int(self._run(self.placeholder, [blank])["input_ids"].shape[-1])
            empty = len(self.tokenizer("", add_special_tokens=True)["input_ids"])  # BOS and the like
            self._sizes[size] = max(0, with_image - empty)
        return self._sizes[size]

    def _run(self, text: str, images: list[Any]) -> Any:
        try:
            return self.processor(text=text, images=images, return_tensors="pt", add_special_tokens=True)
        except (ValueError, TypeError, RuntimeError) as exc:
            raise UnsupportedFeatureError(f"The model's processor could not take the images: {exc}") from exc


def decode(image: ImageInput) -> Any:
    """The image as an RGB ``PIL.Image`` (what image processors expect; alpha and palettes dropped)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(image.data)) as opened:
            return opened.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        name = f" {image.name}" if image.name else ""
        raise AttachmentError(f"The image{name} could not be decoded ({exc}); attach a PNG, JPEG or WebP.") from exc


def image_placeholder(processor: Any, fallback: str) -> str:
    """The text that stands for one image, as the model's own chat template writes it.

    Usually the processor's ``image_token`` (``<image>``), but not always: Gemma 3 writes
    ``<start_of_image>`` and its processor expands that; Qwen-VL writes
    ``<|vision_start|><|image_pad|><|vision_end|>``. The template is rendered for one message
    with and without an image part, and what the image adds is taken if it is made of special
    tokens only; otherwise (no template, or one that writes more) ``fallback``: the processor's
    ``boi_token`` (Gemma) or ``image_token``.
    """
    template = getattr(processor, "chat_template", None)
    if not isinstance(template, str) or not template:
        return fallback
    text_part = {"type": "text", "text": "Hello"}
    try:
        plain = processor.apply_chat_template([{"role": "user", "content": [text_part]}], tokenize=False)
        with_image = processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, text_part]}], tokenize=False
        )
    except Exception:  # a template that needs more (a system message, a date...): use the token
        log.debug("Could not render the chat template to find its image placeholder", exc_info=True)
        return fallback
    if not isinstance(plain, str) or not isinstance(with_image, str):
        return fallback
    start = 0
    while start < min(len(plain), len(with_image)) and plain[start] == with_image[start]:
        start += 1
    end = 0
    while end < min(len(plain), len(with_image)) - start and plain[-1 - end] == with_image[-1 - end]:
        end += 1
    added = with_image[start : len(with_image) - end].strip()
    tokenizer = processor.tokenizer
    special = set(getattr(tokenizer, "all_special_tokens", ())) | set(tokenizer.get_added_vocab())
    pieces = tokenizer.convert_ids_to_tokens(tokenizer(added, add_special_tokens=False)["input_ids"]) if added else []
    if pieces and all(p in special for p in pieces) and "".join(pieces) == added:
        return added
    return fallback


def _image_token_id(processor: Any, tokenizer: Any, image_token: str) -> int | None:
    token_id = getattr(processor, "image_token_id", None)
    if isinstance(token_id, int):
        return token_id
    converted = tokenizer.convert_tokens_to_ids(image_token)
    return converted if isinstance(converted, int) and converted != tokenizer.unk_token_id else None
