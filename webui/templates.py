"""Chat templates: compiled once, rendered in a sandbox that bounds their work.

A chat template turns a conversation into the prompt text a model was trained
on. Templates arrive inside downloaded model files (GGUF metadata
``tokenizer.chat_template``, ``tokenizer_config.json``), so they are untrusted
code. This module owns:

- :class:`ChatTemplate`: a template compiled once in Jinja's
  ``ImmutableSandboxedEnvironment`` with the globals Hugging Face templates
  expect (``raise_exception``, ``strftime_now``, a non-escaping ``tojson``),
  and rendered under a per-render budget. The sandbox stops attribute tricks
  (``''.__class__.__mro__``); the budget stops runaway work: ``range()`` is
  capped, every value a template builds (strings, lists, big integers) is
  size-checked before it is made, loop iterations and calls are counted, and
  the output is capped. Either way the user gets a :class:`TemplateError`, not
  a hung or killed server.
- :class:`InstructionTemplateStore`: ``instruction-templates/*.yaml`` in
  text-generation-webui's format (one key, ``instruction_template``).
- :func:`choose_template`: which template a model uses (override, its own, or
  the fallback) and a one-line note saying why.

``bos_token`` defaults to ``""`` when rendering because both loaders add BOS
themselves when they tokenize the prompt; pass the real token only when the
caller does not.
"""
from __future__ import annotations

import json
import math
import re
import sys
import time
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.parser import Parser
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.utils import Namespace, generate_lorem_ipsum
from jinja2.visitor import NodeTransformer

from .errors import SettingsError, WebUIError
from .storage import TEMP_SUFFIX, read_yaml, safe_name

FALLBACK_TEMPLATE_NAME = "ChatML"
#: The one key of a text-generation-webui instruction template file.
TEMPLATE_KEY = "instruction_template"
#: Real templates are a few KB (the longest tool-calling ones about 20 KB).
MAX_SOURCE_CHARS = 200_000


class TemplateError(WebUIError):
    """A chat template that cannot be compiled or rendered.

    ``code`` is ``unsafe_template`` (the sandbox or the work budget stopped it),
    ``invalid_template`` (syntax or runtime error) or ``conversation_rejected``
    (the template called ``raise_exception``, e.g. "roles must alternate").
    """

    status_code = 400
    code = "invalid_template"

    def __init__(self, message: str, code: str = "invalid_template") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class RenderLimits:
    """The work one render may do. Sizes grow with the input (``2 *`` its size), so a
    long conversation on a large-context model is never refused."""

    max_range: int = 100_000          # items one range() may have
    max_steps: int = 1_000_000        # loop iterations + calls + output pieces
    max_value_size: int = 1_000_000   # chars/items of any value the template builds
    max_output_chars: int = 2_000_000
    max_int_bits: int = 4096
    max_seconds: float = 5.0


class _LimitExceeded(SecurityError):
    """Too much work. A ``SecurityError`` so Jinja passes it through untouched."""


class _Rejected(jinja2.TemplateError):
    """Raised by a template's own ``raise_exception(msg)``."""


class _Budget:
    """What is left of one render's allowance."""

    def __init__(self, limits: RenderLimits, input_size: int) -> None:
        self.limits = limits
        self.max_value = limits.max_value_size + 2 * input_size
        self.max_output = limits.max_output_chars + 2 * input_size
        # Text produced into every buffer (macros, {% set %} blocks, filter blocks).
        self.max_produced = 4 * self.max_output
        self.produced = 0
        self.steps_left = limits.max_steps
        self.deadline = time.monotonic() + limits.max_seconds

    def step(self) -> None:
        self.steps_left -= 1
        if self.steps_left < 0:
            raise _LimitExceeded(f"it does too much work (more than {self.limits.max_steps:,} steps)")
        if time.monotonic() > self.deadline:
            raise _LimitExceeded(f"it ran for more than {self.limits.max_seconds:g} seconds")

    def allow(self, size: int, what: str = "a value") -> None:
        if size > self.max_value:
            raise _LimitExceeded(f"it builds {what} of more than {self.max_value:,} characters or items")

    def check(self, value: Any) -> Any:
        self.allow(_size(value, self.max_value))
        return value

    def produce(self, n: int) -> None:
        self.produced += n
        if self.produced > self.max_produced:
            raise _LimitExceeded(f"it produces more than {self.max_produced:,} characters of text")


# The budget of the render running in this thread/task. A ContextVar, not an
# attribute of the Jinja context, because macros and loops see derived contexts.
_BUDGET: ContextVar[_Budget | None] = ContextVar("template_budget", default=None)


def _current() -> _Budget:
    return _BUDGET.get() or _Budget(RenderLimits(), 0)


def _size(value: Any, limit: int) -> int:
    """Characters plus items reachable from ``value``, counting shared parts each time
    they are reached (that is what ``str()`` or ``tojson`` would produce). Stops
    counting past ``limit``, so a check costs at most about ``limit`` steps."""
    total, stack = 0, [value]
    while stack:
        v = stack.pop()
        if isinstance(v, (str, bytes)):
            total += len(v)
        elif isinstance(v, (list, tuple, set, frozenset)):
            total += len(v)
            if total <= limit:
                stack.extend(v)
        elif isinstance(v, dict):
            total += len(v)
            if total <= limit:
                stack.extend(v.keys())
                stack.extend(v.values())
        if total > limit:
            return total
    return total


def _text_size(value: Any, limit: int) -> int:
    """Upper bound of ``len(str(value))`` (a repr escapes at most 4 chars per char)."""
    return len(value) if isinstance(value, str) else 6 * _size(value, limit) + 24


_NUMBER = re.compile(r"\d+")


def _format_bound(fmt: str, values: list[Any], widths_from_args: bool, limit: int) -> int:
    """Upper bound of the length of ``fmt % values`` / ``fmt.format(*values)``."""
    numbers = _NUMBER.findall(fmt)
    if any(len(n) > 9 for n in numbers):
        return sys.maxsize
    widest = max([int(n) for n in numbers], default=0)
    if widths_from_args:  # '%*s' or '{:{}}' take the width from an argument
        widest = max([widest, *(abs(v) for v in values if isinstance(v, int))])
    largest = max((_text_size(v, limit) for v in values), default=0)
    fields = fmt.count("%") + fmt.count("{")
    return len(fmt) + fields * (widest + largest)


def _replace_bound(s: str, old: str, new: str, count: int | None) -> int:
    hits = s.count(old) if old else len(s) + 1
    if count is not None and count >= 0:
        hits = min(hits, count)
    return len(s) + hits * max(len(new) - len(old), 0)


def _arg(args: tuple, kwargs: dict, i: int, name: str, default: Any) -> Any:
    return args[i] if len(args) > i else kwargs.get(name, default)


def _str_method_bound(s: str, method: str, args: tuple, kwargs: dict, limit: int) -> int | None:
    """Result-size bound of the ``str`` methods whose result can dwarf their inputs."""
    if method in ("center", "ljust", "rjust", "zfill"):
        width = _arg(args, kwargs, 0, "width", 0)
        return max(len(s), width) if isinstance(width, int) else None
    if method == "expandtabs":
        tab = _arg(args, kwargs, 0, "tabsize", 8)
        return len(s) + s.count("\t") * max(tab, 0) if isinstance(tab, int) else None
    if method == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        return _replace_bound(s, args[0], args[1], _arg(args, kwargs, 2, "count", -1))
    if method in ("format", "format_map"):
        values = [*args, *kwargs.values()]
        if method == "format_map" and args and isinstance(args[0], dict):
            values = list(args[0].values())
        return _format_bound(s, values, ":{" in s, limit)
    if method == "translate" and args and isinstance(args[0], dict):
        longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
        return len(s) * max(longest, 1)
    return None


# -- filters ---------------------------------------------------------------------------------------

def _tojson(value: Any, ensure_ascii: bool = False, indent: int | str | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    """Like transformers' ``tojson``: plain ``json.dumps``, no HTML escaping."""
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _bound_join(b: _Budget, value: Any, args: tuple, kwargs: dict) -> tuple[Any, tuple, dict]:
    items = list(value)  # may be a generator; materialise it once so it can be measured
    sep = _arg(args, kwargs, 0, "d", "")
    b.check(items)
    b.allow(len(str(sep)) * len(items) + sum(_text_size(i, b.max_value) for i in items), "a joined string")
    return items, args, kwargs


def _bound_sum(b: _Budget, value: Any, args: tuple, kwargs: dict) -> tuple[Any, tuple, dict]:
    items = list(value)
    b.check(items)
    start = _arg(args, kwargs, 1, "start", 0)
    if isinstance(start, (list, tuple)) or any(isinstance(i, (list, tuple)) for i in items):
        # Adding sequences copies the running total each time: quadratic.
        b.allow(len(items) * _size(items, b.max_value), "a sum of sequences")
    return items, args, kwargs


def _bound_tojson(b: _Budget, value: Any, args: tuple, kwargs: dict) -> tuple[Any, tuple, dict]:
    indent = _arg(args, kwargs, 1, "indent", None)
    seps = _arg(args, kwargs, 2, "separators", None) or ()
    if (isinstance(indent, int) and indent > 16) or (isinstance(indent, str) and len(indent) > 16) \
            or any(len(str(s)) > 16 for s in seps):
        raise _LimitExceeded("it asks tojson for an indent or separator longer than 16")
    return value, args, kwargs


def _bounding(bound: Callable[[Any, tuple, dict, int], int]) -> Callable[..., tuple[Any, tuple, dict]]:
    def check(b: _Budget, value: Any, args: tuple, kwargs: dict) -> tuple[Any, tuple, dict]:
        b.allow(bound(value, args, kwargs, b.max_value))
        return value, args, kwargs
    return check


_FILTER_BOUNDS: dict[str, Callable[[_Budget, Any, tuple, dict], tuple[Any, tuple, dict]]] = {
    "join": _bound_join,
    "sum": _bound_sum,
    "tojson": _bound_tojson,
    "center": _bounding(lambda v, a, k, lim: max(_text_size(v, lim), _arg(a, k, 0, "width", 80))),
    "indent": _bounding(lambda v, a, k, lim: _text_size(v, lim) + (str(v).count("\n") + 1) * (
        w if isinstance(w := _arg(a, k, 0, "width", 4), int) else len(str(w)))),
    "replace": _bounding(lambda v, a, k, lim: _replace_bound(str(v), str(a[0]), str(a[1]), _arg(a, k, 2, "count", None))
                         if len(a) >= 2 else 0),
    "format": _bounding(lambda v, a, k, lim: _format_bound(str(v), [*a, *k.values()], "*" in str(v), lim)),
    "batch": _bounding(lambda v, a, k, lim: _arg(a, k, 0, "linecount", 0)),
    "slice": _bounding(lambda v, a, k, lim: _arg(a, k, 0, "slices", 0)),
}
#: Filters no chat template uses whose cost is hard to bound (regex backtracking, text wrapping).
_DROPPED_FILTERS = frozenset({"striptags", "urlize", "wordwrap"})


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a filter so it counts as a step, is size-checked before and after, and sees
    the budget. It takes the context itself (so it is never run at compile time) and
    hands the original whatever it asked for."""
    wants = getattr(getattr(func, "jinja_pass_arg", None), "name", None)
    bound = _FILTER_BOUNDS.get(name)

    @jinja2.pass_context
    def guarded(context: Context, value: Any, *args: Any, **kwargs: Any) -> Any:
        b = _current()
        b.step()
        if bound is not None:
            value, args, kwargs = bound(b, value, args, kwargs)
        lead = {"context": (context,), "eval_context": (context.eval_ctx,),
                "environment": (context.environment,)}.get(wants or "", ())
        return b.check(func(*lead, value, *args, **kwargs))

    guarded.__name__ = getattr(func, "__name__", name)
    return guarded


# -- globals ---------------------------------------------------------------------------------------

def _raise_exception(message: str) -> None:
    raise _Rejected(str(message))


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _range(*args: int) -> range:
    r = range(*args)
    limit = _current().limits.max_range
    try:
        n = len(r)
    except OverflowError:
        n = sys.maxsize
    if n > limit:
        raise _LimitExceeded(f"it asks for a range() of {n:,} numbers (the limit is {limit:,})")
    return r


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002 (Jinja's names)
    if n > 100 or max > 1000:
        raise _LimitExceeded("it asks lipsum() for more than 100 paragraphs of 1000 words")
    return generate_lorem_ipsum(n, html, min, max)


class _TemplateDict:
    """``dict`` for templates: a plain function, not the type (no ``dict.mro`` and friends)."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict:
        return dict.fromkeys(*args, **kwargs)


class _Namespace(Namespace):
    """``namespace()`` that refuses underscore names, as transformers' does."""

    def __init__(*args: Any, **kwargs: Any) -> None:  # noqa: N805 (Namespace's own signature trick)
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for key in attrs:
            _Namespace._check(key)
        Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _Namespace._check(name)
        Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise SecurityError(f"a namespace may not hold the underscore name {name!r}")


class _GenerationTag(Extension):
    """``{% generation %}...{% endgeneration %}`` marks the assistant's text for training
    masks in some Hugging Face templates; here it just renders its body."""

    tags = {"generation"}

    def parse(self, parser: Parser) -> list[nodes.Node]:
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


# -- the environment -------------------------------------------------------------------------------

def _env_call(method: str, *args: nodes.Expr, lineno: int) -> nodes.Call:
    return nodes.Call(nodes.EnvironmentAttribute(method, lineno=lineno), list(args), [], None, None, lineno=lineno)


class _RouteThroughGuards(NodeTransformer):
    """Rewrites the parsed template so the work Jinja does without calling anything we
    can intercept goes through the environment's guards: loop iterables (``guard_iter``),
    ``~`` joins (``guard_concat``), every output piece, also inside ``{% set %}`` blocks
    and macros (``guard_output``), and list/tuple/dict literals (``guard_value``)."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _env_call("guard_iter", node.iter, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _env_call("guard_concat", *node.nodes, lineno=node.lineno)

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        node.nodes = [_env_call("guard_output", child, lineno=child.lineno) for child in node.nodes]
        return node

    def _literal(self, node: nodes.Expr) -> nodes.Node:
        self.generic_visit(node)
        if getattr(node, "ctx", "load") != "load":
            return node
        return _env_call("guard_value", node, lineno=node.lineno)

    visit_List = visit_Tuple = visit_Dict = _literal


class _GuardedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox plus a work budget (see the module docstring)."""

    intercepted_binops = frozenset({"+", "*", "%", "**"})

    def __init__(self) -> None:
        super().__init__(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols, _GenerationTag])
        filters = {**self.filters, "tojson": _tojson}
        self.filters = {name: _guard_filter(name, f) for name, f in filters.items() if name not in _DROPPED_FILTERS}
        self.globals.update(range=_range, lipsum=_lipsum, dict=_TemplateDict(), namespace=_Namespace,
                            raise_exception=_raise_exception, strftime_now=_strftime_now)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = _RouteThroughGuards().visit(super()._parse(source, name, filename))
        tree.set_environment(self)
        return tree

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        # Jinja returns an Undefined that only fails when used; fail at once instead.
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe")

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        b = _current()
        b.step()
        if isinstance(obj, LoopContext) and args:  # loop(children) in a recursive for loop
            args = (self.guard_iter(args[0]), *args[1:])
        target = getattr(obj, "__wrapped__", obj)  # the sandbox wraps str.format
        owner = getattr(target, "__self__", None)
        if isinstance(owner, str):
            bound = _str_method_bound(owner, getattr(target, "__name__", ""), args, kwargs, b.max_value)
            if bound is not None:
                b.allow(bound, "a string")
        return b.check(super().call(context, obj, *args, **kwargs))

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        b = _current()
        ints = isinstance(left, int) and isinstance(right, int)
        if operator == "*" and ints:
            if left.bit_length() + right.bit_length() > b.limits.max_int_bits:
                raise _LimitExceeded(f"it builds a number of more than {b.limits.max_int_bits} bits")
        elif operator == "*":
            seq, n = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(n, int) and isinstance(seq, (str, list, tuple)):
                b.allow(_size(seq, b.max_value) * max(n, 0))
        elif operator == "**" and ints:
            if abs(left) > 1 and right > 0 and right * math.log2(abs(left)) > b.limits.max_int_bits:
                raise _LimitExceeded(f"it builds a number of more than {b.limits.max_int_bits} bits")
        elif operator == "+" and isinstance(left, (str, list, tuple)):
            b.allow(_size(left, b.max_value) + _size(right, b.max_value))
        elif operator == "%" and isinstance(left, str):
            values = list(right.values()) if isinstance(right, dict) else \
                list(right) if isinstance(right, tuple) else [right]
            b.allow(_format_bound(left, values, "*" in left, b.max_value), "a string")
        return super().call_binop(context, operator, left, right)

    # The guards the rewritten template calls (through ``call``, so each is also a step).

    def guard_iter(self, iterable: Iterable[Any]) -> Iterator[Any]:
        b = _current()
        for item in iterable:
            b.step()
            yield item

    def guard_concat(self, *parts: Any) -> str:
        b = _current()
        texts = [str(b.check(p)) for p in parts]
        b.allow(sum(map(len, texts)), "a string")
        return "".join(texts)

    def guard_output(self, value: Any) -> str:
        b = _current()
        text = str(b.check(value))
        b.produce(len(text))
        return text

    def guard_value(self, value: Any) -> Any:
        return value  # ``call`` size-checks every result, this one included


# -- the template ----------------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    """A private copy of the data a template sees: dicts, lists and scalars only."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"Chat template data must be dicts, lists and plain values, not {type(value).__name__}.")


def _template_line(exc: BaseException) -> int | None:
    """The template line an error happened on (Jinja rewrites tracebacks to point at it)."""
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


class ChatTemplate:
    """A chat template compiled once; :meth:`render` is safe to call from many threads."""

    def __init__(self, name: str, source: str, template: jinja2.Template, limits: RenderLimits) -> None:
        self.name = name
        self.source = source
        self.limits = limits
        self._template = template

    def __repr__(self) -> str:
        return f"ChatTemplate({self.name!r})"

    @classmethod
    def compile(cls, source: str, name: str, *, limits: RenderLimits = RenderLimits()) -> ChatTemplate:
        """Compile ``source`` or raise :class:`TemplateError` naming ``name`` and the line."""
        if not isinstance(source, str) or not source.strip():
            raise TemplateError(f"Chat template {name!r} is empty.")
        if len(source) > MAX_SOURCE_CHARS:
            raise TemplateError(f"Chat template {name!r} is longer than {MAX_SOURCE_CHARS:,} characters.")
        try:
            template = _GuardedEnvironment().from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                f"Chat template {name!r} has a syntax error on line {exc.lineno}: {exc.message}") from exc
        except RecursionError as exc:
            raise TemplateError(f"Chat template {name!r} is nested too deeply to compile.") from exc
        except jinja2.TemplateError as exc:
            raise TemplateError(f"Chat template {name!r} cannot be compiled: {exc}") from exc
        return cls(name, source, template, limits)

    def render(self, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True,
               bos_token: str = "", eos_token: str = "", **extra: Any) -> str:
        """The prompt text for ``messages`` (dicts with ``role`` and ``content``)."""
        data = {"messages": _plain(messages), "add_generation_prompt": add_generation_prompt,
                "bos_token": bos_token, "eos_token": eos_token, **{k: _plain(v) for k, v in extra.items()}}
        budget = _Budget(self.limits, _size(data, sys.maxsize))
        token = _BUDGET.set(budget)
        pieces: list[str] = []
        total = 0
        stream = self._template.generate(data)
        try:
            for piece in stream:
                total += len(piece)
                if total > budget.max_output:
                    raise _LimitExceeded(f"its output is longer than {budget.max_output:,} characters")
                pieces.append(piece)
        except _Rejected as exc:
            raise TemplateError(f"The chat template {self.name!r} rejected this conversation: {exc.message}",
                                code="conversation_rejected") from exc
        except SecurityError as exc:
            raise TemplateError(f"Chat template {self.name!r} is an unsafe template and was stopped: {exc}.",
                                code="unsafe_template") from exc
        except RecursionError as exc:
            raise TemplateError(f"Chat template {self.name!r} is an unsafe template and was stopped: "
                                "it recurses too deeply.", code="unsafe_template") from exc
        except MemoryError as exc:
            raise TemplateError(f"Chat template {self.name!r} is an unsafe template and was stopped: "
                                "it needs too much memory.", code="unsafe_template") from exc
        except Exception as exc:  # any error of the template's own code: converted, not swallowed
            line = _template_line(exc)
            where = f" on line {line}" if line else ""
            detail = str(exc) if isinstance(exc, jinja2.TemplateError) else f"{type(exc).__name__}: {exc}"
            raise TemplateError(f"Chat template {self.name!r} failed{where}: {detail}") from exc
        finally:
            stream.close()
            _BUDGET.reset(token)
        return "".join(pieces)


# -- instruction templates and the choice of template ----------------------------------------------

class InstructionTemplateStore:
    """The ``instruction-templates`` folder: ``NAME.yaml`` files holding one key,
    ``instruction_template``, the Jinja text (text-generation-webui's format)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def path(self, name: str) -> Path:
        return self.folder / f"{safe_name(name, what='instruction template name')}.yaml"

    def names(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted((p.stem for p in self.folder.glob("*.yaml")
                       if not p.name.startswith(".") and not p.name.endswith(TEMP_SUFFIX)), key=str.lower)

    def load(self, name: str) -> ChatTemplate:
        path = self.path(name)
        if not path.is_file():
            raise SettingsError(f"There is no instruction template called {name!r} (no {path.name} in {self.folder}).")
        source = read_yaml(path).get(TEMPLATE_KEY)
        if not isinstance(source, str) or not source.strip():
            raise SettingsError(f"{path.name} has no {TEMPLATE_KEY!r} key holding the Jinja template text. "
                                "Templates in text-generation-webui's older format (user/bot/turn_template) "
                                "are not supported.")
        return ChatTemplate.compile(source, name)


#: Conversations a model's own template must render before we trust it with a chat.
_PROBES: tuple[list[dict[str, str]], ...] = (
    [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Hello"},
     {"role": "assistant", "content": "Hi!"}, {"role": "user", "content": "How are you?"}],
    [{"role": "user", "content": "Hello"}],
)


def _check_renders(template: ChatTemplate) -> None:
    """Raise :class:`TemplateError` unless ``template`` renders the probe conversations.

    A template may reject one of them on purpose (``raise_exception``, e.g. no
    system role), but not all of them, and it may never fail or be unsafe.
    """
    rejections: list[TemplateError] = []
    for probe in _PROBES:
        try:
            template.render(probe)
        except TemplateError as exc:
            if exc.code != "conversation_rejected":
                raise
            rejections.append(exc)
    if len(rejections) == len(_PROBES):
        raise rejections[-1]


def choose_template(model_template: str | None, override: str | None,
                    store: InstructionTemplateStore) -> tuple[ChatTemplate, str]:
    """The template to use for a model, and a one-line note for the UI saying which and why."""
    if override:
        return store.load(override), f"Using instruction template {override} (override)."
    if not model_template or not model_template.strip():
        return (store.load(FALLBACK_TEMPLATE_NAME),
                f"The model has no chat template; using instruction template {FALLBACK_TEMPLATE_NAME}.")
    try:
        template = ChatTemplate.compile(model_template, "model")
        _check_renders(template)
    except TemplateError as exc:
        kind = "unsafe" if exc.code == "unsafe_template" else "unusable"
        return (store.load(FALLBACK_TEMPLATE_NAME),
                f"The model's chat template is {kind} ({exc.message}); "
                f"using instruction template {FALLBACK_TEMPLATE_NAME} instead.")
    return template, "Using the model's own chat template."
