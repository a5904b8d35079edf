"""Ollama Modelfiles: read one into a character + sampling values, and write one back.

Read: ``FROM`` (kept; it picks the model when it names a file in ``models/``), ``SYSTEM``
(the character's description), ``MESSAGE user|assistant|system`` (example exchanges),
``PARAMETER`` (mapped to :class:`SamplingParams` names), ``TEMPLATE`` (kept in the character
file but not used: the model's own chat template or the chosen instruction template formats
the prompt). Values may be bare (to the end of the line), ``"quoted"`` or triple-quoted (three double quotes)
over several lines. Anything this app cannot use becomes a warning, never a failure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from webui.characters.character import Character
from webui.errors import CardError
from webui.params import SamplingParams

MAX_MODELFILE_CHARS = 1 * 2**20
#: Ollama PARAMETER name -> SamplingParams field.
PARAMETERS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "typical_p": "typical_p",
    "repeat_penalty": "repeat_penalty",
    "repeat_last_n": "repeat_last_n",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "seed": "seed",
    "num_predict": "max_tokens",
    "mirostat": "mirostat_mode",
    "mirostat_tau": "mirostat_tau",
    "mirostat_eta": "mirostat_eta",
    "stop": "stop",
    "num_ctx": "truncation_length",
}
#: Ollama options about loading and hardware, which have their own place here (the Model tab).
LOAD_OPTIONS = {
    "num_gpu",
    "num_thread",
    "num_batch",
    "main_gpu",
    "use_mmap",
    "use_mlock",
    "numa",
    "low_vram",
    "f16_kv",
    "vocab_only",
    "num_gqa",
    "rope_frequency_base",
    "rope_frequency_scale",
    "num_keep",
}
COMMANDS = {"FROM", "SYSTEM", "PARAMETER", "TEMPLATE", "MESSAGE", "ADAPTER", "LICENSE", "REQUIRES"}
_USER, _CHAR = "{{user}}:", "{{char}}:"


@dataclass
class Modelfile:
    model: str | None = None
    system: str = ""
    template: str = ""
    #: (name, raw value) in file order; ``stop`` may appear several times.
    parameters: list[tuple[str, str]] = field(default_factory=list)
    messages: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def looks_like_modelfile(file_name: str, raw: bytes) -> bool:
    name = Path(file_name).name.lower()
    if name == "modelfile" or name.endswith(".modelfile") or name.startswith("modelfile."):
        return True
    if Path(name).suffix not in ("", ".txt"):
        return False
    for line in raw[:4096].decode("utf-8", errors="replace").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line.split(None, 1)[0].upper() == "FROM"
    return False


class _Reader:
    """Reads a Modelfile's text: words, and values in any of the three quotings."""

    def __init__(self, text: str) -> None:
        self.text, self.i = text, 0

    def line_no(self) -> int:
        return self.text.count("\n", 0, self.i) + 1

    def skip_blank(self) -> None:
        while self.i < len(self.text):
            if self.text[self.i] in " \t\r\n":
                self.i += 1
            elif self.text[self.i] == "#":
                self.rest_of_line()
            else:
                return

    def skip_spaces(self) -> None:
        while self.i < len(self.text) and self.text[self.i] in " \t":
            self.i += 1

    def rest_of_line(self) -> str:
        end = self.text.find("\n", self.i)
        end = len(self.text) if end < 0 else end
        value, self.i = self.text[self.i : end], end
        return value.strip()

    def word(self) -> str:
        m = re.compile(r"[^\s]+").match(self.text, self.i)
        if not m:
            return ""
        self.i = m.end()
        return m.group(0)

    def value(self) -> str:
        self.skip_spaces()
        t, start, line = self.text, self.i, self.line_no()
        if t.startswith('"""', start):
            end = t.find('"""', start + 3)
            if end < 0:
                raise CardError(f'Modelfile line {line}: a """ value is never closed.')
            self.i = end + 3
            return t[start + 3 : end].strip("\n")
        if t.startswith('"', start):
            out, i = [], start + 1
            while i < len(t):
                c = t[i]
                if c == "\\" and i + 1 < len(t):
                    nxt = t[i + 1]
                    out.append({"n": "\n", "t": "\t", '"': '"', "\\": "\\"}.get(nxt, "\\" + nxt))
                    i += 2
                    continue
                if c == '"':
                    self.i = i + 1
                    return "".join(out)
                out.append(c)
                i += 1
            raise CardError(f'Modelfile line {line}: a " value is never closed.')
        return self.rest_of_line()


def parse_modelfile(text: str) -> Modelfile:
    if len(text) > MAX_MODELFILE_CHARS:
        raise CardError(f"The Modelfile is longer than {MAX_MODELFILE_CHARS // 2**20} MB.")
    mf, r = Modelfile(), _Reader(text)
    while True:
        r.skip_blank()
        if r.i >= len(text):
            break
        line = r.line_no()
        command = r.word().upper()
        if command not in COMMANDS:
            r.rest_of_line()
            mf.warnings.append(f"Line {line}: {command!r} is not a Modelfile instruction; ignored.")
            continue
        if command == "PARAMETER":
            r.skip_spaces()
            name = r.word().lower()
            mf.parameters.append((name, r.value()))
        elif command == "MESSAGE":
            r.skip_spaces()
            role = r.word().lower()
            content = r.value()
            if role not in ("user", "assistant", "system"):
                mf.warnings.append(f"Line {line}: MESSAGE role {role!r} is not user, assistant or system; ignored.")
            else:
                mf.messages.append((role, content))
        elif command == "FROM":
            mf.model = r.value()
        elif command == "SYSTEM":
            mf.system = r.value()
        elif command == "TEMPLATE":
            mf.template = r.value()
            mf.warnings.append(
                "TEMPLATE is kept in the character file but not used: the model's own chat "
                "template (or the Instruction template you pick) formats the prompt here."
            )
        else:
            r.value()
            mf.warnings.append(f"Line {line}: {command} is not supported here; ignored.")
    return mf


def sampling_values(parameters: list[tuple[str, str]]) -> tuple[SamplingParams | None, list[str]]:
    """The PARAMETER lines as SamplingParams (None when there are none we use) and warnings."""
    values: dict[str, Any] = {}
    warnings: list[str] = []
    for name, raw in parameters:
        target = PARAMETERS.get(name)
        if target is None:
            if name in LOAD_OPTIONS:
                warnings.append(f"PARAMETER {name} is a loading option; set it in the Model tab instead.")
            else:
                warnings.append(f"PARAMETER {name} is not supported here; ignored.")
            continue
        if name == "stop":
            values.setdefault("stop", []).append(raw)
            continue
        if name == "num_predict" and raw.strip() in ("-1", "-2"):
            warnings.append(
                f"PARAMETER num_predict {raw} (no limit) is not supported; the preset keeps the default reply length."
            )
            continue
        try:
            SamplingParams.model_validate({target: raw})
        except ValidationError as exc:
            warnings.append(f"PARAMETER {name} {raw}: {exc.errors()[0]['msg']}; ignored.")
            continue
        values[target] = raw
        if name == "num_ctx":
            warnings.append(
                f"PARAMETER num_ctx {raw}: prompts are cut to {raw} tokens (truncation_length); load "
                f"the model with that context size in the Model tab to use all of it."
            )
    if not values:
        return None, warnings
    return SamplingParams.model_validate(values), warnings


def name_from_file(file_name: str) -> str:
    """The name a user gave their Modelfile: ``my-tutor.Modelfile`` -> ``my-tutor``; ``Modelfile`` -> ""."""
    parts = [p for p in Path(file_name).name.split(".") if p.lower() not in ("modelfile", "txt", "")]
    return ".".join(parts).strip()


def name_from_system(system: str, words: int = 4) -> str:
    """A short name from the first words of the SYSTEM text ("You are a patient maths tutor" -> "Patient maths
    tutor"), for a file called just ``Modelfile``; "" when there is no SYSTEM."""
    first = system.strip().splitlines()[0] if system.strip() else ""
    first = re.split(r"[.!?;:,(]", first, maxsplit=1)[0]
    first = re.sub(r"^\s*(you are|you're|act as|pretend to be)\s+((a|an|the)\s+)?", "", first, flags=re.IGNORECASE)
    kept = re.findall(r"[\w'-]+", first)[:words]
    name = " ".join(kept)
    return name[:1].upper() + name[1:]


def modelfile_character(raw: bytes, name: str) -> tuple[Character, SamplingParams | None, str | None, list[str]]:
    """A Modelfile's bytes -> (character, sampling values, FROM value, warnings).

    ``name`` is the file's name: the character is named after it (the user chose it), or, for a
    file called just ``Modelfile``, after the first words of its SYSTEM text - never after FROM,
    which names a model (``mistral``), not the character.
    """
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CardError("The Modelfile is not UTF-8 text.") from None
    mf = parse_modelfile(text)
    params, warnings = sampling_values(mf.parameters)
    name = name_from_file(name) or name_from_system(mf.system) or "Modelfile character"
    context = "\n\n".join([mf.system, *(c for role, c in mf.messages if role == "system")]).strip()
    lines = [f"{_USER if role == 'user' else _CHAR} {content}" for role, content in mf.messages if role != "system"]
    extra = {k: v for k, v in (("modelfile_from", mf.model), ("modelfile_template", mf.template)) if v}
    character = Character(name=name, context=context, examples="\n".join(lines), extra=extra or None)
    return character, params, mf.model, [*mf.warnings, *warnings]


def match_model(ref: str | None, models: list[str]) -> str | None:
    """The model in ``models`` that a FROM value names (file name or file name without .gguf)."""
    if not ref:
        return None
    base = ref.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    wanted = {base.lower(), base.lower().removesuffix(".gguf")}
    for name in models:
        if name.lower() in wanted or name.lower().removesuffix(".gguf") in wanted:
            return name
    return None


def _quote(text: str) -> str:
    """Triple quotes for text (they keep it as it is), escaped quotes when the text has triple quotes."""
    if '"""' not in text and not text.startswith("\n") and not text.endswith("\n"):
        return f'"""{text}"""'
    return _quote_line(text)


def _quote_line(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'


def _example_messages(examples: str) -> list[tuple[str, str]] | None:
    """``{{user}}: ...`` / ``{{char}}: ...`` lines as messages; None when the text has another shape."""
    messages: list[tuple[str, str]] = []
    for line in examples.splitlines():
        stripped = line.strip()
        if stripped.upper() == "<START>":
            continue
        lowered = stripped.lower()
        if lowered.startswith(_USER):
            messages.append(("user", stripped[len(_USER) :].strip()))
        elif lowered.startswith(_CHAR):
            messages.append(("assistant", stripped[len(_CHAR) :].strip()))
        elif messages:
            role, content = messages[-1]
            messages[-1] = (role, f"{content}\n{line}")
        elif stripped:
            return None
    return messages


def export_modelfile(character: Character, params: SamplingParams | None, model: str | None) -> str:
    """The character (+ sampling values) as an Ollama Modelfile."""
    extra = character.extra or {}
    lines = [f"FROM {extra.get('modelfile_from') or model or 'MODEL'}"]
    if params is not None:
        values: list[tuple[str, Any]] = [
            ("temperature", 0.0 if params.greedy else params.temperature),
            ("top_p", params.top_p),
            ("top_k", params.top_k),
            ("min_p", params.min_p),
            ("typical_p", params.typical_p),
            ("repeat_penalty", params.repeat_penalty),
            ("repeat_last_n", params.repeat_last_n),
            ("presence_penalty", params.presence_penalty),
            ("frequency_penalty", params.frequency_penalty),
            ("num_predict", params.max_tokens),
        ]
        if params.seed != -1:
            values.append(("seed", params.seed))
        if params.mirostat_mode:
            values += [
                ("mirostat", params.mirostat_mode),
                ("mirostat_tau", params.mirostat_tau),
                ("mirostat_eta", params.mirostat_eta),
            ]
        if params.truncation_length:
            values.append(("num_ctx", params.truncation_length))
        lines += [f"PARAMETER {k} {v}" for k, v in values]
        for stop in params.stop:
            bare = stop and stop == stop.strip() and '"' not in stop
            lines.append(f"PARAMETER stop {stop if bare else _quote_line(stop)}")
    if extra.get("modelfile_template"):
        lines.append(f"TEMPLATE {_quote(extra['modelfile_template'])}")
    user = "User"
    messages = _example_messages(character.examples) if character.examples.strip() else []
    described = replace(character, examples="" if messages is not None else character.examples)
    system = "\n\n".join(p for p in (character.system_prompt_with("", user).strip(), described.system_text(user)) if p)
    if system:
        lines.append(f"SYSTEM {_quote(system)}")
    for role, content in messages or []:
        lines.append(f"MESSAGE {role} {_quote(character.fill(content, user))}")
    return "\n".join(lines) + "\n"
