"""`scalingModifiers.formula`: a small, safe evaluator for the arithmetic KEDA's formulas use.

KEDA evaluates formulas with expr-lang (github.com/expr-lang/expr) over the triggers'
metric values, each named by its trigger's `name`. This module parses the subset of that
language a scaling formula needs into a tree once, checks every name against the
triggers, and evaluates the tree over numbers; nothing is ever handed to Python's `eval`.

Grammar (loosest binding first), as in expr-lang:

    expr     := nil_or ['?' expr ':' expr]
    nil_or   := or_ {'??' or_}
    or_      := and_ {('||' | 'or') and_}
    and_     := compare {('&&' | 'and') compare}
    compare  := sum [('==' | '!=' | '<' | '<=' | '>' | '>=') sum]
    sum      := product {('+' | '-') product}
    product  := unary {('*' | '/' | '%') unary}
    unary    := ('-' | '+' | '!' | 'not') unary | power
    power    := primary [('**' | '^') unary]
    primary  := number | 'true' | 'false' | 'nil' | name | name '(' [expr {',' expr}] ')'
              | '(' expr ')'

Functions: `min`, `max` (any number of arguments), `abs`, `ceil`, `floor`, `round`,
`float`, `int`. `/` always divides as floats, as expr-lang's does. A name is `nil` (None)
only when its trigger failed beyond the fallback's threshold with fallback behavior
`scalingModifiers`; `a ?? b` is then `b`.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

Value = float | bool | None

TOKEN = re.compile(
    r"\s*(?:(?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>\?\?|\*\*|==|!=|<=|>=|&&|\|\||[-+*/%^()<>!?:,]))"
)
KEYWORDS = {"and": "&&", "or": "||", "not": "!"}


class FormulaError(ValueError):
    """Raised when a formula does not parse, names an unknown trigger, or cannot be evaluated."""


def _number(value: Value, what: str) -> float:
    if value is None or isinstance(value, bool):
        raise FormulaError(f"{what} needs a number, got {_show(value)}")
    return value


def _show(value: Value) -> str:
    return "nil" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _divide(a: float, b: float) -> float:
    if b == 0:
        if a == 0:
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def _modulo(a: float, b: float) -> float:
    if b == 0:
        raise FormulaError("integer divide by zero in %")
    return math.fmod(a, b)


ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": _divide,
    "%": _modulo,
    "**": operator.pow,
    "^": operator.pow,
}
COMPARISON: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _round(x: float) -> float:
    # Go's math.Round: half away from zero (Python's round() goes to even).
    return math.copysign(math.floor(abs(x) + 0.5), x)


FUNCTIONS: dict[str, tuple[int, Callable[..., float]]] = {
    # name: (arity, -1 = one or more), implementation over floats
    "min": (-1, min),
    "max": (-1, max),
    "abs": (1, abs),
    "ceil": (1, math.ceil),
    "floor": (1, math.floor),
    "round": (1, _round),
    "float": (1, float),
    "int": (1, math.trunc),
}


@dataclass(frozen=True)
class Num:
    value: Value


@dataclass(frozen=True)
class Name:
    name: str


@dataclass(frozen=True)
class Unary:
    op: str
    operand: Node


@dataclass(frozen=True)
class Binary:
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Ternary:
    condition: Node
    then: Node
    otherwise: Node


@dataclass(frozen=True)
class Call:
    function: str
    args: tuple[Node, ...]


Node = Num | Name | Unary | Binary | Ternary | Call


def tokenize(text: str) -> list[str]:
    """The formula's tokens; `and`, `or` and `not` become `&&`, `||` and `!`."""
    tokens: list[str] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise FormulaError(f"unexpected {text[position:].lstrip()[:10]!r} at {position}")
        tok = match.group(match.lastgroup or "op")
        tokens.append(KEYWORDS.get(tok, tok))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.at = 0

    def peek(self) -> str | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            want = f"{expected!r}" if expected else "more"
            raise FormulaError(f"expected {want}, found {tok or 'the end'!r}")
        self.at += 1
        return tok

    def parse(self) -> Node:
        node = self.expr()
        if self.peek() is not None:
            raise FormulaError(f"unexpected {self.peek()!r} after a complete expression")
        return node

    def expr(self) -> Node:
        node = self.left_assoc(("??",), self.or_)
        if self.peek() == "?":
            self.take("?")
            then = self.expr()
            self.take(":")
            return Ternary(node, then, self.expr())
        return node

    def or_(self) -> Node:
        return self.left_assoc(("||",), self.and_)

    def and_(self) -> Node:
        return self.left_assoc(("&&",), self.compare)

    def compare(self) -> Node:
        node = self.sum()
        if self.peek() in ("==", "!=", "<", "<=", ">", ">="):
            op = self.take()
            node = Binary(op, node, self.sum())
        return node

    def sum(self) -> Node:
        return self.left_assoc(("+", "-"), self.product)

    def product(self) -> Node:
        return self.left_assoc(("*", "/", "%"), self.unary)

    def left_assoc(self, ops: tuple[str, ...], operand: Callable[[], Node]) -> Node:
        node = operand()
        while self.peek() in ops:
            op = self.take()
            node = Binary(op, node, operand())
        return node

    def unary(self) -> Node:
        if self.peek() in ("-", "+", "!"):
            op = self.take()
            return Unary(op, self.unary())
        return self.power()

    def power(self) -> Node:
        node = self.primary()
        if self.peek() in ("**", "^"):
            op = self.take()
            return Binary(op, node, self.unary())
        return node

    def primary(self) -> Node:
        tok = self.take()
        if tok == "(":
            node = self.expr()
            self.take(")")
            return node
        if tok[0].isdigit() or tok[0] == ".":
            return Num(float(tok))
        if tok in ("true", "false"):
            return Num(tok == "true")
        if tok == "nil":
            return Num(None)
        if re.fullmatch(r"[A-Za-z_]\w*", tok):
            if self.peek() == "(":
                return self.call(tok)
            return Name(tok)
        raise FormulaError(f"unexpected {tok!r}")

    def call(self, function: str) -> Node:
        if function not in FUNCTIONS:
            raise FormulaError(f"unknown function {function}(); known: {sorted(FUNCTIONS)}")
        self.take("(")
        args: list[Node] = []
        while self.peek() != ")":
            args.append(self.expr())
            if self.peek() != ")":
                self.take(",")
        self.take(")")
        arity = FUNCTIONS[function][0]
        if (arity == -1 and not args) or (arity != -1 and len(args) != arity):
            raise FormulaError(f"{function}() takes {arity if arity > 0 else 'at least 1'} args")
        return Call(function, tuple(args))


def names(node: Node) -> set[str]:
    """Every name the tree refers to."""
    match node:
        case Name(name):
            return {name}
        case Unary(_, operand):
            return names(operand)
        case Binary(_, left, right):
            return names(left) | names(right)
        case Ternary(condition, then, otherwise):
            return names(condition) | names(then) | names(otherwise)
        case Call(_, args):
            return set().union(*(names(a) for a in args))
    return set()


def evaluate(node: Node, values: Mapping[str, float | None]) -> Value:
    """The tree's value over `values` (name → metric value, None for nil)."""
    match node:
        case Num(value):
            return value
        case Name(name):
            return values[name]
        case Unary(op, operand):
            value = evaluate(operand, values)
            if op == "!":
                if not isinstance(value, bool):
                    raise FormulaError(f"! needs a boolean, got {_show(value)}")
                return not value
            number = _number(value, f"unary {op}")
            return -number if op == "-" else number
        case Ternary(condition, then, otherwise):
            chosen = evaluate(condition, values)
            if not isinstance(chosen, bool):
                raise FormulaError(f"?: needs a boolean condition, got {_show(chosen)}")
            return evaluate(then if chosen else otherwise, values)
        case Call(function, args):
            numbers = [_number(evaluate(a, values), f"{function}()") for a in args]
            try:
                return float(FUNCTIONS[function][1](*numbers))
            except (OverflowError, ValueError) as e:
                raise FormulaError(f"{function}({', '.join(map(_show, numbers))}): {e}") from e
        case Binary(op, left, right):
            return _binary(op, left, right, values)
    raise FormulaError(f"cannot evaluate {node!r}")


def _binary(op: str, left: Node, right: Node, values: Mapping[str, float | None]) -> Value:
    a = evaluate(left, values)
    if op == "??":
        return evaluate(right, values) if a is None else a
    if op in ("&&", "||"):
        if not isinstance(a, bool):
            raise FormulaError(f"{op} needs booleans, got {_show(a)}")
        if (op == "&&") != a:  # short-circuit: false && …, true || …
            return a
        b = evaluate(right, values)
        if not isinstance(b, bool):
            raise FormulaError(f"{op} needs booleans, got {_show(b)}")
        return b
    b = evaluate(right, values)
    if op == "==":
        return a == b
    if op == "!=":
        return a != b
    x, y = _number(a, op), _number(b, op)
    if op in COMPARISON:
        return COMPARISON[op](x, y)
    try:
        return float(ARITHMETIC[op](x, y))
    except OverflowError as e:
        raise FormulaError(f"{_show(x)} {op} {_show(y)} overflows") from e


@dataclass(frozen=True)
class Formula:
    """A parsed formula; `compile` checks it, `__call__` evaluates it."""

    source: str
    tree: Node

    @classmethod
    def compile(cls, source: str, known: Collection[str]) -> Formula:
        """Parse `source`; FormulaError if it is malformed or names a trigger not in `known`."""
        try:
            tree = _Parser(tokenize(source)).parse()
        except RecursionError as e:
            raise FormulaError("nested too deeply") from e
        unknown = sorted(names(tree) - set(known))
        if unknown:
            raise FormulaError(
                f"unknown name(s) {', '.join(unknown)}; the triggers are named {sorted(known)}"
            )
        return cls(source, tree)

    def __call__(self, values: Mapping[str, float | None]) -> float | None:
        """The formula's number over `values`; None if it is nil; FormulaError otherwise."""
        result = evaluate(self.tree, values)
        if isinstance(result, bool):
            raise FormulaError(f"{self.source!r} gave a boolean, not a number")
        return result
