"""Application settings, and the command line and environment variables derived from them.

One field is one setting: its ``settings.yaml`` key is the field name, its flag is ``--field-name``
(or the names in its ``cli`` metadata, text-generation-webui's where they differ), its
environment variable is ``WEBUI_FIELD_NAME`` and its ``--help`` text is the field's description.
The load options (:class:`~webui.params.LoadOptions`, under ``load:`` in ``settings.yaml``) are
flags the same way. ``server.py`` parses the command line with :func:`build_parser` and builds one
:class:`Settings` from, lowest first: defaults < ``settings.yaml`` < environment < command line,
and passes it to everything that needs it.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError
from pydantic.fields import FieldInfo

from webui.errors import SettingsError
from webui.params import LoadOptions
from webui.storage import read_yaml, write_yaml

log = logging.getLogger(__name__)

PROJECT_DIR = Path(__file__).resolve().parent.parent

#: Help groups of the command line.
MODEL, SERVER = "model", "server"
ENV_PREFIX = "WEBUI_"


def cli(
    *flags: str, group: str = SERVER, choices: tuple[str, ...] = (), env_fallbacks: tuple[str, ...] = ()
) -> dict[str, Any]:
    """``json_schema_extra`` of a field whose flag is not just ``--field-name`` in the server group.

    ``flags``: the option strings (default ``--field-name``; a bool also gets ``--no-...``);
    ``choices``: the values the flag accepts when the type does not say (a ``Literal`` does);
    ``env_fallbacks``: older environment variables read when ``WEBUI_<FIELD>`` is not set.
    """
    return {
        "cli": {"flags": list(flags), "group": group, "choices": list(choices), "env_fallbacks": list(env_fallbacks)}
    }


#: ``json_schema_extra`` of a setting that is no flag and no environment variable: state the UI
#: remembers in ``settings.yaml`` (or, for ``load``, a group whose fields are flags themselves).
NOT_A_FLAG: dict[str, Any] = {"cli": None}


class Settings(BaseModel):
    model_config = ConfigDict(extra="ignore", validate_assignment=True)

    user_data_dir: Path = Field(
        PROJECT_DIR,
        description="Folder with models/, presets/, characters/, logs/ "
        "(created and filled with the shipped files if new).",
    )
    model_dir: Path | None = Field(
        None,
        description="Folder that holds the models. Default: models/ in the user data folder.",
        json_schema_extra=cli(group=MODEL),
    )
    listen: bool = Field(
        False,
        description="Accept connections from other machines on your network (binds "
        "0.0.0.0). Off: only this machine (127.0.0.1).",
    )
    listen_host: str | None = Field(
        None, description="Address to bind, e.g. 192.168.1.5 (instead of the one --listen picks)."
    )
    listen_port: int = Field(7860, ge=0, le=65535, description="Port of the web UI (and of the API under /v1).")
    auto_launch: bool = Field(False, description="Open the UI in the browser at start.")
    api: bool = Field(False, description="Also serve the OpenAI-compatible API under /v1 on the same port.")
    api_key: str | None = Field(
        None, description="Require 'Authorization: Bearer KEY' on every /v1 request (implies --api)."
    )
    gradio_auth: str | None = Field(
        None,
        description="Ask for a log-in before the web UI opens: 'user:password' "
        "(several: 'u1:p1,u2:p2'). Use it with --listen.",
    )
    gradio_auth_path: Path | None = Field(
        None, description="File of 'user:password' lines (or comma-separated) for the web UI log-in."
    )
    users_file: Path | None = Field(
        None,
        description="Users who may log in (YAML: name, hashed password, role), made with scripts/users.py. "
        "Default: users.yaml in the user data folder, when there is one. Each user then has their own chats, "
        "notebook and settings.",
    )
    admin: str | None = Field(
        None,
        description="User(s) with the admin role (names separated by commas): they load, download and delete models and "
        "edit the shared presets and characters. Default: the roles in the users file, else the first user.",
    )
    api_keys_file: Path | None = Field(
        None,
        description="API keys per user (YAML, made with 'scripts/users.py add-key NAME'): /v1 requests are "
        "attributed to the key's user. Default: api-keys.yaml in the user data folder, when there is one.",
    )
    user_max_queued: int = Field(
        2,
        ge=0,
        le=1000,
        description="Generations one user (not an admin) may have running or waiting at once; more get "
        "'try again later' (HTTP 429). 0: no limit. Applies with log-in or API keys.",
    )
    user_max_tokens: int = Field(
        0,
        ge=0,
        le=1_000_000,
        description="Most new tokens one user (not an admin) may ask for in one request. 0: no limit.",
    )
    user_models: str | None = Field(
        None,
        description="Models users who are not admins may load (names separated by commas). Unset: they use the "
        "model the admin loaded.",
    )
    max_body_mb: float = Field(
        8.0,
        gt=0,
        description="Largest request body (MB) the server accepts; larger ones "
        "get 413. File uploads in the UI may be up to "
        "max_upload_mb.",
    )
    chat_window: int = Field(
        60,
        ge=0,
        le=100_000,
        description="Messages the chat box shows (the newest; older ones behind 'Show all messages'). 0: all.",
    )
    language: Literal["auto", "en", "ru", "zh"] = Field(
        "auto", description="Language of the web UI: en, ru, zh, or auto (each browser's own language)."
    )
    ui_language: Literal["auto", "en", "ru", "zh"] = Field(
        "auto",
        json_schema_extra=NOT_A_FLAG,
        description="The language this user chose for their pages (the language menu at the top): en, ru, zh, "
        "or auto (the browser's). --language, when given, is every page's.",
    )
    max_upload_mb: float = Field(200.0, gt=0, description="Largest file (MB) the UI accepts as an upload.")
    ui_updates_per_second: float = Field(
        10.0,
        gt=0,
        le=60,
        description="How often a streaming reply or notebook text is redrawn in the page. Each redraw costs "
        "the browser CPU the model would use: raise it on a fast machine, lower it if streaming in the page "
        "is slower than through the API.",
    )
    tools_folder: Path | None = Field(
        None,
        description="The one folder the chat tools read_file and list_files may read (nothing outside it). "
        "Unset: those tools refuse.",
    )
    tool_timeout: float = Field(
        30.0, gt=0, le=3600, description="Seconds a chat tool call may run before it is stopped with an error."
    )
    tool_result_max_chars: int = Field(
        8000,
        ge=1,
        le=1_000_000,
        description="Longest tool result (characters) given back to the model; longer ones are cut with a notice.",
    )
    tools_allow_read_only: bool = Field(
        False, description="Run read-only chat tools (current_time, read_file...) without asking first."
    )
    allow_image_urls: bool = Field(
        False,
        description="Let the API fetch http(s) image URLs in image_url parts (public addresses only). "
        "Off: only data: URLs are taken, and the server never fetches anything.",
    )
    model: str | None = Field(
        None,
        description="Model to load at start: a name in the models folder (a .gguf "
        "file or a model folder), or a path to one. Without it the UI "
        "starts with no model.",
        json_schema_extra=cli(group=MODEL),
    )
    loader: str | None = Field(
        None,
        description="Loader to use. Default: chosen from the model (.gguf -> llama.cpp, folder -> transformers).",
        json_schema_extra=cli(group=MODEL, choices=("llama.cpp", "transformers")),
    )
    embedding_model: str | None = Field(
        None,
        description="Embedding model to load at start for POST /v1/embeddings (RAG clients): a .gguf file or a "
        "sentence-transformers folder in the models folder, or a path to one. It runs beside the chat model.",
        json_schema_extra=cli(group=MODEL),
    )
    warm_cache_mb: int = Field(
        1024,
        ge=0,
        le=1_048_576,
        description="Disk space in MB for saved chat states (llama.cpp): a long chat's prompt is saved when the "
        "server goes idle and loaded again when the chat continues, also after a restart, instead of being "
        "read again. Least recently used states are deleted first. 0: off.",
        json_schema_extra=cli(group=MODEL),
    )
    models_budget_mb: int = Field(
        0,
        ge=0,
        le=16_777_216,
        description="RAM in MB that loaded models may take together. 0: one model at a time (loading one frees "
        "the other). Above 0: loading a model keeps the others loaded while they fit, unloading the least "
        "recently used ones when they do not, and API requests go to the model their 'model' field names.",
        json_schema_extra=cli(group=MODEL),
    )
    model_ttl: int = Field(
        0,
        ge=0,
        le=31_536_000,
        description="Seconds without a request after which a loaded model other than the main one (the one the "
        "Model tab loaded last) is unloaded. 0: never.",
        json_schema_extra=cli(group=MODEL),
    )
    load_on_demand: bool = Field(
        False,
        description="Load a model from the models folder when an API request names it and it is not loaded "
        "(within --models-budget-mb). Off: such a request gets a 404 naming the loaded models.",
        json_schema_extra=cli(group=MODEL),
    )
    embedding_ctx_size: int = Field(
        2048,
        ge=1,
        le=131072,
        description="Longest input in tokens the embedding model takes (at most its trained context); a longer "
        "one is refused. More costs memory: llama.cpp holds a whole input in one batch.",
        json_schema_extra=cli(group=MODEL),
    )
    load: LoadOptions = Field(
        default_factory=LoadOptions,
        json_schema_extra=NOT_A_FLAG,
        description="Options for loading models (n_ctx, threads...); each is a flag too (LOAD_CLI).",
    )
    preset: str | None = Field(
        "Default", description="Sampling preset chosen in the Parameters tab.", json_schema_extra=NOT_A_FLAG
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        json_schema_extra=NOT_A_FLAG,
        description="Sampling values that differ from the defaults (Parameters tab).",
    )
    template_overrides: dict[str, str] = Field(
        default_factory=dict,
        json_schema_extra=NOT_A_FLAG,
        description="Instruction template chosen per model (Chat tab).",
    )
    chat_character: str | None = Field(
        None, description="Character of the chat that was open last.", json_schema_extra=NOT_A_FLAG
    )
    chat_id: str | None = Field(
        None, description="The chat that was open last (restored on reload/restart).", json_schema_extra=NOT_A_FLAG
    )
    chat_setup: dict[str, Any] = Field(
        default_factory=dict,
        json_schema_extra=NOT_A_FLAG,
        description="Mode, system prompt, persona and instruction template last used in the Chat tab "
        "(a new chat starts with them; each chat keeps its own).",
    )
    compare: dict[str, Any] = Field(
        default_factory=dict,
        json_schema_extra=NOT_A_FLAG,
        description="The Compare tab's prompt, system prompt and rows (restored on reload/restart).",
    )

    @property
    def models_path(self) -> Path:
        return Path(self.model_dir) if self.model_dir else Path(self.user_data_dir) / "models"

    @property
    def host(self) -> str:
        if self.listen_host:
            return self.listen_host
        return "0.0.0.0" if self.listen else "127.0.0.1"

    @property
    def is_loopback(self) -> bool:
        """True when only this machine can connect."""
        return self.host in ("127.0.0.1", "localhost", "::1") or self.host.startswith("127.")

    def ui_credentials(self) -> list[tuple[str, str]]:
        """The (user, password) pairs that may log in to the UI; empty: no log-in asked."""
        pairs = parse_credentials(self.gradio_auth or "", "--gradio-auth")
        if self.gradio_auth_path:
            path = Path(self.gradio_auth_path)
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise SettingsError(f"Cannot read the log-in file {path}: {exc}") from exc
            from_file = parse_credentials(text, str(path))
            if not from_file:
                raise SettingsError(f"The log-in file {path} holds no 'user:password' line.")
            pairs += from_file
        return pairs

    @property
    def users_path(self) -> Path | None:
        """The users file in use: --users-file, else users.yaml in the user data folder if there is one."""
        if self.users_file:
            return Path(self.users_file)
        default = Path(self.user_data_dir) / "users.yaml"
        return default if default.is_file() else None

    @property
    def api_keys_path(self) -> Path | None:
        """The API keys file in use: --api-keys-file, else api-keys.yaml in the user data folder if there is one."""
        if self.api_keys_file:
            return Path(self.api_keys_file)
        default = Path(self.user_data_dir) / "api-keys.yaml"
        return default if default.is_file() else None

    @property
    def admin_names(self) -> list[str]:
        return [n.strip() for n in (self.admin or "").split(",") if n.strip()]

    @property
    def user_model_names(self) -> list[str]:
        return [n.strip() for n in (self.user_models or "").split(",") if n.strip()]

    def exposure_warnings(self) -> list[str]:
        """What an address reachable from other machines leaves open (printed loudly at start)."""
        if self.is_loopback:
            return []
        warnings = []
        where = f"{self.host}:{self.listen_port}"
        if not (self.gradio_auth or self.gradio_auth_path or self.users_path):
            warnings.append(
                f"WARNING: the web UI listens on {where} WITHOUT A PASSWORD: every machine on your network can "
                "use it, read your chats and characters, load and delete models. Add --gradio-auth user:password "
                "(or --gradio-auth-path FILE), or drop --listen."
            )
        if (self.api or self.api_key) and not (self.api_key or self.api_keys_path):
            warnings.append(
                f"WARNING: the API on {where}/v1 has NO API KEY: every machine on your network can use it. "
                "Add --api-key KEY."
            )
        return warnings

    @classmethod
    def from_file(cls, path: Path | None, overrides: dict[str, Any] | None = None, *, repair: bool = False) -> Settings:
        """Settings from a YAML file (missing file: defaults) with ``overrides`` on top.

        ``repair`` (the server's start): a file that cannot be read is moved aside (``settings.yaml.broken-<time>``,
        kept for the user to fix) and the defaults are used; values in the file that are not valid are left out
        (the file keeps them) - each said in :attr:`notices`, so a hand edit gone wrong never stops the app from
        starting. A bad value given on the command line still stops the start.
        """
        data: dict[str, Any] = {}
        notices: list[str] = []
        if path is not None and Path(path).exists():
            try:
                data = read_yaml(Path(path))
            except SettingsError as exc:
                if not repair:
                    raise
                notices.append(set_aside_notice(Path(path), exc.message, "the app started with the default settings"))
            unknown = set(data) - set(cls.model_fields)
            if unknown:
                log.warning("Ignoring unknown keys in %s: %s", path, ", ".join(sorted(unknown)))
        overrides = dict(overrides or {})
        load_over = overrides.pop("load", {}) or {}
        merged = {**data, **overrides, "load": {**(data.get("load") or {}), **load_over}}
        try:
            settings = cls.model_validate(merged)
        except ValidationError as exc:
            bad = _file_values_in(exc, merged, overrides, load_over) if repair else []
            if not bad:
                raise SettingsError(f"Invalid settings: {exc}") from exc
            for keys, problem in bad:
                holder = merged["load"] if keys[0] == "load" else merged
                value = holder.pop(keys[-1], None)
                notices.append(
                    f"{path}: {'.'.join(keys)}: {value!r} is not a valid value ({problem}); the default is used. "
                    "Fix or remove it in the file."
                )
            try:
                settings = cls.model_validate(merged)
            except ValidationError as again:
                raise SettingsError(f"Invalid settings: {again}") from again
        for notice in notices:
            log.warning("%s", notice)
        settings._notices = notices
        return settings

    #: What the start had to do about a broken settings file (see :meth:`from_file`): shown at start and
    #: in the Model tab.
    _notices: list[str] = PrivateAttr(default_factory=list)

    @property
    def notices(self) -> list[str]:
        return list(self._notices)


def set_aside_notice(path: Path, problem: str, instead: str) -> str:
    """Move a settings file that cannot be read aside (:func:`_move_aside`) and say so: what is wrong, what is
    used ``instead``, and where the file is kept (or why it could not be moved: a read-only folder)."""
    try:
        kept = f"The file is kept as {_move_aside(path).name}: fix it and rename it back to {path.name}, or delete it."
    except OSError as moving:  # (a read-only folder): it stays, and saving settings says it cannot
        kept = f"It could not be set aside ({moving.strerror or moving}): fix or delete it."
    return f"{path} could not be read ({problem}), so {instead}. {kept}"


def _move_aside(path: Path) -> Path:
    """Rename a settings file that cannot be read to ``<name>.broken-<time>`` (never over another one)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.broken-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.broken-{stamp}-{n}")
    os.replace(path, aside)
    return aside


def _file_values_in(
    exc: ValidationError, merged: dict[str, Any], overrides: dict[str, Any], load_over: dict[str, Any]
) -> list[tuple[tuple[str, ...], str]]:
    """The settings-file values ``exc`` finds invalid, as (key path, problem); [] when any invalid value came
    from the command line or the environment (that stops the start) or cannot be told."""
    found: list[tuple[tuple[str, ...], str]] = []
    for error in exc.errors():
        loc = tuple(str(part) for part in error.get("loc", ()))
        if not loc:
            return []
        if loc[0] == "load" and len(loc) > 1:
            keys: tuple[str, ...] = ("load", loc[1])
            given = loc[1] in load_over or loc[1] not in (merged.get("load") or {})
        else:
            keys = (loc[0],)
            given = loc[0] in overrides or loc[0] not in merged
        if given:
            return []
        if keys not in [k for k, _ in found]:
            found.append((keys, str(error.get("msg", "invalid"))))
    return found


def parse_credentials(text: str, source: str) -> list[tuple[str, str]]:
    """``user:password`` entries, separated by commas or new lines (text-generation-webui's format).

    Blank lines and lines starting with ``#`` are skipped. The password may contain ':'.
    """
    pairs: list[tuple[str, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith("#"):
            continue
        for entry in line.split(","):
            entry = entry.strip()
            if not entry:
                continue
            user, sep, password = entry.partition(":")
            if not sep or not user.strip() or not password:
                raise SettingsError(
                    f"{source}: line {number} has an entry that is not 'user:password' "
                    "(not shown: it may hold a password)."
                )
            pairs.append((user.strip(), password))
    return pairs


#: The keys the app itself writes back to the settings file (what the user chose in the UI).
REMEMBERED_KEYS = (
    "model",
    "loader",
    "load",
    "preset",
    "params",
    "chat_character",
    "chat_id",
    "template_overrides",
    "chat_setup",
    "compare",
    "tools_allow_read_only",
    "ui_language",
    "chat_window",
    "tools_folder",
    "embedding_model",
)


def remember(path: Path, **updates: Any) -> None:
    """Write ``updates`` into the settings file, keeping every other key in it.

    A file that no longer parses is left alone (renamed aside would hide the
    user's edits); the error says so.
    """
    unknown = set(updates) - set(REMEMBERED_KEYS)
    if unknown:
        raise ValueError(f"not remembered settings: {sorted(unknown)}")
    path = Path(path)
    data = read_yaml(path) if path.exists() else {}
    for key, value in updates.items():
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json")
        data[key] = value
    write_yaml(path, data)


# ---- the command line and the environment, derived from the fields above ---------------------

#: Flags of the load options (``webui/params.py``) that are not just ``--field-name`` in the model
#: group: text-generation-webui's names, so its command lines work here unchanged.
LOAD_CLI: Mapping[str, dict[str, Any]] = types.MappingProxyType(
    {
        "n_ctx": cli("--ctx-size", "--n-ctx", group=MODEL),
        "n_gpu_layers": cli("--gpu-layers", "--n-gpu-layers", group=MODEL),
        "use_mmap": cli("--mmap", group=MODEL),  # gives --no-mmap
        "use_mlock": cli("--mlock", group=MODEL),
        # text-generation-webui calls it --model-draft
        "draft_model": cli("--draft-model", "--model-draft", group=MODEL),
        # text-generation-webui's Tabby variables
        "remote_url": cli(group=MODEL, env_fallbacks=("tabby_url",)),
        "remote_key": cli(group=MODEL, env_fallbacks=("tabby_key",)),
    }
)


class LaunchOptions(BaseModel):
    """Options of one start: command line and environment only, never read from or saved to settings.yaml."""

    model_config = ConfigDict(extra="forbid")

    settings: Path | None = Field(
        None, description="Settings YAML file to read. Default: settings.yaml in the user data folder, if present."
    )
    default_model: str | None = Field(
        None,
        description="Model to load when neither --model nor the saved "
        "settings name one (start.sh passes the starter model "
        "here).",
        json_schema_extra=cli(group=MODEL),
    )
    model_menu: bool = Field(
        False,
        description="At start, list the models in the terminal and pick one by number.",
        json_schema_extra=cli(group=MODEL),
    )
    verbose: bool = Field(False, description="Log more detail.")

    def settings_file(self, overrides: Mapping[str, Any]) -> Path:
        """``--settings``, else settings.yaml in the user data folder the overrides (or the default) name."""
        if self.settings is not None:
            return Path(self.settings)
        return Path(overrides.get("user_data_dir") or PROJECT_DIR) / "settings.yaml"


#: The models whose fields are options, and the prefix of their ``dest`` (``load.n_ctx``).
_SCOPES: tuple[tuple[str, type[BaseModel]], ...] = (
    ("settings", Settings),
    ("launch", LaunchOptions),
    ("load", LoadOptions),
)


@dataclass(frozen=True)
class Option:
    """One field as the command line and the environment see it."""

    scope: str  # "settings", "load" (Settings.load) or "launch" (LaunchOptions)
    owner: type[BaseModel]  # the model the field belongs to
    name: str
    field: FieldInfo
    flags: tuple[str, ...]
    group: str
    choices: tuple[str, ...]
    env: tuple[str, ...]  # WEBUI_<FIELD>, then the fallbacks

    @property
    def dest(self) -> str:
        return f"{self.scope}.{self.name}"

    @property
    def description(self) -> str:
        return self.field.description or ""

    @property
    def is_switch(self) -> bool:
        """A bool: ``--x`` turns it on, ``--no-x`` off."""
        return _value_type(self.field.annotation) is bool

    def convert(self, raw: str) -> Any:
        """``raw`` (typed or from the environment) as the field's type, checked against its limits."""
        try:  # exactly as the model checks the field: type, limits, validators
            checked = self.owner.__pydantic_validator__.validate_assignment(
                self.owner.model_construct(), self.name, raw
            )
            value = getattr(checked, self.name)
        except ValidationError as exc:
            raise ValueError("; ".join(err["msg"] for err in exc.errors())) from exc
        if self.choices and str(value) not in self.choices:
            raise ValueError(f"not one of {', '.join(self.choices)}")
        return value

    def help_text(self) -> str:
        """The description, plus the default and the environment variables (escaped for argparse)."""
        default = self.field.get_default(call_default_factory=True)
        notes = []
        if isinstance(default, bool):
            notes.append(f"default: {'on' if default else 'off'}")
        elif default not in (None, ""):
            notes.append(f"default: {default}")
        notes.append("env: " + " or ".join(self.env))
        return f"{self.description} ({'; '.join(notes)})".replace("%", "%%")


def _value_type(annotation: Any) -> Any:
    """``X`` of ``X`` or ``X | None``."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def options() -> list[Option]:
    """Every setting that is a flag and an environment variable, in help order.

    A field is one unless marked ``NOT_A_FLAG``; a field whose type cannot be typed on a command
    line (a dict, a list...) must be marked, or this raises: no setting is left out unnoticed.
    """
    out: list[Option] = []
    for scope, model in _SCOPES:
        for name, field in model.model_fields.items():
            extra: dict[str, Any] = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            meta = (LOAD_CLI.get(name) if scope == "load" else None) or extra
            if "cli" in meta and meta["cli"] is None:
                continue
            spec: dict[str, Any] = meta.get("cli") or {}
            kind = _value_type(field.annotation)
            choices = tuple(spec.get("choices") or ())
            if get_origin(kind) is Literal:
                choices = tuple(str(v) for v in get_args(kind))
            elif kind not in (bool, int, float, str, Path):
                raise TypeError(
                    f"{model.__name__}.{name} ({field.annotation}) cannot be a command-line flag; "
                    "mark it NOT_A_FLAG or give it a plain type"
                )
            flags = tuple(spec.get("flags") or ("--" + name.replace("_", "-"),))
            env = (ENV_PREFIX + name.upper(), *spec.get("env_fallbacks", ()))
            group = spec.get("group", MODEL if scope == "load" else SERVER)
            out.append(Option(scope, model, name, field, flags, group, choices, env))
    return out


def _argparse_type(option: Option) -> Any:
    def convert(raw: str) -> Any:
        try:
            return option.convert(raw)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{raw!r}: {exc}") from exc

    convert.__name__ = option.name
    return convert


def build_parser() -> argparse.ArgumentParser:
    """The command line, one option per setting. Options not typed are absent from the result."""
    parser = argparse.ArgumentParser(
        description="Local LLM web UI: load a model on this machine and write or chat with it in the browser.",
        epilog="Every option is also a key of settings.yaml (the name with underscores; load options such as "
        "n_ctx under 'load:'; not the launch options --settings, --default-model, --model-menu, "
        "--verbose) and an environment variable (shown with each option). Lowest first: defaults, "
        "settings.yaml, environment, command line.",
        argument_default=argparse.SUPPRESS,
    )
    groups = {MODEL: parser.add_argument_group("model"), SERVER: parser.add_argument_group("server")}
    for option in options():
        kwargs: dict[str, Any] = {"dest": option.dest, "help": option.help_text()}
        if option.is_switch:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = _argparse_type(option)
            if option.choices:
                kwargs["choices"] = option.choices
            else:
                kwargs["metavar"] = option.name.upper()
        groups[option.group].add_argument(*option.flags, **kwargs)
    return parser


def values_from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings given as environment variables, by option ``dest``. An empty variable counts as unset."""
    values: dict[str, Any] = {}
    for option in options():
        for var in option.env:
            raw = environ.get(var)
            if raw is None or not raw.strip():
                continue
            try:
                values[option.dest] = option.convert(raw)
            except ValueError as exc:  # the value itself is not shown: it may be a key or a password
                raise SettingsError(f"Environment variable {var}: {exc}") from exc
            break
    return values


def split_values(values: Mapping[str, Any]) -> tuple[dict[str, Any], LaunchOptions]:
    """Option values by ``dest`` -> (overrides for :meth:`Settings.from_file`, the launch options).

    The overrides hold only what was given, load options under ``"load"``: ``server.py`` hands
    those to ``services.load_model(explicit=...)`` so they win over a model's saved settings.
    Two text-generation-webui habits apply: ``--model`` may be a path anywhere (its folder becomes
    the models folder), and ``--remote-url`` without ``--model`` loads the remote server's model.
    """
    top: dict[str, Any] = {}
    load: dict[str, Any] = {}
    launch: dict[str, Any] = {}
    for dest, value in values.items():
        scope, _, name = dest.partition(".")
        {"settings": top, "load": load, "launch": launch}[scope][name] = value
    model = top.get("model")
    if load.get("remote_url") and not model:
        top["loader"], top["model"] = "remote", load.get("remote_model") or "remote"
    if model and ("/" in model or "\\" in model) and Path(model).exists():
        # Not resolved: a model linked into a folder stays in that folder, beside its projector or draft model.
        path = Path(os.path.normpath(Path(model).absolute()))
        top["model_dir"], top["model"] = path.parent, path.name
    return {**top, "load": load}, LaunchOptions.model_validate(launch)
