"""TavernAI / SillyTavern character cards: read and write them as PNG or JSON.

Formats read:
- a PNG picture with the card as base64 JSON in a text chunk: ``ccv3`` (V3, preferred when
  present) or ``chara`` (V1/V2);
- JSON cards: V1 (``name, description, personality, scenario, first_mes, mes_example`` at the
  top), V2 (``spec: chara_card_v2`` + ``data``) and V3 (``spec: chara_card_v3`` + ``data``);
- Pygmalion-style JSON (``char_name, char_persona, world_scenario, example_dialogue,
  char_greeting``) and text-generation-webui's ``name/greeting/context`` YAML or JSON.

Formats written: a V2 card as JSON, and a PNG carrying both ``chara`` (V2) and ``ccv3`` (V3),
which is what SillyTavern itself writes.

Everything is bounded before it is decoded: the file size, the text chunk size (also after
decompression), the picture's pixel count (read from the header, before any pixel is decoded),
the nesting depth (checked on the text before it is parsed, and on the parsed data before
any recursive code sees it) and the lorebook's entry count (see :mod:`webui.lorebook`).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import struct
import zlib
from pathlib import Path
from typing import IO, Any

import yaml

from webui.characters.character import Character, character_from_mapping
from webui.errors import CardError

MAX_CARD_BYTES = 16 * 2**20
#: The card's JSON text (a big lorebook makes a big card, a picture does not).
MAX_CARD_TEXT = 8 * 2**20
#: Pictures beyond this are skipped (with a warning) without decoding their pixels.
MAX_PICTURE_PIXELS = 4096 * 4096
#: The stored picture is scaled down to fit this (it is shown as a small avatar).
PICTURE_SIDE = 1024
#: Deepest nesting of objects and lists in a card. Real cards stay near 10 (a lorebook entry's own
#: extensions); hundreds of levels would overflow the recursive code that handles a card later
#: (pydantic, the YAML and JSON writers, the page), so such a file is refused up front.
MAX_CARD_DEPTH = 100
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Text-chunk keywords holding a card, most preferred first.
CARD_KEYWORDS = ("ccv3", "chara")
_TEXT_CHUNKS = (b"tEXt", b"iTXt", b"zTXt")
_V1_KEYS = ("description", "personality", "scenario", "first_mes", "mes_example")
#: Card data key -> our character key.
_CARD_TO_OURS = {
    "name": "name",
    "description": "context",
    "first_mes": "greeting",
    "mes_example": "examples",
    "personality": "personality",
    "scenario": "scenario",
    "system_prompt": "system_prompt",
    "post_history_instructions": "post_history_instructions",
    "alternate_greetings": "alternate_greetings",
    "creator_notes": "creator_notes",
    "tags": "tags",
    "creator": "creator",
    "character_version": "character_version",
    "extensions": "extensions",
    "character_book": "character_book",
}
_PYGMALION_TO_OURS = {
    "char_name": "name",
    "char_persona": "context",
    "world_scenario": "scenario",
    "example_dialogue": "examples",
    "char_greeting": "greeting",
}


def read_bounded(path: Path, shown: str | None = None) -> bytes:
    """The bytes of ``path``, refusing (before reading) a file too big to be a card."""
    size = Path(path).stat().st_size
    if size > MAX_CARD_BYTES:
        raise CardError(
            f"{shown or Path(path).name} is {size / 2**20:.1f} MB; character files up to "
            f"{MAX_CARD_BYTES // 2**20} MB are accepted."
        )
    return Path(path).read_bytes()


# ----- PNG text chunks ------------------------------------------------------------------------
def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_CARD_TEXT + 1)
    except zlib.error as exc:
        raise CardError(f"A compressed text chunk of the PNG is damaged: {exc}.") from None
    if len(out) > MAX_CARD_TEXT:
        raise CardError(f"The card inside the PNG is larger than {MAX_CARD_TEXT // 2**20} MB.")
    return out


def _text_chunk(kind: bytes, data: bytes) -> tuple[str, str] | None:
    """(keyword, text) of a tEXt/iTXt/zTXt chunk, or None for one that is not a card."""
    keyword, sep, rest = data.partition(b"\0")
    name = keyword.decode("latin-1").lower()
    if not sep or name not in CARD_KEYWORDS:
        return None
    if kind == b"tEXt":
        return name, rest.decode("latin-1")
    if kind == b"zTXt":
        return name, _inflate(rest[1:]).decode("latin-1")
    # iTXt: compression flag, method, language\0, translated keyword\0, UTF-8 text
    if len(rest) < 2:
        return None
    compressed, rest = rest[0], rest[2:]
    rest = rest.split(b"\0", 2)[-1] if rest.count(b"\0") >= 2 else b""
    text = _inflate(rest) if compressed else rest
    return name, text.decode("utf-8", errors="replace")


def _card_chunks(f: IO[bytes], limit: int) -> dict[str, str]:
    """The card text chunks of the PNG in ``f``; other chunks (the pixels) are skipped, not read."""
    if f.read(8) != PNG_SIGNATURE:
        raise CardError("The file is not a PNG picture.", key="error.card_not_png")
    found: dict[str, str] = {}
    while True:
        header = f.read(8)
        if len(header) < 8:
            return found  # truncated after the last complete chunk: keep what was found
        length, kind = struct.unpack(">I4s", header)
        if kind == b"IEND":
            return found
        if kind in _TEXT_CHUNKS:
            if length > limit:
                raise CardError(f"The card inside the PNG is larger than {limit // 2**20} MB.")
            data = f.read(length)
            if len(data) < length:
                raise CardError("The PNG file is cut short inside a text chunk.")
            chunk = _text_chunk(kind, data)
            if chunk is not None:
                found.setdefault(*chunk)
            f.seek(4, io.SEEK_CUR)  # CRC
        else:
            f.seek(length + 4, io.SEEK_CUR)


def png_has_card(path: Path) -> bool:
    """Whether the PNG at ``path`` carries a card (reads only chunk headers and text chunks)."""
    try:
        with open(path, "rb") as f:
            return bool(_card_chunks(f, MAX_CARD_TEXT))
    except (CardError, OSError):
        return False


def _decode_payload(keyword: str, text: str) -> dict[str, Any]:
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise CardError(f"The '{keyword}' card data in the PNG is not valid base64; the card is damaged.") from None
    if len(raw) > MAX_CARD_TEXT:
        raise CardError(f"The card inside the PNG is larger than {MAX_CARD_TEXT // 2**20} MB.")
    return _parse_json(raw, f"the '{keyword}' card data in the PNG")


# ----- nesting depth ---------------------------------------------------------------------------
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_JSON_BRACKETS = re.compile(r"[\[\]{}]")


def _too_deep() -> CardError:
    return CardError(
        f"The card is nested too deeply to be a character card (more than {MAX_CARD_DEPTH} levels).",
        key="error.card_too_deep",
        limit=MAX_CARD_DEPTH,
    )


def _check_json_text_depth(text: str) -> None:
    """Refuse JSON text nested deeper than MAX_CARD_DEPTH, counted without parsing it (strings skipped)."""
    depth = 0
    for bracket in _JSON_BRACKETS.findall(_JSON_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        if depth > MAX_CARD_DEPTH:
            raise _too_deep()


def _check_yaml_text_depth(text: str) -> None:
    """The same for YAML, from the parser's event stream (which keeps its own stack, no recursion)."""
    depth = 0
    for event in yaml.parse(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml when built
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_CARD_DEPTH:
                raise _too_deep()
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def check_depth(value: Any) -> None:
    """Refuse parsed card data nested deeper than MAX_CARD_DEPTH (walked with a list, not recursion).

    The walk is bounded too: YAML aliases can make a small file hold the same list a billion
    times over, more values than a card of the accepted size can have.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    seen = 0
    while stack:
        item, depth = stack.pop()
        if depth > MAX_CARD_DEPTH:
            raise _too_deep()
        children = list(item.values() if isinstance(item, dict) else item)
        seen += len(children)
        if seen > MAX_CARD_TEXT:
            raise CardError(f"The card holds more than {MAX_CARD_TEXT:,} values; it cannot be a character card.")
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def _parse_json(raw: bytes, what: str) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8-sig")
        _check_json_text_depth(text)
        data = json.loads(text)
    except UnicodeDecodeError:
        raise CardError(f"{what[0].upper()}{what[1:]} is not UTF-8 text.") from None
    except json.JSONDecodeError as exc:
        raise CardError(
            f"{what[0].upper()}{what[1:]} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
        ) from None
    if not isinstance(data, dict):
        raise CardError(f"{what[0].upper()}{what[1:]} is not a character card (not a JSON object).")
    return data


# ----- pictures -------------------------------------------------------------------------------
def clean_picture(raw: bytes) -> tuple[bytes | None, str | None]:
    """The picture of a card as a plain PNG (no text chunks, at most PICTURE_SIDE), or a warning."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw)) as im:
            width, height = im.size
            if width * height > MAX_PICTURE_PIXELS:
                return None, (
                    f"The picture is {width}x{height} pixels, more than this app accepts; "
                    "the character was imported without it."
                )
            im.thumbnail((PICTURE_SIDE, PICTURE_SIDE))
            picture = im.convert("RGBA") if im.mode not in ("RGB", "RGBA", "L", "LA", "P") else im
            out = io.BytesIO()
            picture.save(out, format="PNG")
            return out.getvalue(), None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        return None, f"The card's picture could not be read ({exc}); the character was imported without it."


def _picture_for_export(character: Character) -> Any:
    from PIL import Image

    if character.picture is not None and character.picture.is_file():
        try:
            with Image.open(character.picture) as im:
                if im.size[0] * im.size[1] <= MAX_PICTURE_PIXELS:
                    im.load()
                    return im.convert("RGBA") if im.mode not in ("RGB", "RGBA") else im.copy()
        except (OSError, ValueError, Image.DecompressionBombError):
            pass  # a broken picture file: the card gets the plain picture below
    return Image.new("RGB", (400, 600), (90, 100, 120))


# ----- cards <-> characters -------------------------------------------------------------------
def character_from_card(card: dict[str, Any], default_name: str, source: str) -> tuple[Character, list[str]]:
    """A Character from a card's JSON object (any supported variant) and warnings about it."""
    check_depth(card)  # before pydantic, YAML or JSON writers recurse into it
    warnings: list[str] = []
    spec = card.get("spec")
    if spec in ("chara_card_v2", "chara_card_v3"):
        data = card.get("data")
        if not isinstance(data, dict):
            raise CardError(f"{source}: a {spec} card must have a 'data' object.")
        mapping = _from_card_data(data)
    elif spec is not None:
        raise CardError(
            f"{source}: unknown card spec {spec!r} (supported: chara_card_v2, chara_card_v3, "
            "and V1 cards without a spec)."
        )
    elif any(k in card for k in _PYGMALION_TO_OURS):
        mapping = {ours: card[k] for k, ours in _PYGMALION_TO_OURS.items() if k in card}
        mapping.update({k: v for k, v in card.items() if k not in _PYGMALION_TO_OURS and k not in mapping})
    elif any(k in card for k in _V1_KEYS):
        mapping = _from_card_data(card)
    elif "context" in card or "greeting" in card:  # text-generation-webui's own keys
        mapping = dict(card)
    else:
        raise CardError(
            f"{source} is not a character card: it has none of the keys of a TavernAI card "
            "(description, first_mes...) or a text-generation-webui character (context, greeting)."
        )
    character = character_from_mapping(mapping, default_name, source)
    book = character.character_book
    if book is not None:
        regex = sum(1 for e in book.entries if getattr(e, "use_regex", False))
        if regex:
            warnings.append(
                f"{regex} lorebook entries use regular-expression keys; here their keys are matched as plain text."
            )
        if book.recursive_scanning:
            warnings.append("The lorebook asks for recursive scanning; here only the chat messages are scanned.")
    return character, warnings


def _from_card_data(data: dict[str, Any]) -> dict[str, Any]:
    mapping = {ours: data[k] for k, ours in _CARD_TO_OURS.items() if k in data}
    ours = set(_CARD_TO_OURS.values()) | {"examples", "context", "greeting"}
    # Keys of the card we do not use (V3's nickname, assets, source...) are kept for the export.
    mapping.update({k: v for k, v in data.items() if k not in _CARD_TO_OURS and k not in ours})
    if mapping.get("group_only_greetings") == []:
        del mapping["group_only_greetings"]  # V3's empty default, written back on export
    return mapping


def card_data(character: Character) -> dict[str, Any]:
    """The V2 ``data`` object of a character."""
    data: dict[str, Any] = {
        "name": character.name,
        "description": character.context,
        "personality": character.personality,
        "scenario": character.scenario,
        "first_mes": character.greeting,
        "mes_example": character.examples,
        "creator_notes": character.creator_notes,
        "system_prompt": character.system_prompt,
        "post_history_instructions": character.post_history_instructions,
        "alternate_greetings": list(character.alternate_greetings),
        "tags": list(character.tags),
        "creator": character.creator,
        "character_version": character.character_version,
        "extensions": dict(character.extensions),
    }
    if character.character_book is not None:
        data["character_book"] = character.character_book.to_json()
    for key, value in (character.extra or {}).items():
        data.setdefault(key, value)
    return data


def card_v2(character: Character) -> dict[str, Any]:
    data = card_data(character)
    # The V1 fields at the top too, as SillyTavern writes them, for tools that only read V1.
    v1 = {k: data[k] for k in ("name", "description", "personality", "scenario", "first_mes", "mes_example")}
    return {"spec": "chara_card_v2", "spec_version": "2.0", "data": data, **v1}


def card_v3(character: Character) -> dict[str, Any]:
    data = card_data(character)
    data.setdefault("group_only_greetings", [])
    return {"spec": "chara_card_v3", "spec_version": "3.0", "data": data}


def _json_bytes(obj: dict[str, Any], indent: int | None = None) -> bytes:
    return json.dumps(obj, ensure_ascii=False, indent=indent, default=str).encode("utf-8")


def card_json(character: Character) -> bytes:
    return _json_bytes(card_v2(character), indent=2)


def card_png(character: Character) -> bytes:
    """The character's picture (or a plain one) with the card in ``chara`` (V2) and ``ccv3`` (V3)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("chara", base64.b64encode(_json_bytes(card_v2(character))).decode("ascii"))
    info.add_text("ccv3", base64.b64encode(_json_bytes(card_v3(character))).decode("ascii"))
    out = io.BytesIO()
    _picture_for_export(character).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def read_card(file_name: str, raw: bytes) -> tuple[Character, bytes | None, list[str]]:
    """Read a card file's bytes: (character, its picture as PNG bytes or None, warnings)."""
    if len(raw) > MAX_CARD_BYTES:
        raise CardError(
            f"{file_name} is {len(raw) / 2**20:.1f} MB; character files up to "
            f"{MAX_CARD_BYTES // 2**20} MB are accepted."
        )
    stem = Path(file_name).stem or "Imported character"
    if raw.startswith(PNG_SIGNATURE):
        chunks = _card_chunks(io.BytesIO(raw), MAX_CARD_TEXT)
        if not chunks:
            raise CardError(
                f"{file_name} is a picture without a character card inside (no 'chara' or 'ccv3' "
                "text chunk). Export the card from SillyTavern as a PNG card, or upload its JSON."
            )
        warnings: list[str] = []
        errors: list[CardError] = []
        card = None
        for keyword in CARD_KEYWORDS:
            if keyword in chunks:
                try:
                    card = _decode_payload(keyword, chunks[keyword])
                    break
                except CardError as exc:
                    errors.append(exc)
        if card is None:
            raise errors[0]
        if errors:
            warnings.append(f"{errors[0].message} The older 'chara' data was used instead.")
        character, more = character_from_card(card, stem, file_name)
        picture, problem = clean_picture(raw)
        return character, picture, [*warnings, *more, *([problem] if problem else [])]
    text_start = raw.lstrip()[:1]
    if text_start == b"{" or raw.startswith(b"\xef\xbb\xbf"):
        character, warnings = character_from_card(_parse_json(raw, file_name), stem, file_name)
        return character, None, warnings
    if Path(file_name).suffix.lower() in (".yaml", ".yml"):
        try:
            text = raw.decode("utf-8")
            _check_yaml_text_depth(text)
            data = yaml.safe_load(text)
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise CardError(f"{file_name} is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise CardError(f"{file_name} does not hold a character (a mapping of keys to values).")
        character, warnings = character_from_card(data, stem, file_name)
        return character, None, warnings
    raise CardError(
        f"{file_name} is not a character card: expected a PNG card, a JSON card, a "
        "text-generation-webui YAML character or an Ollama Modelfile."
    )
