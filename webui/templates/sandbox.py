"""The sandbox chat templates render in: Jinja's immutable sandbox plus a work budget.

Split from ``templates.py``: everything here bounds what an untrusted template can do
(attribute access, ``range()``, the size of every value it builds, loop iterations and
calls, the output length). ``templates.py`` compiles and renders with it.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.parser import Parser
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.utils import Namespace, generate_lorem_ipsum
from jinja2.visitor import NodeTransformer


@dataclass(frozen=True)
class RenderLimits:
    """The work one render may do. Sizes grow with the input (``2 *`` its size), so a
    long conversation on a large-context model is never refused."""

    max_range: int = 100_000  # items one range() may have
    max_steps: int = 1_000_000  # loop iterations + calls + output pieces
    max_value_size: int = 1_000_000  # chars/items of any value the template builds
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


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | str | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
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
    if (
        (isinstance(indent, int) and indent > 16)
        or (isinstance(indent, str) and len(indent) > 16)
        or any(len(str(s)) > 16 for s in seps)
    ):
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
    "indent": _bounding(
        lambda v, a, k, lim: (
            _text_size(v, lim)
            + (str(v).count("\n") + 1) * (w if isinstance(w := _arg(a, k, 0, "width", 4), int) else len(str(w)))
        )
    ),
    "replace": _bounding(
        lambda v, a, k, lim: (
            _replace_bound(str(v), str(a[0]), str(a[1]), _arg(a, k, 2, "count", None)) if len(a) >= 2 else 0
        )
    ),
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
        lead = {"context": (context,), "eval_context": (context.eval_ctx,), "environment": (context.environment,)}.get(
            wants or "", ()
        )
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


def _env_call(method: str, *args: nodes.Node, lineno: int) -> nodes.Call:
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
        self.globals.update(
            range=_range,
            lipsum=_lipsum,
            dict=_TemplateDict(),
            namespace=_Namespace,
            raise_exception=_raise_exception,
            strftime_now=_strftime_now,
        )

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
            values = (
                list(right.values())
                if isinstance(right, dict)
                else list(right)
                if isinstance(right, tuple)
                else [right]
            )
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
