"""Shipped tool: arithmetic without eval (webui/tools/calculator.py does the work)."""

from typing import Annotated

from pydantic import Field

from webui.tools.calculator import evaluate, format_number

# Reads nothing and changes nothing: as safe as a read-only tool.
READ_ONLY = True


# The characters an expression is made of: in the schema, so the grammar keeps a small model's
# calls to arithmetic (it cannot write a stray brace or a sentence into the argument).
Expression = Annotated[str, Field(pattern=r"^[0-9a-z(-][0-9a-z .,+*/%()^-]{0,199}$")]


def calculate(expression: Expression) -> str:
    """Calculate an arithmetic expression exactly, e.g. "(3 + 4) * 12 / 7" or "sqrt(2) * pi".

    Numbers, + - * / // % ** (^ also means power), parentheses, the constants pi, e, tau and the
    functions abs, round, min, max, sqrt, exp, log, log2, log10, sin, cos, tan, asin, acos, atan,
    atan2, hypot, degrees, radians, floor, ceil, factorial.

    Args:
        expression: The arithmetic expression, in Python notation.
    """
    return format_number(evaluate(expression))
