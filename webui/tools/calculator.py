"""A safe arithmetic evaluator for the ``calculate`` tool: Python's ``ast`` walked by hand, never ``eval``.

Only numbers, ``+ - * / // % **``, unary ``+``/``-``, parentheses, a few functions of ``math``
(:data:`FUNCTIONS`) and constants (:data:`CONSTANTS`) are accepted. Whatever a model (or text it
read) could use to do harm or to stall the app is refused with a message saying what: names,
attributes, strings, other calls, comprehensions; inputs longer than :data:`MAX_LENGTH`, nested
deeper than :data:`MAX_DEPTH`, and integers beyond :data:`MAX_BITS` bits (``9**9**9**9`` is refused
before it is computed, not after).
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from typing import Any

#: Longest expression accepted (characters).
MAX_LENGTH = 1000
#: Deepest nesting of operations accepted.
MAX_DEPTH = 50
#: Largest integer (in bits) an operation may produce: about 1200 decimal digits.
MAX_BITS = 4000
#: Largest argument of ``factorial`` (its result stays under MAX_BITS).
MAX_FACTORIAL = 450

Number = int | float


def _factorial(n: Number) -> int:
    if isinstance(n, float):
        if not n.is_integer():
            raise ValueError("factorial() takes a whole number")
        n = int(n)
    if n > MAX_FACTORIAL:
        raise ValueError(f"factorial() of more than {MAX_FACTORIAL} is too large")
    return math.factorial(n)


def _round(x: Number, digits: Number = 0) -> Number:
    if not isinstance(digits, int) or abs(digits) > 100:
        raise ValueError("round() takes a whole number of digits between -100 and 100")
    return round(x, digits) if digits else round(x)


#: The functions an expression may call, by name.
FUNCTIONS: dict[str, Callable[..., Number]] = {
    "abs": abs,
    "round": _round,
    "min": min,
    "max": max,
    "sqrt": math.sqrt,
    "exp": math.exp,
    "log": math.log,
    "log2": math.log2,
    "log10": math.log10,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "asin": math.asin,
    "acos": math.acos,
    "atan": math.atan,
    "atan2": math.atan2,
    "hypot": math.hypot,
    "degrees": math.degrees,
    "radians": math.radians,
    "floor": math.floor,
    "ceil": math.ceil,
    "factorial": _factorial,
}
#: The names an expression may use as numbers.
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}

_MAX_ARGS = 20

_BINARY: dict[type[ast.operator], str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
}

# What the refused constructs are called in the messages.
_REFUSED: dict[type[ast.AST], str] = {
    ast.Attribute: "attributes (a.b)",
    ast.Subscript: "indexing (a[b])",
    ast.Lambda: "lambda",
    ast.IfExp: "if/else",
    ast.Compare: "comparisons",
    ast.BoolOp: "and/or",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
    ast.List: "lists",
    ast.Tuple: "tuples",
    ast.Set: "sets",
    ast.Dict: "dictionaries",
    ast.JoinedStr: "strings",
    ast.NamedExpr: "assignments (:=)",
    ast.Starred: "*arguments",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
}


class _Refused(ValueError):
    """What is wrong with the expression (the message is for the model and the user)."""


def evaluate(expression: str) -> Number:
    """The value of an arithmetic ``expression``; ``ValueError`` with a clear message if it is not one."""
    if not isinstance(expression, str):
        raise ValueError("The expression must be text.")
    text = expression.strip()
    if not text:
        raise ValueError("The expression is empty.")
    if len(text) > MAX_LENGTH:
        raise ValueError(f"The expression is too long ({len(text)} characters; at most {MAX_LENGTH}).")
    try:
        tree = ast.parse(text.replace("^", "**") if "^" in text else text, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"Not an arithmetic expression: {exc.msg}.") from None
    except (RecursionError, MemoryError):
        raise ValueError(f"The expression is nested too deeply (at most {MAX_DEPTH} levels).") from None
    try:
        value = _Evaluator().eval(tree.body, 0)
    except _Refused as exc:
        raise ValueError(str(exc)) from None
    except ZeroDivisionError:
        raise ValueError("Division by zero.") from None
    except OverflowError:
        raise ValueError("The result is too large.") from None
    except RecursionError:
        raise ValueError(f"The expression is nested too deeply (at most {MAX_DEPTH} levels).") from None
    except (ValueError, TypeError) as exc:
        raise ValueError(f"Cannot compute it: {exc}.") from None
    return value


def format_number(value: Number) -> str:
    """``value`` as text: integers whole, floats in their shortest exact form (``0.1 + 0.2`` stays honest)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


class _Evaluator:
    def eval(self, node: ast.AST, depth: int) -> Number:
        if depth > MAX_DEPTH:
            raise _Refused(f"The expression is nested too deeply (at most {MAX_DEPTH} levels).")
        if isinstance(node, ast.Constant):
            return self.constant(node.value)
        if isinstance(node, ast.UnaryOp):
            operand = self.eval(node.operand, depth + 1)
            if isinstance(node.op, ast.USub):
                return -operand
            if isinstance(node.op, ast.UAdd):
                return +operand
            raise _Refused("Only + and - may stand before a number.")
        if isinstance(node, ast.BinOp):
            symbol = _BINARY.get(type(node.op))
            if symbol is None:
                raise _Refused("Only the operators + - * / // % ** are allowed.")
            left = self.eval(node.left, depth + 1)
            right = self.eval(node.right, depth + 1)
            return _checked(self.binary(symbol, left, right))
        if isinstance(node, ast.Name):
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            if node.id in FUNCTIONS:
                raise _Refused(f"{node.id} is a function: call it, e.g. {node.id}(2).")
            raise _Refused(f"Unknown name '{node.id}'. Known: {', '.join(CONSTANTS)} and the functions {_names()}.")
        if isinstance(node, ast.Call):
            return _checked(self.call(node, depth))
        what = _REFUSED.get(type(node), type(node).__name__)
        raise _Refused(f"{what[0].upper() + what[1:]} are not allowed in an arithmetic expression.")

    @staticmethod
    def constant(value: Any) -> Number:
        if isinstance(value, bool) or not isinstance(value, int | float):
            kind = "strings" if isinstance(value, str | bytes) else f"{type(value).__name__} values"
            raise _Refused(f"{kind[0].upper() + kind[1:]} are not allowed in an arithmetic expression.")
        return _checked(value)

    @staticmethod
    def binary(symbol: str, left: Number, right: Number) -> Number:
        if symbol == "+":
            return left + right
        if symbol == "-":
            return left - right
        if symbol == "*":
            if isinstance(left, int) and isinstance(right, int):
                _bound_bits(left.bit_length() + right.bit_length())
            return left * right
        if symbol == "/":
            return left / right
        if symbol == "//":
            return left // right
        if symbol == "%":
            return left % right
        return _power(left, right)

    def call(self, node: ast.Call, depth: int) -> Number:
        if not isinstance(node.func, ast.Name):
            raise _Refused(f"Only these functions may be called: {_names()}.")
        function = FUNCTIONS.get(node.func.id)
        if function is None:
            raise _Refused(f"Unknown function '{node.func.id}'. Known: {_names()}.")
        if node.keywords:
            raise _Refused(f"{node.func.id}() takes no named arguments.")
        if len(node.args) > _MAX_ARGS:
            raise _Refused(f"{node.func.id}() takes at most {_MAX_ARGS} arguments.")
        args = [self.eval(arg, depth + 1) for arg in node.args]
        return function(*args)


def _power(base: Number, exponent: Number) -> Number:
    if isinstance(base, int) and isinstance(exponent, int) and exponent >= 0:
        if abs(base) > 1 and exponent > 1:
            # The result has about exponent * log2(|base|) bits: refuse before computing it.
            _bound_bits(exponent * math.log2(abs(base)))
        return base**exponent
    result = float(base) ** float(exponent)
    if isinstance(result, complex):
        raise _Refused("The result is not a real number (a fractional power of a negative number).")
    return result


def _bound_bits(bits: float) -> None:
    if bits > MAX_BITS:
        raise _Refused(f"The result is too large (more than {MAX_BITS} bits, about {int(MAX_BITS * 0.30103)} digits).")


def _checked(value: Any) -> Number:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Refused("The result is not a real number.")
    if isinstance(value, int):
        _bound_bits(value.bit_length())
    elif math.isinf(value):
        raise _Refused("The result is too large.")
    elif math.isnan(value):
        raise _Refused("The result is not a number.")
    return value


def _names() -> str:
    return ", ".join(FUNCTIONS)
