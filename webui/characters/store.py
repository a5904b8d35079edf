"""CharacterStore: the characters folder (YAML files, pictures, imports and exports)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from webui.errors import CardError, CharacterNotFoundError
from webui.storage import YamlFolder, atomic_write_bytes, safe_name

if TYPE_CHECKING:
    from webui.params import SamplingParams

from webui.characters.character import (
    DEFAULT_CHARACTER,
    PICTURE_SUFFIXES,
    Character,
    character_from_mapping,
    character_to_mapping,
)


@dataclass
class ImportResult:
    """What an import made: the character (saved under ``file_name``), and what to tell the user."""

    file_name: str
    character: Character
    warnings: list[str] = field(default_factory=list)
    #: Sampling values from a Modelfile's PARAMETER lines (saved as a preset of the same name).
    params: SamplingParams | None = None
    #: A Modelfile's FROM value.
    model_ref: str | None = None
    #: The preset the sampling values were saved as (set by ``Services.import_character``).
    preset: str | None = None
    #: The file in the models folder that FROM names, if any (set by ``Services.import_character``).
    model: str | None = None


class CharacterStore(YamlFolder):
    """The characters folder: ``NAME.yaml`` files, their pictures, and cards dropped in by hand."""

    what = "character name"

    def missing(self, name: str) -> CharacterNotFoundError:
        return CharacterNotFoundError(f"There is no character called {name!r}.")

    def names(self) -> list[str]:
        found = {DEFAULT_CHARACTER} | {p.stem for p in self.files()}
        found |= {p.stem for p in self._dropped_cards() if p.stem not in found}
        return sorted(found, key=str.lower)

    def _dropped_cards(self) -> list[Path]:
        """Card files put into the folder by hand that have no YAML file (yet)."""
        from webui.characters.cards import png_has_card

        yamls = {p.stem for p in self.files()}
        cards = [p for p in self.files("*.json") if p.stem not in yamls]
        cards += [p for p in self.files("*.png") if p.stem not in yamls and png_has_card(p)]
        return [p for p in cards if self.is_valid(p.stem)]

    def _dropped_card(self, name: str) -> Path | None:
        from webui.characters.cards import png_has_card

        stem = self.path(name).stem
        json_card, png_card = self.folder / f"{stem}.json", self.folder / f"{stem}.png"
        if json_card.is_file():
            return json_card
        return png_card if png_card.is_file() and png_has_card(png_card) else None

    def load(self, name: str) -> Character:
        path = self.path(name)
        if not path.is_file():
            if name == DEFAULT_CHARACTER:
                return Character()
            card = self._dropped_card(name)
            if card is None:
                raise self.missing(name)
            from webui.characters.cards import read_bounded, read_card

            character, _, _ = read_card(card.name, read_bounded(card))
            character.picture = self.picture_of(name)
            return character
        return character_from_mapping(self.read(name), name, path.name, self.picture_of(name))

    def picture_of(self, name: str) -> Path | None:
        stem = self.path(name).stem
        for suffix in PICTURE_SUFFIXES:
            p = self.folder / f"{stem}{suffix}"
            if p.is_file():
                return p
        return None

    def save(
        self, file_name: str, character: Character, picture: bytes | None = None, picture_suffix: str = ".png"
    ) -> Path:
        path = self.write(file_name, character_to_mapping(character))
        if picture is not None:
            suffix = picture_suffix.lower() if picture_suffix.lower() in PICTURE_SUFFIXES else ".png"
            for old in PICTURE_SUFFIXES:
                (self.folder / f"{path.stem}{old}").unlink(missing_ok=True)
            atomic_write_bytes(self.folder / f"{path.stem}{suffix}", picture)
        return path

    def delete(self, name: str) -> None:
        super().delete(name)
        stem = self.path(name).stem
        for suffix in PICTURE_SUFFIXES:
            (self.folder / f"{stem}{suffix}").unlink(missing_ok=True)

    # ----- interop ---------------------------------------------------------------------------
    def free_file_name(self, wanted: str, fallback: str = "Imported character") -> tuple[str, str | None]:
        """A file name for an imported character that is safe and not taken, and a note if it changed."""

        def clean(text: str) -> str:
            text = re.sub(r'[<>:"/\\|?*\x00-\x1f\x7f]+', " ", text or "")
            return re.sub(r"\s+", " ", text).strip(" .")[:80].strip(" .")

        # The card's name, else the uploaded file's name, else a fixed one: the first usable as a file
        # name (both come from the card's author, so both may be hostile: '../x', 'CON', 400 characters).
        cleaned = next((c for c in (clean(wanted), clean(fallback)) if self.is_valid(c)), "Imported character")
        base, n = cleaned, 2
        taken = {n.lower() for n in self.names()}
        while cleaned.lower() in taken:
            cleaned = f"{base} ({n})"
            n += 1
        note = (
            None
            if cleaned == wanted
            else (f"Saved as {cleaned!r} (the name {wanted!r} is taken or not usable as a file name).")
        )
        return cleaned, note

    def import_file(self, path: Path, original_name: str | None = None) -> ImportResult:
        """Import a card (PNG/JSON, V1/V2/V3), a text-generation-webui YAML/JSON, or an Ollama Modelfile.

        The character is written to this folder under a new, safe file name (an existing one is
        never overwritten). Raises :class:`CardError` for a file that cannot be read.
        """
        from webui.characters.cards import read_bounded, read_card
        from webui.characters.modelfile import looks_like_modelfile, modelfile_character

        shown = original_name or Path(path).name
        raw = read_bounded(Path(path), shown)
        params = model_ref = None
        if looks_like_modelfile(shown, raw):
            character, params, model_ref, warnings = modelfile_character(raw, shown)
            picture = None
        else:
            character, picture, warnings = read_card(shown, raw)
        file_name, note = self.free_file_name(character.name, fallback=Path(shown).stem)
        if note:
            warnings.insert(0, note)
        self.save(file_name, character, picture=picture, picture_suffix=".png")
        character.picture = self.picture_of(file_name)
        return ImportResult(file_name, character, warnings, params, model_ref)

    def export_card(self, name: str, fmt: str) -> bytes:
        """The character as a TavernAI V2 card: ``"png"`` (picture with the card inside) or ``"json"``."""
        from webui.characters.cards import card_json, card_png

        character = self.load(name)
        if fmt == "json":
            return card_json(character)
        if fmt == "png":
            return card_png(character)
        raise CardError(f"Unknown card format {fmt!r}: use png or json.")

    def export_files(self, name: str, folder: Path, params: SamplingParams | None, model: str | None) -> list[Path]:
        """Write the character into ``folder`` as a PNG card, a JSON card and a Modelfile, in that order.

        The Modelfile carries ``params`` and names ``model`` in FROM (unless the character came from
        a Modelfile with its own FROM). Everything is made before anything is written, so a
        character that cannot be exported leaves the folder as it was.
        """
        from webui.characters.modelfile import export_modelfile

        stem = safe_name(name, what="character name")
        files = {
            f"{stem}.png": self.export_card(name, "png"),
            f"{stem}.json": self.export_card(name, "json"),
            f"{stem}.Modelfile": export_modelfile(self.load(name), params, model).encode("utf-8"),
        }
        paths = []
        for file_name, data in files.items():
            atomic_write_bytes(Path(folder) / file_name, data)
            paths.append(Path(folder) / file_name)
        return paths
