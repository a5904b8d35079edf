"""What a model is, read from its files without loading it.

For a GGUF the header is read directly: key/value metadata and the tensor
table, with the value types, quantisation names and file-type names taken from
the ``gguf`` package. ``gguf.GGUFReader`` itself materialises every element of
the tokenizer arrays (3 s for SmolLM2, 17 s for gemma-3's 262k-token vocabulary
on these machines), which is too slow to run each time a model is picked in a
dropdown, so we skip those arrays instead of decoding them (a few ms). Every
count and length read from the file is checked against the file's size, so a
truncated or hostile file gives a clear error, never a huge allocation.

For a transformers folder the same facts come from ``config.json``, the
safetensors headers (tensor shapes and dtypes) and ``tokenizer_config.json``.

Vision models in llama.cpp come as two GGUF files: the model and its projector
(``mmproj*.gguf``, architecture ``clip``, ``general.type`` ``mmproj``). A projector
cannot run on its own, so it is never a model here: :func:`model_ggufs` leaves it out
of a model folder and reading one as a model is a clear error. (Telling them apart is
the llama.cpp loader's ``is_projector``: a name test and a few header bytes.)
"""

from __future__ import annotations

import json
import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gguf import GGMLQuantizationType, GGUFValueType, LlamaFileType

from webui.errors import ModelInfoError
from webui.loaders.mtmd import find_projectors, is_projector, model_ggufs, projector_not_a_model

#: Suffixes of files still being written (as the model list skips them).

GGUF_MAGIC = b"GGUF"
MAX_KV = 100_000
MAX_TENSORS = 1_000_000
#: Metadata strings longer than this are not kept (only their length is), e.g. huge chat templates are kept whole.
MAX_KEPT_STRING = 1 << 20

_SCALAR = {
    GGUFValueType.UINT8: "<B",
    GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I",
    GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f",
    GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d",
}


@dataclass
class ModelFacts:
    """The facts shown in the Model tab (and used for the RAM estimate)."""

    name: str
    format: str  # "GGUF" or "transformers"
    architecture: str | None = None
    parameters: int | None = None
    quantization: str | None = None
    context_length: int | None = None
    has_chat_template: bool = False
    file_size: int = 0
    n_layers: int | None = None
    n_embd: int | None = None
    n_head: int | None = None
    n_head_kv: int | None = None
    head_dim_k: int | None = None
    head_dim_v: int | None = None
    #: bytes per weight when loaded (transformers runs float32 on a CPU); GGUF is mapped as is.
    load_bytes_per_param: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def kv_cache_bytes(self, n_ctx: int, bytes_per_value: int = 2) -> int:
        if not (self.n_layers and self.n_head_kv and self.head_dim_k and n_ctx):
            return 0
        per_token = self.n_layers * self.n_head_kv * (self.head_dim_k + (self.head_dim_v or self.head_dim_k))
        return per_token * n_ctx * bytes_per_value

    def ram_estimate(self, n_ctx: int | None) -> int:
        """Bytes of RAM to run the model at ``n_ctx`` tokens (0/None: the trained context)."""
        ctx = n_ctx or self.context_length or 4096
        if self.format == "GGUF":
            weights = self.file_size
            kv = self.kv_cache_bytes(ctx, 2)  # llama.cpp keeps K and V in f16
            buffers = 64_000_000 + ctx * (self.n_embd or 1024) * 4 * 4
        else:
            weights = int((self.parameters or 0) * (self.load_bytes_per_param or 4)) or self.file_size
            kv = self.kv_cache_bytes(ctx, int(self.load_bytes_per_param or 4))
            buffers = 300_000_000  # torch and transformers themselves
        return int(weights + kv + buffers)


def model_facts(path: Path) -> ModelFacts:
    """Facts about the model at ``path`` (a .gguf file, a folder with one, or a transformers folder)."""
    path = Path(path)
    if path.is_dir():
        if (path / "config.json").is_file():
            return hf_facts(path)
        ggufs = model_ggufs(path)
        if ggufs:
            facts = gguf_facts(ggufs[0])
            facts.file_size = sum(p.stat().st_size for p in ggufs)  # split models: every part
            facts.name = path.name
            return facts
        if find_projectors(path):
            raise ModelInfoError(
                f"{path.name} holds only a vision projector (mmproj), no model. Put the model's .gguf file next to it.",
                key="error.projector_only_folder",
                name=path.name,
            )
        raise ModelInfoError(f"{path.name} is a folder without config.json or a .gguf file.")
    if is_projector(path):
        raise projector_not_a_model(path)
    return gguf_facts(path)


# ----- vision projectors (mmproj) -----------------------------------------------------------------
# Which file is a projector and which projector goes with a model is the llama.cpp loader's call
# (``webui.loaders.mtmd``): what the Model tab shows is what a load would do.


def model_gguf(path: Path) -> Path | None:
    """The GGUF file a model at ``path`` (a file, or a folder of GGUF files) loads from; None for a
    folder without one."""
    path = Path(path)
    if path.is_dir():
        ggufs = model_ggufs(path)
        return ggufs[0] if ggufs else None
    return path


# ----- GGUF --------------------------------------------------------------------------------
class _Cursor:
    def __init__(self, buf: Any, size: int, name: str) -> None:
        self.buf, self.size, self.pos, self.name = buf, size, 0, name

    def need(self, n: int) -> None:
        if n < 0 or self.pos + n > self.size:
            raise ModelInfoError(
                f"{self.name} is truncated or corrupt: its header runs past the end of the file "
                f"(offset {self.pos:,} + {n:,} > {self.size:,} bytes).",
                key="error.info_truncated",
                name=self.name,
                pos=f"{self.pos:,}",
                n=f"{n:,}",
                size=f"{self.size:,}",
            )

    def unpack(self, fmt: str) -> Any:
        n = struct.calcsize(fmt)
        self.need(n)
        value = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += n
        return value

    def string(self, keep: bool = True) -> str | None:
        n = self.unpack("<Q")
        self.need(n)
        start = self.pos
        self.pos += n
        if not keep or n > MAX_KEPT_STRING:
            return None
        return bytes(self.buf[start : start + n]).decode("utf-8", errors="replace")

    def value(self, vtype: int, keep: bool = True) -> Any:
        try:
            t = GGUFValueType(vtype)
        except ValueError:
            raise ModelInfoError(f"{self.name} is corrupt: unknown metadata value type {vtype}.") from None
        if t == GGUFValueType.STRING:
            return self.string(keep)
        if t == GGUFValueType.ARRAY:
            item_type = self.unpack("<I")
            count = self.unpack("<Q")
            self.need(min(count, self.size))  # each item takes at least one byte
            if item_type in [v.value for v in _SCALAR]:
                width = struct.calcsize(_SCALAR[GGUFValueType(item_type)])
                self.need(count * width)
                if keep and count <= 64:
                    return [self.value(item_type) for _ in range(count)]
                self.pos += count * width
                return f"<array of {count}>"
            for _ in range(count):  # strings (the vocabulary) or nested arrays: walk, do not keep
                self.value(item_type, keep=False)
            return f"<array of {count}>"
        return self.unpack(_SCALAR[t])


def gguf_facts(path: Path) -> ModelFacts:
    path = Path(path)
    if path.is_dir():
        raise ModelInfoError(f"{path.name} is a folder, not a GGUF file.")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            if size < 24:
                raise ModelInfoError(
                    f"{path.name} is not a GGUF model: the file is only {size} bytes.",
                    key="error.info_too_small",
                    name=path.name,
                    size=size,
                )
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse_gguf(buf, size, path)
    except OSError as exc:
        raise ModelInfoError(f"Cannot read {path.name}: {exc.strerror or exc}") from exc


def _parse_gguf(buf: Any, size: int, path: Path) -> ModelFacts:
    if bytes(buf[:4]) != GGUF_MAGIC:
        raise ModelInfoError(
            f"{path.name} is not a GGUF model file (it does not start with 'GGUF'). It may be "
            "an incomplete download or a different format.",
            key="error.info_not_gguf",
            name=path.name,
        )
    cur = _Cursor(buf, size, path.name)
    cur.pos = 4
    version = cur.unpack("<I")
    if version not in (2, 3):
        raise ModelInfoError(f"{path.name} uses GGUF version {version}; this app reads versions 2 and 3.")
    n_tensors = cur.unpack("<Q")
    n_kv = cur.unpack("<Q")
    if n_kv > MAX_KV or n_tensors > MAX_TENSORS:
        raise ModelInfoError(f"{path.name} is corrupt: it claims {n_kv:,} metadata keys and {n_tensors:,} tensors.")
    meta: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cur.string() or ""
        vtype = cur.unpack("<I")
        meta[key] = cur.value(vtype)
    params = 0
    tensor_types: dict[str, int] = {}
    for _ in range(n_tensors):
        cur.string(keep=False)
        n_dims = cur.unpack("<I")
        if n_dims > 8:
            raise ModelInfoError(f"{path.name} is corrupt: a tensor with {n_dims} dimensions.")
        n = 1
        for _ in range(n_dims):
            n *= cur.unpack("<Q")
        ttype = cur.unpack("<I")
        cur.unpack("<Q")  # data offset
        params += n
        try:
            tname = GGMLQuantizationType(ttype).name
        except ValueError:
            tname = str(ttype)
        tensor_types[tname] = tensor_types.get(tname, 0) + n
    arch = meta.get("general.architecture")
    a = f"{arch}." if isinstance(arch, str) else ""
    n_embd = _int(meta.get(f"{a}embedding_length"))
    n_head = _int(_first(meta.get(f"{a}attention.head_count")))
    n_head_kv = _int(_first(meta.get(f"{a}attention.head_count_kv"))) or n_head
    head_k = _int(meta.get(f"{a}attention.key_length")) or (n_embd // n_head if n_embd and n_head else None)
    head_v = _int(meta.get(f"{a}attention.value_length")) or head_k
    return ModelFacts(
        name=path.name,
        format="GGUF",
        architecture=arch if isinstance(arch, str) else None,
        parameters=params or None,
        quantization=_file_type_name(meta.get("general.file_type"), tensor_types),
        context_length=_int(meta.get(f"{a}context_length")),
        has_chat_template=isinstance(meta.get("tokenizer.chat_template"), str)
        and bool(meta.get("tokenizer.chat_template")),
        file_size=size,
        n_layers=_int(meta.get(f"{a}block_count")),
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim_k=head_k,
        head_dim_v=head_v,
        metadata={k: v for k, v in meta.items() if not k.startswith("tokenizer.ggml.")},
    )


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _file_type_name(file_type: Any, tensor_types: dict[str, int]) -> str | None:
    if isinstance(file_type, int):
        try:
            return LlamaFileType(file_type).name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            pass
    if tensor_types:  # no file type recorded: the most common tensor type
        return max(tensor_types, key=tensor_types.__getitem__)
    return None


# ----- transformers folders ------------------------------------------------------------------
def hf_facts(folder: Path, load_dtype: str = "auto", device: str = "cpu") -> ModelFacts:
    folder = Path(folder)
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelInfoError(f"{folder.name}/config.json cannot be read: {exc}") from exc
    if not isinstance(config, dict):
        raise ModelInfoError(f"{folder.name}/config.json is not a JSON object.")
    text_cfg: dict[str, Any] = config["text_config"] if isinstance(config.get("text_config"), dict) else config
    params, dtypes = 0, dict[str, int]()
    for st in sorted(folder.glob("*.safetensors")):
        for dtype, n in _safetensors_counts(st).items():
            dtypes[dtype] = dtypes.get(dtype, 0) + n
            params += n
    stored = max(dtypes, key=dtypes.__getitem__) if dtypes else str(config.get("torch_dtype") or config.get("dtype"))
    quant = (
        config.get("quantization_config", {}).get("quant_method")
        if isinstance(config.get("quantization_config"), dict)
        else None
    )
    if load_dtype == "auto":
        load_bytes = 4 if device == "cpu" else 2
    else:
        load_bytes = {"float32": 4, "float16": 2, "bfloat16": 2}.get(load_dtype, 4)
    n_embd = _int(text_cfg.get("hidden_size"))
    n_head = _int(text_cfg.get("num_attention_heads"))
    n_head_kv = _int(text_cfg.get("num_key_value_heads")) or n_head
    head_dim = _int(text_cfg.get("head_dim")) or (n_embd // n_head if n_embd and n_head else None)
    tok_cfg = {}
    try:
        tok_cfg = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    has_template = (
        bool(isinstance(tok_cfg, dict) and tok_cfg.get("chat_template"))
        or (folder / "chat_template.jinja").is_file()
        or (folder / "chat_template.json").is_file()
    )
    archs = config.get("architectures") or []
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return ModelFacts(
        name=folder.name,
        format="transformers",
        architecture=config.get("model_type") or (archs[0] if archs else None),
        parameters=params or None,
        quantization=quant or stored,
        has_chat_template=has_template,
        context_length=_int(text_cfg.get("max_position_embeddings")),
        file_size=size,
        n_layers=_int(text_cfg.get("num_hidden_layers")),
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim_k=head_dim,
        head_dim_v=head_dim,
        load_bytes_per_param=load_bytes,
        metadata={"architectures": archs, "stored_dtype": stored},
    )


def _safetensors_counts(path: Path) -> dict[str, int]:
    """Number of values per dtype, from the safetensors header (8-byte length + JSON); no weights are read."""
    try:
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                raise ModelInfoError(f"{path.name} is truncated.")
            n = struct.unpack("<Q", raw)[0]
            if n > min(100_000_000, path.stat().st_size):
                raise ModelInfoError(f"{path.name} is corrupt: its header claims {n:,} bytes.")
            header = json.loads(f.read(n))
    except (OSError, ValueError) as exc:
        raise ModelInfoError(f"{path.name} cannot be read as safetensors: {exc}") from exc
    counts: dict[str, int] = {}
    for name, info in header.items():
        if name == "__metadata__" or not isinstance(info, dict):
            continue
        n_values = 1
        for dim in info.get("shape", []):
            n_values *= int(dim)
        counts[str(info.get("dtype"))] = counts.get(str(info.get("dtype")), 0) + n_values
    return counts
