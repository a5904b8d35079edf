"""Sampling parameters and load options: the one list of names, defaults, ranges and descriptions.

Field names are llama-cpp-python's keyword names. Aliases accept the keys that
text-generation-webui writes in its presets (``max_new_tokens``,
``repetition_penalty``...), so its files load with the same meaning. The
Parameters tab, preset files and API request bodies are all built from this
class, so a default or a range is written down exactly once.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator


def _field(
    default: Any,
    description: str,
    *,
    ui_step: float | None = None,
    ui_max: float | None = None,
    aliases: tuple[str, ...] = (),
    **kwargs: Any,
) -> Any:
    """A field with its range; ``ui_step``/``ui_max``: a slider's step, and its end when the allowed
    range is too wide to slide through (the number box beside a slider still takes up to ``le``)."""
    extra: dict[str, Any] = {"ui_step": ui_step} if ui_step is not None else {}
    if ui_max is not None:
        extra["ui_max"] = ui_max
    validation_alias = AliasChoices(*aliases) if aliases else None
    return Field(
        default, description=description, validation_alias=validation_alias, json_schema_extra=extra or None, **kwargs
    )


class SamplingParams(BaseModel):
    """How the next tokens are chosen. Every loader maps these names to its own."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", validate_assignment=True)

    max_tokens: int = _field(
        384,
        "Most tokens to generate for one reply (a token is about 3/4 of a word). 384 fits a chat answer; "
        "raise it for long texts. The reply stops earlier if the model ends it.",
        ge=1,
        le=32768,
        ui_step=1,
        ui_max=8192,
        aliases=("max_tokens", "max_new_tokens", "n_predict"),
    )
    temperature: float = _field(
        0.7,
        "Randomness. Lower (0.1-0.5) for facts and code, higher (0.8-1.2) for creative text; "
        "0 always picks the most likely token.",
        ge=0.0,
        le=5.0,
        ui_step=0.01,
    )
    top_p: float = _field(
        0.9,
        "Nucleus sampling: keep the smallest set of tokens whose probabilities add up to this. "
        "1 disables it; lower it for safer, more focused text.",
        ge=0.0,
        le=1.0,
        ui_step=0.01,
    )
    top_k: int = _field(
        40, "Keep only the K most likely tokens. 0 disables it; 20-50 is a common range.", ge=0, le=1000, ui_step=1
    )
    min_p: float = _field(
        0.05,
        "Drop tokens whose probability is below this fraction of the best token's. "
        "0 disables it; 0.05-0.1 removes nonsense while keeping variety.",
        ge=0.0,
        le=1.0,
        ui_step=0.01,
    )
    typical_p: float = _field(
        1.0,
        "Locally typical sampling. 1 disables it; values like 0.9 keep tokens of 'typical' surprise.",
        ge=0.0,
        le=1.0,
        ui_step=0.01,
    )
    repeat_penalty: float = _field(
        1.1,
        "Penalty for repeating recent tokens. 1 disables it; the default 1.1 keeps small models from "
        "looping; above 1.2 harms grammar.",
        ge=0.0,
        le=5.0,
        ui_step=0.01,
        aliases=("repeat_penalty", "repetition_penalty"),
    )
    presence_penalty: float = _field(
        0.0,
        "Flat penalty for any token already in the text; raise it to push the model to new topics.",
        ge=-2.0,
        le=2.0,
        ui_step=0.05,
    )
    frequency_penalty: float = _field(
        0.0,
        "Penalty growing with how often a token already appeared; raise it against repeated words.",
        ge=-2.0,
        le=2.0,
        ui_step=0.05,
    )
    mirostat_mode: int = _field(
        0,
        "Mirostat adaptive sampling (0 off, 1 or 2 on). When on, it replaces top_k/top_p/min_p and "
        "steers towards the target surprise tau.",
        ge=0,
        le=2,
        ui_step=1,
        aliases=("mirostat_mode", "mirostat"),  # mirostat: llama.cpp's server's name
    )
    mirostat_tau: float = _field(
        5.0, "Mirostat target surprise: lower is more focused, higher more varied.", ge=0.0, le=20.0, ui_step=0.01
    )
    mirostat_eta: float = _field(0.1, "Mirostat learning rate: how fast it adapts.", ge=0.0, le=1.0, ui_step=0.01)
    seed: int = _field(
        -1,
        "Random seed. -1 picks a new one each time (the one used is shown after generating); "
        "set a number to get the same text again.",
        ge=-1,
        le=2**32 - 1,
        ui_step=1,
    )
    do_sample: bool = _field(
        True,
        "Sample from the distribution. Off means greedy decoding: always the most likely token, "
        "the same text every time.",
    )
    stop: list[str] = _field(
        [],
        "Custom stopping strings: generation ends when one appears (it is not included in the output).",
        aliases=("stop", "stopping_strings", "custom_stopping_strings"),
    )
    repeat_last_n: int = _field(
        64,
        "Penalty range: how many recent tokens the repeat, presence and frequency penalties look at. "
        "-1 = the whole context, 0 = none.",
        ge=-1,
        le=32768,
        ui_step=1,
        aliases=("repeat_last_n", "repetition_penalty_range", "penalty_last_n"),
    )
    dry_multiplier: float = _field(
        0.8,
        "DRY (Don't Repeat Yourself) strength: penalises continuing a sequence that already appeared. "
        "0 disables it; the default 0.8 stops the loops of small models and long texts.",
        ge=0.0,
        le=5.0,
        ui_step=0.01,
    )
    dry_base: float = _field(
        1.75, "DRY: how fast the penalty grows with the length of the repeated sequence.", ge=1.0, le=4.0, ui_step=0.01
    )
    dry_allowed_length: int = _field(
        2, "DRY: repeated sequences up to this many tokens are not penalised.", ge=1, le=20, ui_step=1
    )
    dry_penalty_last_n: int = _field(
        -1, "DRY: how many recent tokens to scan for repeats. -1 = the whole context.", ge=-1, le=32768, ui_step=1
    )
    dry_sequence_breakers: list[str] = _field(
        ["\n", ":", '"', "*"], "DRY: strings that end a sequence (repeats are not tracked across them)."
    )
    xtc_probability: float = _field(
        0.0,
        "XTC (Exclude Top Choices): chance per token to remove the most likely tokens, for more creative "
        "text. 0 disables it; try 0.5.",
        ge=0.0,
        le=1.0,
        ui_step=0.01,
    )
    xtc_threshold: float = _field(
        0.1,
        "XTC: tokens above this probability are candidates for removal (all but the least likely of "
        "them). Higher removes fewer.",
        ge=0.0,
        le=0.5,
        ui_step=0.01,
    )
    prompt_lookup: int = _field(
        0,
        "Prompt lookup (speculative decoding, llama.cpp): each step also tries up to this many tokens that "
        "followed the same words earlier in the prompt or reply, and keeps those the sampler agrees with. "
        "Faster only when the reply copies the prompt (editing, quoting code); on free text it costs time. "
        "The text stays the same with a bf16 or q8_0 KV cache (the model's cache type); with fp16, past 512 "
        "tokens of context a close choice can go the other way. 0: off.",
        ge=0,
        le=16,
        aliases=("prompt_lookup", "prompt_lookup_num_tokens", "draft_max"),
    )
    ban_eos_token: bool = _field(
        False,
        "Never let the model end its reply: it always writes until the token limit.",
        aliases=("ban_eos_token", "ignore_eos"),  # ignore_eos: llama.cpp's server's name
    )
    skip_special_tokens: bool = _field(True, "Hide special tokens (like <|im_end|>) in the output. Untick to see them.")
    grammar_string: str = _field(
        "",
        "GBNF grammar that the output must follow (llama.cpp), e.g. to force JSON. Empty = free text.",
        aliases=("grammar_string", "grammar"),  # grammar: llama.cpp's server's name
    )
    json_schema: str = _field(
        "",
        "A JSON schema the reply must match (the output is constrained to valid JSON of this schema); "
        "empty: off. Used instead of the grammar when set.",
    )
    truncation_length: int = _field(
        0,
        "Longest prompt in tokens: older text beyond it is cut from the start. 0 = the model's context size.",
        ge=0,
        le=1_048_576,
        ui_step=1,
    )

    @field_validator("json_schema", mode="before")
    @classmethod
    def _schema_as_text(cls, value: Any) -> Any:
        # llama.cpp's server (and its clients) send the schema itself, an object; a preset or the page, text.
        return json.dumps(value) if isinstance(value, dict) else value

    @field_validator("stop", "dry_sequence_breakers", mode="before")
    @classmethod
    def _strings_as_list(cls, value: Any) -> Any:
        # text-generation-webui writes lists of strings as one string of quoted, comma-separated
        # items ('"\\n", "User:"'); a plain string is a single item.
        if value is None:
            return []
        if isinstance(value, str):
            text = value.strip()
            if text.startswith('"'):
                try:
                    items = json.loads(f"[{text}]")
                except json.JSONDecodeError:
                    return [value]
                if all(isinstance(i, str) for i in items):
                    return items
            return [value] if value else []
        return value

    @property
    def greedy(self) -> bool:
        return not self.do_sample or self.temperature == 0.0

    def non_default(self) -> dict[str, Any]:
        """The values that differ from the defaults (what a preset file stores)."""
        defaults = SamplingParams()
        return {k: v for k, v in self.model_dump().items() if getattr(defaults, k) != v}


SAMPLING_FIELDS: tuple[str, ...] = tuple(SamplingParams.model_fields)


class LoadOptions(BaseModel):
    """Options for loading a model. Each loader reads the ones in its ``option_fields``."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    n_ctx: int = Field(
        4096,
        ge=0,
        le=1_048_576,
        json_schema_extra={"ui_max": 131072},
        description="Context size in tokens (prompt + reply). 0 uses the length the model "
        "was trained for. Larger needs more RAM.",
    )
    threads: int = Field(0, ge=0, le=512, description="CPU threads for generation. 0 picks the number of cores.")
    n_gpu_layers: int = Field(
        0,
        ge=-1,
        le=1000,
        description="Layers to offload to the GPU (-1 = all). Needs a GPU build of "
        "llama-cpp-python; 0 runs on the CPU only.",
    )
    n_batch: int = Field(512, ge=1, le=65536, description="Prompt tokens processed per batch.")
    use_mmap: bool = Field(
        True,
        description="Map the model file into memory instead of reading it all "
        "(faster loads, shares pages between processes).",
    )
    use_mlock: bool = Field(False, description="Lock the model in RAM so the OS never swaps it out.")
    repack: bool = Field(
        False,
        description="llama.cpp: repack the weights for the CPU's wide kernels. May read prompts faster on some "
        "CPUs (Q4_0 models), but a token's result then depends on the tokens beside it in its batch: the same "
        "request can give another text after a different one. Off: the same text every time.",
    )
    mmproj: str = Field(
        "",
        max_length=4096,
        description="llama.cpp vision: the projector file (mmproj*.gguf) loaded with the model: a file name in "
        "the model's folder. Empty: the one next to the model, if any; 'none': no vision.",
    )
    parallel: int = Field(
        0,
        ge=0,
        le=64,
        json_schema_extra={"ui_max": 16},
        description="llama.cpp: requests decoded at the same time (slots), each with its own context of "
        "Context size tokens. 1: one at a time. 0: 4 when the memory allows (fewer when it does not).",
    )
    cache_type: Literal["fp16", "bf16", "q8_0"] = Field(
        "fp16",
        description="llama.cpp: how the KV cache stores keys and values. fp16: fastest prompt reading. bf16 or "
        "q8_0 (half the memory): a request's text never depends on the requests beside it, prompt lookup or a "
        "draft model (with fp16 it can once the context passes 512 tokens); prompts read slower.",
    )
    draft_model: str = Field(
        "",
        max_length=4096,
        description="llama.cpp: a smaller model of the same family (the same tokenizer) that guesses the next "
        "tokens for the model to check several at once: a .gguf file name in the model's folder or the models "
        "folder. The text stays the model's; faster when the model is several times bigger. Empty: none.",
    )
    draft_max: int = Field(
        4,
        ge=1,
        le=16,
        description="llama.cpp: most tokens the draft model guesses per step (it stops earlier where it is unsure).",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weight precision for transformers. auto: float32 on CPU, float16 on GPU."
    )
    device: str = Field(
        "cpu",
        pattern=r"^(cpu|cuda(:\d+)?|mps|auto)$",
        description="Where transformers runs the model: cpu, cuda, cuda:N, mps or auto.",
    )
    remote_url: str = Field(
        "",
        description="remote: address of an OpenAI-compatible server, e.g. "
        "http://127.0.0.1:5000 (Tabby, llama.cpp server, vLLM, LM Studio...).",
    )
    remote_key: str = Field("", description="remote: its API key, if it needs one.")
    remote_model: str = Field("", description="remote: the model name to ask for (empty: the first it lists).")
    remote_api: Literal["auto", "completions", "chat"] = Field(
        "auto",
        description="remote: which API to use. completions: the prompt is built here (templates, modes); "
        "chat: the server applies its own template (for servers with only /v1/chat/completions); "
        "auto: completions when the server offers it.",
    )
    trust_remote_code: bool = Field(
        False, description="Allow a transformers model folder to run its own Python code. Only for models you trust."
    )


#: Sampling fields that change how fast the text comes, never the text: a loader without them runs the
#: request anyway (the API names them in ``x-webui-ignored-fields``).
SPEED_ONLY_FIELDS: tuple[str, ...] = ("prompt_lookup",)
