"""Character cards built in tests with Pillow, in every variant the app reads (and some it must refuse).

(Import from here in any test module; ``tests/`` is on sys.path.)
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

V1 = {
    "name": "Aria",
    "description": "{{char}} is a lighthouse keeper.",
    "personality": "calm, dry humour",
    "scenario": "A stormy night at the lighthouse.",
    "first_mes": "Welcome in, {{user}}. Mind the puddles.",
    "mes_example": "<START>\n{{user}}: Is the lamp lit?\n{{char}}: Always, since 1902.",
}


def lorebook(*entries: dict[str, Any], **book: Any) -> dict[str, Any]:
    full = [
        {"keys": [], "content": "", "extensions": {}, "enabled": True, "insertion_order": 100, **e} for e in entries
    ]
    return {"extensions": {}, "entries": full, **book}


def v2_data(**changes: Any) -> dict[str, Any]:
    data = {
        **V1,
        "creator_notes": "Best with a slow burn. Not sent to the model.",
        "system_prompt": "You are {{char}}. {{original}}",
        "post_history_instructions": "Stay in character.",
        "alternate_greetings": ["Another storm, {{user}}?", "Tea is on the stove."],
        "tags": ["sea", "mystery"],
        "creator": "tester",
        "character_version": "1.2",
        "extensions": {"talkativeness": "0.5", "some_tool": {"colour": "blue"}},
        "character_book": lorebook(
            {"keys": ["kraken"], "content": "The kraken sleeps under the rock.", "insertion_order": 10}
        ),
    }
    data.update(changes)
    return data


def v2_card(**changes: Any) -> dict[str, Any]:
    return {"spec": "chara_card_v2", "spec_version": "2.0", "data": v2_data(**changes)}


def v3_card(**changes: Any) -> dict[str, Any]:
    return {
        "spec": "chara_card_v3",
        "spec_version": "3.0",
        "data": {**v2_data(**changes), "group_only_greetings": [], "nickname": "Ari"},
    }


def b64(card: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(card).encode("utf-8")).decode("ascii")


def png(
    size: tuple[int, int] = (48, 64),
    colour: tuple[int, int, int] = (200, 30, 30),
    *,
    text: dict[str, str] | None = None,
    itxt: dict[str, str] | None = None,
    ztxt: dict[str, str] | None = None,
) -> bytes:
    """A PNG picture with the given text chunks (tEXt, compressed iTXt, or zTXt)."""
    info = PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    for key, value in (itxt or {}).items():
        info.add_itxt(key, value, zip=True)
    for key, value in (ztxt or {}).items():
        info.add_text(key, value, zip=True)
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def png_card(card: dict[str, Any], keyword: str = "chara", **kw: Any) -> bytes:
    return png(text={keyword: b64(card)}, **kw)
