"""The two kinds of embedding model: a GGUF run by llama.cpp, and a sentence-transformers folder run by transformers.

An :class:`Embedder` tokenizes text and turns token-id sequences into one raw (not normalised) vector
each. Everything shared - input checks, batching, truncation, normalising, counting, the lock - is in
``webui.models.embeddings``.

Both kinds take the per-token vectors of the model's last layer and pool them here, with numpy:

* llama.cpp returns per-token vectors when its context has no pooling, and a model that declares none
  (a chat model such as SmolLM2) would give one vector per token. So the context never pools: we pool
  the way the GGUF declares (``<arch>.pooling_type``: mean, cls or last) and by the mean when it
  declares nothing. Rerankers (pooling "rank") give a score, not a vector, and are refused.
* A transformers folder is pooled as its ``modules.json`` / ``1_Pooling/config.json`` say (what
  sentence-transformers does), by the mean when there are none. Modules we do not run (a Dense
  projection, ...) are refused: the vectors would silently differ from the model's own.

llama.cpp aborts the whole process when a model with bidirectional attention (BERT-style encoders, and
some decoders llama.cpp marks so in code) gets a batch larger than its micro-batch, and a mean over a
sequence split across micro-batches is silently wrong. So the micro-batch is the whole context, and an
input is at most ``n_ctx`` tokens: every decode holds whole inputs.
"""

from __future__ import annotations

import json
import logging
import math
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from webui.errors import ModelLoadError
from webui.loaders.llamacpp import check_gguf_file, default_threads
from webui.loaders.transformers import check_hf_folder, is_hf_folder
from webui.models.facts import gguf_facts

log = logging.getLogger(__name__)

#: How a sequence's token vectors become one vector.
POOLINGS = ("mean", "cls", "last", "max", "mean_sqrt_len", "weighted_mean")
#: llama.cpp's ``llama_pooling_type`` values (GGUF ``<arch>.pooling_type``).
GGUF_POOLING = {0: "mean", 1: "mean", 2: "cls", 3: "last"}
GGUF_RANK = 4
#: Sequences one transformers forward pass takes at most, and padded tokens (sequences x longest).
HF_BATCH_SEQUENCES = 32
HF_BATCH_TOKENS = 8192


def pool(vectors: Any, how: str) -> Any:
    """One vector from a sequence's token vectors (``(n_tokens, dims)``, float32)."""
    import numpy as np

    if how == "cls":
        return vectors[0]
    if how == "last":
        return vectors[-1]
    if how == "max":
        return vectors.max(axis=0)
    if how == "mean_sqrt_len":
        return vectors.sum(axis=0) / math.sqrt(len(vectors))
    if how == "weighted_mean":  # SGPT: later tokens (which have seen more of the text) weigh more
        weights = np.arange(1, len(vectors) + 1, dtype=np.float32)[:, None]
        return (vectors * weights).sum(axis=0) / weights.sum()
    return vectors.mean(axis=0)


class Embedder(ABC):
    """One loaded embedding model. Not thread-safe: ``EmbeddingModels`` uses it from one thread only."""

    #: What runs it ("llama.cpp" or "transformers"), shown in the UI and the API.
    kind: ClassVar[str]
    #: A batch is paid by its padded size (sequences x longest), not by its tokens.
    padded: ClassVar[bool] = False

    dims: int
    #: The longest input in tokens (the context the model was loaded with).
    n_ctx: int
    n_vocab: int
    pooling: str
    #: Most tokens in one batch (all its sequences together; sequences x longest when ``padded``) and most
    #: sequences. A single sequence is always a batch of its own, whatever it costs.
    batch_tokens: int
    batch_sequences: int
    #: Special tokens the tokenizer puts before and after a text (kept when a long input is truncated).
    n_prefix: int = 0
    n_suffix: int = 0

    @abstractmethod
    def tokenize(self, text: str, special: bool = True) -> list[int]:
        """``text``'s token ids, with the model's special tokens around it when ``special``."""

    @abstractmethod
    def embed_tokens(self, sequences: list[list[int]]) -> list[Any]:
        """One raw float32 vector per sequence; the caller keeps a batch within ``batch_tokens`` /
        ``batch_sequences`` and every sequence within ``n_ctx``."""

    @abstractmethod
    def close(self) -> None: ...

    def measure_specials(self) -> None:
        """How many special tokens the tokenizer adds before and after a text (BERT: [CLS] ... [SEP])."""
        bare = self.tokenize("a", special=False)
        whole = self.tokenize("a", special=True)
        for start in range(len(whole) - len(bare) + 1):
            if whole[start : start + len(bare)] == bare:
                self.n_prefix, self.n_suffix = start, len(whole) - start - len(bare)
                return


class LlamaEmbedder(Embedder):
    """A GGUF on llama.cpp, in a context of its own (it may run beside the chat model's)."""

    kind: ClassVar[str] = "llama.cpp"

    def __init__(self, llm: Any, pooling: str) -> None:
        self._llm = llm
        self.dims = int(llm.n_embd())
        # never more than one micro-batch (llama.cpp may round the context up)
        self.n_ctx = min(int(llm.n_ctx()), int(llm.context_params.n_ubatch))
        self.n_vocab = int(llm.n_vocab())
        self.pooling = pooling
        self.batch_tokens = int(llm.context_params.n_ubatch)
        # One input per decode: llama.cpp's kernels for a many-token batch round differently from those
        # for a short one, so with quantized weights a text's vector would depend (in the fifth decimal,
        # measured on SmolLM2 Q4_1) on the other inputs of its request. Alone it is always the same
        # vector; batching sped up SmolLM2 by 1.7x and all-MiniLM-L6-v2 not at all on these machines.
        self.batch_sequences = 1

    @classmethod
    def open(cls, path: Path, ctx_size: int, threads: int | None = None) -> LlamaEmbedder:
        check_gguf_file(path)
        facts = gguf_facts(path)
        arch = facts.architecture or ""
        declared = facts.metadata.get(f"{arch}.pooling_type")
        if declared == GGUF_RANK:
            raise ModelLoadError(
                f"{path.name} is a reranker (its GGUF declares pooling 'rank'): it scores pairs of texts and "
                "gives no embedding vectors. Load an embedding model instead."
            )
        pooling = GGUF_POOLING.get(declared if isinstance(declared, int) else 0, "mean")
        n_ctx = max(8, min(ctx_size, facts.context_length or ctx_size))
        try:
            import llama_cpp
        except ImportError as exc:  # pragma: no cover - set-up installs it
            raise ModelLoadError("llama-cpp-python is not installed. Run ./start.sh to set up.") from exc
        threads = threads or default_threads()
        try:
            llm = llama_cpp.Llama(
                model_path=str(path),
                embedding=True,
                pooling_type=llama_cpp.LLAMA_POOLING_TYPE_NONE,  # we pool (see the module's docstring)
                n_ctx=n_ctx,
                n_batch=n_ctx,
                n_ubatch=n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(
                f"llama.cpp could not load {path.name} as an embedding model: {exc}. The file may be truncated "
                "or use an architecture this llama.cpp build does not know (update llama-cpp-python)."
            ) from exc
        embedder = cls(llm, pooling)
        embedder.measure_specials()
        return embedder

    def tokenize(self, text: str, special: bool = True) -> list[int]:
        # special=False below: a text that contains "<|im_end|>" or "[SEP]" is text, not that token
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=special, special=False))

    def embed_tokens(self, sequences: list[list[int]]) -> list[Any]:
        import llama_cpp
        import numpy as np

        llm = self._llm
        batch = llm._batch
        batch.reset()
        for seq_id, tokens in enumerate(sequences):
            batch.add_sequence(tokens, seq_id, True)  # every token an output: we pool them
        llm._ctx.kv_cache_clear()  # each batch starts from an empty cache: no sequence sees another
        llm._ctx.decode(batch)
        total = sum(len(s) for s in sequences)
        pointer = llama_cpp.llama_get_embeddings(llm._ctx.ctx)
        # The outputs are stored in batch order, one row per token (llama.h); copied before the next decode.
        rows = np.ctypeslib.as_array(pointer, shape=(total, self.dims)).astype(np.float32, copy=True)
        out, at = [], 0
        for tokens in sequences:
            out.append(pool(rows[at : at + len(tokens)], self.pooling))
            at += len(tokens)
        return out

    def close(self) -> None:
        llm, self._llm = self._llm, None
        if llm is not None:
            llm.close()


class TransformersEmbedder(Embedder):
    """A sentence-transformers style folder (or any encoder/decoder folder) on transformers, float32 on the CPU."""

    kind: ClassVar[str] = "transformers"
    padded: ClassVar[bool] = True

    def __init__(self, model: Any, tokenizer: Any, pooling: str, n_ctx: int) -> None:
        self._model = model
        self._tok = tokenizer
        self.pooling = pooling
        self.n_ctx = n_ctx
        self.dims = int(model.config.hidden_size)
        self.n_vocab = int(model.get_input_embeddings().num_embeddings)
        self.batch_tokens = max(HF_BATCH_TOKENS, n_ctx)
        self.batch_sequences = HF_BATCH_SEQUENCES
        pad = tokenizer.pad_token_id
        self._pad = int(pad) if pad is not None else 0

    @classmethod
    def open(cls, path: Path, ctx_size: int) -> TransformersEmbedder:
        config = check_hf_folder(path, trust_remote_code=False)
        weights_dir, pooling, seq_len = sentence_transformers_layout(path)
        try:
            import torch
            from transformers import AutoModel, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - set-up installs them
            raise ModelLoadError("transformers and torch are not installed. Run ./start.sh to set up.") from exc
        try:
            tokenizer = AutoTokenizer.from_pretrained(weights_dir)
            model = AutoModel.from_pretrained(weights_dir, dtype=torch.float32, use_safetensors=True)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelLoadError(f"transformers could not load {path.name} as an embedding model: {exc}") from exc
        model.eval()
        limits = [ctx_size, seq_len, config.get("max_position_embeddings")]
        tok_max = getattr(tokenizer, "model_max_length", None)
        if isinstance(tok_max, int) and tok_max < 1_000_000:  # "no limit" is a huge number there
            limits.append(tok_max)
        n_ctx = min(int(n) for n in limits if isinstance(n, int) and n > 0)
        try:
            embedder = cls(model, tokenizer, pooling, n_ctx)
            embedder.measure_specials()
        except (AttributeError, TypeError, ValueError) as exc:  # a model with no plain hidden size or tokenizer
            raise ModelLoadError(f"{path.name} cannot be used as an embedding model: {exc}") from exc
        return embedder

    def tokenize(self, text: str, special: bool = True) -> list[int]:
        # verbose=False: a long text is our error to give (InputTooLongError), not a tokenizer warning
        return list(self._tok(text, add_special_tokens=special, verbose=False)["input_ids"])

    def embed_tokens(self, sequences: list[list[int]]) -> list[Any]:
        import torch

        longest = max(len(s) for s in sequences)
        # Padded on the right, always: a decoder's positions then start at 0 for every sequence.
        ids = torch.full((len(sequences), longest), self._pad, dtype=torch.long)
        mask = torch.zeros((len(sequences), longest), dtype=torch.long)
        for i, tokens in enumerate(sequences):
            ids[i, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            mask[i, : len(tokens)] = 1
        with torch.inference_mode():
            hidden = self._model(input_ids=ids, attention_mask=mask).last_hidden_state.float().numpy()
        return [pool(hidden[i, : len(tokens)], self.pooling) for i, tokens in enumerate(sequences)]

    def close(self) -> None:
        self._model = None
        self._tok = None


#: sentence-transformers modules we run (anything else in ``modules.json`` is refused).
_TRANSFORMER, _POOLING, _NORMALIZE = "Transformer", "Pooling", "Normalize"
_POOLING_FLAGS = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_lasttoken": "last",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
    "pooling_mode_weightedmean_tokens": "weighted_mean",
}
_POOLING_NAMES = {"mean": "mean", "cls": "cls", "lasttoken": "last", "max": "max", "weightedmean": "weighted_mean"}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path.parent.name}/{path.name} cannot be read: {exc}") from exc


def sentence_transformers_layout(folder: Path) -> tuple[Path, str, int | None]:
    """(folder of the transformer weights, pooling, longest sequence) from a sentence-transformers folder.

    Without ``modules.json`` the folder is a plain transformers model: mean pooling, its own limits.
    """
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return folder, "mean", None
    modules = _read_json(modules_file)
    if not isinstance(modules, list):
        raise ModelLoadError(f"{folder.name}/modules.json must hold a list of modules.")
    weights_dir, pooling, seq_len = folder, "mean", None
    for module in modules:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1] if isinstance(module, dict) else ""
        sub = folder / str(module.get("path", "")) if isinstance(module, dict) else folder
        if kind == _TRANSFORMER:
            weights_dir = sub if is_hf_folder(sub) else folder
            config_file = sub / "sentence_bert_config.json"
            if config_file.is_file():
                value = _read_json(config_file).get("max_seq_length")
                seq_len = value if isinstance(value, int) and value > 0 else None
        elif kind == _POOLING:
            pooling = _pooling_of(_read_json(sub / "config.json"), folder.name)
        elif kind != _NORMALIZE:  # vectors are L2-normalised by default anyway
            raise ModelLoadError(
                f"{folder.name} has a {kind or 'unknown'} module in modules.json, which this app does not run "
                "(it runs Transformer, Pooling and Normalize): its vectors would differ from the model's own."
            )
    return weights_dir, pooling, seq_len


def _pooling_of(config: dict[str, Any], name: str) -> str:
    if config.get("include_prompt") is False:
        raise ModelLoadError(f"{name} pools without its instruction prompt (include_prompt: false); not supported.")
    chosen = [how for flag, how in _POOLING_FLAGS.items() if config.get(flag)]
    mode = config.get("pooling_mode")
    if isinstance(mode, str) and mode in _POOLING_NAMES:
        chosen.append(_POOLING_NAMES[mode])
    chosen = list(dict.fromkeys(chosen))
    if len(chosen) > 1:
        raise ModelLoadError(
            f"{name} joins several poolings into one vector ({', '.join(chosen)}); this app runs one at a time."
        )
    return chosen[0] if chosen else "mean"


def open_embedder(path: Path, ctx_size: int) -> Embedder:
    """The embedder for ``path``: a ``.gguf`` file on llama.cpp, a model folder on transformers."""
    if path.is_dir() and is_hf_folder(path):
        return TransformersEmbedder.open(path, ctx_size)
    if path.is_dir():
        ggufs = sorted(p for p in path.glob("*.gguf") if "mmproj" not in p.name.lower())
        if not ggufs:
            raise ModelLoadError(f"{path.name} is a folder without config.json or a .gguf file.")
        path = ggufs[0]
    return LlamaEmbedder.open(path, ctx_size)
