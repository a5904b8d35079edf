"""Compare: one prompt sent to several configurations, one after the other, answers side by side.

A configuration is a model (and loader), a preset, a few parameter overrides and a seed. The
runs are instruct-mode chat turns: the prompt goes through the model's chat template the way
the Chat tab sends it (``chat.build_prompt``), as jobs of the one generation queue. Only one
model is in memory at a time, so the runs switch models with ``Services.load_model`` (which
loads on the generation thread) and, whatever happens (an error, Stop, a closed tab), the model
the user had loaded before is loaded again at the end, with the same loader and options.

A parameter sweep is a comparison whose configurations differ in one ``SamplingParams`` field.
Seeds are fixed (42 unless the user picks another), so a comparison run twice gives the same
answers; a seed of -1 draws one seed for the whole comparison, and every result records the
seed it used.

Status lines are events with a catalogue key (``webui/locales/<lang>/compare.yaml``): the UI
shows them in the page's language, ``Event.message`` in English (logs, tests).
"""

from __future__ import annotations

import csv
import io
import logging
import random
import re
import secrets
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from webui.catalogue import text
from webui.characters.character import DEFAULT_CHARACTER, Character
from webui.chat.history import Chat, Message
from webui.chat.prompt import ChatOptions, build_prompt, context_limit
from webui.errors import CompareError, SaveError, WebUIError
from webui.generation.scheduler import Prepared
from webui.models.manager import LoadedModel
from webui.params import SamplingParams
from webui.presets import ACCEPTED_KEYS
from webui.storage import atomic_write_text

if TYPE_CHECKING:
    from webui.services import Services

log = logging.getLogger(__name__)

DEFAULT_SEED = 42
#: Reply length a comparison starts with: shorter than a chat's, since every run of it is waited for.
COMPARE_MAX_TOKENS = 128
#: Most runs in one comparison (the Compare tab has this many answer columns).
MAX_RUNS = 6
#: Fields a sweep may vary: the numbers and switches (lists and grammars are not a "value").
SWEEPABLE: tuple[str, ...] = tuple(
    name for name, info in SamplingParams.model_fields.items() if info.annotation in (int, float, bool)
)


def _problems(exc: ValidationError) -> str:
    return "; ".join(e["msg"] for e in exc.errors())


class RunConfig(BaseModel):
    """One configuration to run the prompt with."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    #: None: the model's saved loader, else the one its file type calls for.
    loader: str | None = None
    #: None: the built-in defaults.
    preset: str | None = None
    #: Values set on top of the preset (field names; text-generation-webui's names are accepted).
    params: dict[str, Any] = Field(default_factory=dict)
    #: -1 draws one seed for the whole comparison (and records it); never random per run.
    seed: int = Field(DEFAULT_SEED, ge=-1, le=2**32 - 1)
    #: What this run varies, for headings ("temperature = 0.2"); empty: the model and preset say it.
    label: str = ""

    @field_validator("params")
    @classmethod
    def _known_values(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(k for k in value if k not in ACCEPTED_KEYS)
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(unknown)}")
        named = {ACCEPTED_KEYS[k]: v for k, v in value.items()}
        SamplingParams.model_validate(named)  # an out-of-range value fails here, named
        return named

    def title(self) -> str:
        """Model · preset · what varies: the heading of this run's answer."""
        parts = [self.model, self.preset or "Default"]
        return " · ".join(parts + ([self.label] if self.label else []))


class RunResult(BaseModel):
    """What one run gave: the answer, its stats, and what it ran on."""

    index: int
    config: RunConfig
    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens_per_second: float = 0.0
    ttft_seconds: float | None = None
    total_seconds: float = 0.0
    finish_reason: str = ""
    #: The seed the generation actually used.
    seed: int | None = None
    model: str = ""
    loader: str = ""
    model_description: str = ""
    #: Context size the model was loaded with.
    n_ctx: int = 0
    #: Seconds spent switching to this run's model (None: it was already loaded).
    load_seconds: float | None = None
    #: The sampling values that differ from the defaults (the seed is its own column).
    changed_params: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.finish_reason != "cancelled"

    def changed_text(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.changed_params.items()) or "-"


@dataclass
class Event:
    """A step of a comparison: a status line, a growing answer, or a finished run."""

    kind: Literal["status", "partial", "result"]
    key: str = ""
    fields: dict[str, Any] = field(default_factory=dict)
    index: int | None = None
    text: str = ""
    result: RunResult | None = None

    @property
    def message(self) -> str:
        return english(self.key, **self.fields) if self.key else ""


def english(key: str, **fields: Any) -> str:
    """A catalogue text in English (the UI translates the same keys itself)."""
    return text(key, "en", **fields)


def same_model(a: LoadedModel | None, b: LoadedModel | None) -> bool:
    if a is None or b is None:
        return a is b
    return a is b or (a.name, a.loader, a.options) == (b.name, b.loader, b.options)


# ----- configurations ---------------------------------------------------------------------------
def parse_values(text: str) -> list[str]:
    """``"0.2, 0.7; 1.2"`` -> ``["0.2", "0.7", "1.2"]`` (commas, semicolons or spaces)."""
    return [v for v in re.split(r"[,;\s]+", text or "") if v]


def sweep_configs(base: RunConfig, param_name: str, values: list[Any]) -> list[RunConfig]:
    """``base`` once per value of one sampling parameter, each value checked against its range."""
    name = ACCEPTED_KEYS.get((param_name or "").strip())
    if name is None or name not in SWEEPABLE:
        raise CompareError(
            f"{param_name!r} is not a parameter that can be swept. Choose one of: {', '.join(SWEEPABLE)}."
        )
    if not values:
        raise CompareError(f"Give the values of {name} to try, separated by commas (e.g. 0.2, 0.7, 1.2).")
    if len(values) > MAX_RUNS:
        raise CompareError(f"At most {MAX_RUNS} values in one sweep ({len(values)} given).")
    configs = []
    for raw in values:
        try:
            value = getattr(SamplingParams.model_validate({name: raw}), name)
        except ValidationError as exc:
            raise CompareError(f"{name} = {raw}: {_problems(exc)}.") from None
        label = f"{name} = {value}"
        if name == "seed":
            configs.append(base.model_copy(update={"seed": value, "label": label}))
        else:
            configs.append(base.model_copy(update={"params": {**base.params, name: value}, "label": label}))
    return configs


def with_fixed_seeds(configs: list[RunConfig], draw: Callable[[], int] | None = None) -> list[RunConfig]:
    """Configurations asking for a random seed (-1) get one seed drawn for the whole comparison."""
    if all(c.seed != -1 for c in configs):
        return list(configs)
    seed = (draw or (lambda: random.randint(0, 2**31 - 1)))()
    return [c.model_copy(update={"seed": seed}) if c.seed == -1 else c for c in configs]


# ----- running ----------------------------------------------------------------------------------
class Comparison:
    """Runs comparisons on the app's services: one comparison at a time, jobs on the shared queue."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._lock = threading.Lock()

    def params_for(self, config: RunConfig) -> SamplingParams:
        """Defaults < the preset < the overrides < the seed."""
        base = self.services.presets.load(config.preset).params if config.preset else SamplingParams()
        return SamplingParams.model_validate({**base.model_dump(), **config.params, "seed": config.seed})

    def sweep(
        self,
        prompt: str,
        system_prompt: str,
        base_config: RunConfig,
        param_name: str,
        values: list[Any],
        progress_callback: Callable[[Event], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[Event]:
        return self.run(
            prompt, system_prompt, sweep_configs(base_config, param_name, values), progress_callback, cancel
        )

    def run_all(
        self, prompt: str, system_prompt: str, configs: list[RunConfig], cancel: threading.Event | None = None
    ) -> list[RunResult]:
        """Run to the end and return the results (for callers that do not stream)."""
        return [e.result for e in self.run(prompt, system_prompt, configs, cancel=cancel) if e.result is not None]

    def run(
        self,
        prompt: str,
        system_prompt: str,
        configs: list[RunConfig],
        progress_callback: Callable[[Event], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Generator[Event, None, None]:
        """Run every configuration in turn, yielding events; one ``result`` event per configuration.

        A run that fails (a missing model, a preset that does not exist...) records its error
        and the others go on. The model loaded before is loaded again at the end, also when
        the comparison is stopped, fails, or its consumer goes away.
        """
        if not (prompt or "").strip():
            raise CompareError("Type a prompt to compare.")
        if not configs:
            raise CompareError("Add at least one configuration to run.")
        if len(configs) > MAX_RUNS:
            raise CompareError(f"At most {MAX_RUNS} runs in one comparison ({len(configs)} given).")
        cancel = cancel or threading.Event()
        configs = with_fixed_seeds(configs)

        def emit(event: Event) -> Event:
            if progress_callback is not None:
                progress_callback(event)
            return event

        waited = False
        while not self._lock.acquire(timeout=0.2):
            if cancel.is_set():
                return
            if not waited:
                waited = True
                yield emit(Event("status", "compare.status.waiting"))
        try:
            yield from self._run_locked(prompt, system_prompt, configs, emit, cancel)
        finally:
            self._lock.release()

    def _run_locked(
        self,
        prompt: str,
        system_prompt: str,
        configs: list[RunConfig],
        emit: Callable[[Event], Event],
        cancel: threading.Event,
    ) -> Iterator[Event]:
        services = self.services
        before = services.models.current
        # A model's saved preset is applied by load_model; the comparison must not change the user's choice.
        choice = (services.settings.preset, dict(services.settings.params))
        started = time.perf_counter()
        results: list[RunResult] = []
        restored = False
        try:
            for i, config in enumerate(configs):
                if cancel.is_set():
                    result = RunResult(
                        index=i, config=config, finish_reason="cancelled", error="Not run: the comparison was stopped."
                    )
                else:
                    result = yield from self._run_one(i, len(configs), config, prompt, system_prompt, emit, cancel)
                results.append(result)
                yield emit(Event("result", index=i, result=result, text=result.text))
            yield from self._restore(before, choice, emit)
            restored = True
            ok = sum(r.ok for r in results)
            key = "compare.status.stopped" if cancel.is_set() else "compare.status.done"
            yield emit(
                Event(
                    "status", key, {"ok": ok, "total": len(results), "seconds": f"{time.perf_counter() - started:.1f}"}
                )
            )
        finally:
            if not restored:  # an error, or the consumer went away: nobody to tell, but restore all the same
                for _ in self._restore(before, choice, emit):
                    pass

    def _run_one(
        self,
        i: int,
        total: int,
        config: RunConfig,
        prompt: str,
        system_prompt: str,
        emit: Callable[[Event], Event],
        cancel: threading.Event,
    ) -> Generator[Event, None, RunResult]:
        services = self.services
        result = RunResult(index=i, config=config)
        try:
            params = self.params_for(config)
            loaded = services.models.current
            if loaded is None or loaded.name != config.model or config.loader not in (None, loaded.loader):
                yield emit(
                    Event(
                        "status",
                        "compare.status.switching",
                        {"model": config.model, "n": i + 1, "total": total},
                        index=i,
                    )
                )
                t0 = time.perf_counter()
                loaded = services.load_model(config.model, config.loader)
                result.load_seconds = round(time.perf_counter() - t0, 2)
            yield emit(
                Event(
                    "status",
                    "compare.status.run",
                    {"n": i + 1, "total": total, "title": config.title(), "seed": params.seed},
                    index=i,
                )
            )
            job = services.generator.submit(
                params=params,
                cancel=cancel,
                prepare=lambda model, run: self._prepare(model, run, prompt, system_prompt),
            )
            text = ""
            for chunk in job:
                if chunk.text:
                    text += chunk.text
                    yield Event("partial", index=i, text=text.lstrip())
            stats = job.stats
            assert stats is not None
            shared = {
                k: round(v, 3) if isinstance(v, float) else v
                for k, v in stats.as_dict().items()
                if k in RunResult.model_fields
            }
            result = result.model_copy(
                update={
                    **shared,
                    "text": text.strip(),
                    "n_ctx": loaded.backend.n_ctx,
                    "model_description": f"{loaded.name} on {loaded.loader}, context {loaded.backend.n_ctx} tokens",
                    "changed_params": {k: v for k, v in params.non_default().items() if k != "seed"},
                }
            )
        except WebUIError as exc:
            result.error = exc.message
        except Exception as exc:  # one run's bug must not lose the others, nor the user's model
            log.exception("Run %d of a comparison failed", i + 1)
            result.error = f"{type(exc).__name__}: {exc}"
        if result.error:
            yield emit(
                Event(
                    "status", "compare.status.run_failed", {"n": i + 1, "total": total, "error": result.error}, index=i
                )
            )
        return result

    def _prepare(self, loaded: LoadedModel, params: SamplingParams, prompt: str, system_prompt: str) -> Prepared:
        """The prompt the Chat tab would send for a first message in instruct mode, made for ``loaded``."""
        template, _ = self.services.template_for(loaded)
        built = build_prompt(
            Chat(id="compare", character=DEFAULT_CHARACTER),
            [Message("user", prompt)],
            Character(),
            ChatOptions(mode="instruct", system_prompt=system_prompt or ""),
            template,
            n_ctx=context_limit(loaded.backend.n_ctx, params.truncation_length),
            max_new_tokens=params.max_tokens,
            tokenize=loaded.backend.tokenize,
        )
        return Prepared(built.text, stop=built.stop, tokens=built.tokens, front_cut=False, detail=built)

    def _restore(
        self, before: LoadedModel | None, choice: tuple[str | None, dict[str, Any]], emit: Callable[[Event], Event]
    ) -> Iterator[Event]:
        services = self.services
        try:
            current = services.models.current
            if before is None and current is not None:
                yield emit(Event("status", "compare.status.unloading", {"model": current.name}))
                services.generator.call(services.models.unload)
            elif before is not None and not same_model(current, before):
                yield emit(Event("status", "compare.status.restoring", {"model": before.name}))
                services.load_model(before.name, before.loader, before.options)
        except Exception as exc:
            message = exc.message if isinstance(exc, WebUIError) else f"{type(exc).__name__}: {exc}"
            log.error("Could not load %s again after a comparison: %s", before.name if before else "-", message)
            yield emit(
                Event(
                    "status",
                    "compare.status.restore_failed",
                    {"model": before.name if before else "-", "error": message},
                )
            )
        finally:
            if (services.settings.preset, services.settings.params) != choice:
                try:
                    services.remember(preset=choice[0], params=choice[1])
                except SaveError as exc:  # the choice is restored in memory; only the file is behind
                    log.error("%s", exc.message)


# ----- exports ----------------------------------------------------------------------------------
#: The table's columns, as catalogue keys (the UI shows them in the page's language).
COLUMN_KEYS: tuple[str, ...] = tuple(
    f"compare.col.{c}"
    for c in (
        "index",
        "model",
        "loader",
        "preset",
        "changed",
        "seed",
        "prompt_tokens",
        "completion_tokens",
        "tps",
        "ttft",
        "finish",
        "answer",
    )
)
COLUMNS: tuple[str, ...] = tuple(english(k) for k in COLUMN_KEYS)


def table_rows(results: list[RunResult]) -> list[list[Any]]:
    """One row per run, in ``COLUMNS`` order."""
    rows = []
    for r in results:
        finish = f"error: {r.error}" if r.error else r.finish_reason
        rows.append(
            [
                r.index + 1,
                r.model or r.config.model,
                r.loader or r.config.loader or "",
                r.config.preset or "Default",
                r.changed_text(),
                r.seed if r.seed is not None else r.config.seed,
                r.prompt_tokens,
                r.completion_tokens,
                r.tokens_per_second,
                r.ttft_seconds if r.ttft_seconds is not None else "",
                finish,
                r.text,
            ]
        )
    return rows


def to_csv(results: list[RunResult], headers: tuple[str, ...] = COLUMNS) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(headers)
    writer.writerows(table_rows(results))
    return out.getvalue()


def _cell(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


def to_markdown(
    results: list[RunResult], prompt: str = "", system_prompt: str = "", headers: tuple[str, ...] = COLUMNS
) -> str:
    """A report section: the prompt, then a table with one row per run (answers included)."""
    lines = ["# Comparison", ""]
    if system_prompt.strip():
        lines += ["**System prompt:**", "", *[f"> {line}" for line in system_prompt.strip().splitlines()], ""]
    if prompt.strip():
        lines += ["**Prompt:**", "", *[f"> {line}" for line in prompt.strip().splitlines()], ""]
    lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in table_rows(results)]
    return "\n".join(lines) + "\n"


def write_exports(
    results: list[RunResult],
    folder: Path,
    prompt: str = "",
    system_prompt: str = "",
    headers: tuple[str, ...] = COLUMNS,
) -> tuple[Path, Path]:
    """The runs as ``compare-<time>.md`` and ``.csv`` in ``folder`` (for the download buttons)."""
    # (a random tail: two pages finishing in the same second never share a file)
    stem = time.strftime("compare-%Y%m%d-%H%M%S-") + secrets.token_hex(2)
    md, table = Path(folder) / f"{stem}.md", Path(folder) / f"{stem}.csv"
    atomic_write_text(md, to_markdown(results, prompt, system_prompt, headers))
    # With a byte-order mark, spreadsheet programs read the UTF-8 (Russian, Chinese answers) correctly.
    atomic_write_text(table, "\ufeff" + to_csv(results, headers))
    return md, table


class LastComparison(BaseModel):
    """The last comparison a user ran, kept so a reload or a restart shows its answers again
    (``logs/compare/last.json`` in the user's folder; the next comparison replaces it)."""

    model_config = ConfigDict(extra="ignore")

    finished_at: str
    prompt: str = ""
    system_prompt: str = ""
    results: list[RunResult] = Field(default_factory=list)
    #: The Markdown and CSV files written for the download buttons ("" when they could not be written).
    markdown: str = ""
    csv: str = ""


def save_last(path: Path, last: LastComparison) -> None:
    """Write ``last`` to ``path`` (atomically: a crash leaves the previous one whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, last.model_dump_json(indent=1))


def read_last(path: Path) -> LastComparison | None:
    """The comparison saved at ``path``; None when there is none, or the file is unreadable (logged)."""
    try:
        return LastComparison.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValidationError) as exc:
        log.warning("Ignoring the last comparison in %s, which cannot be read: %s", path, exc)
        return None
