"""A small, safe expression language for selecting catalog rows.

    teff > 5000 and feh < -1 and f_reject < 0.5
    not flag_extrapolated and (logg >= 4 or teff_p84 - teff_p16 < 150)

Grammar (our own tokenizer and recursive-descent parser; user text never reaches `eval`, `exec`,
`compile` or Python's `ast`):

    expr       := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | comparison
    comparison := sum (("<" | "<=" | ">" | ">=" | "==" | "!=") sum)?
    sum        := product (("+" | "-") product)*
    product    := unary (("*" | "/") unary)*
    unary      := "-" unary | "+" unary | atom
    atom       := NUMBER | "true" | "false" | COLUMN | "(" expr ")"

NUMBER is decimal: digits with an optional '.' and exponent (`5000`, `0.5`, `.5`, `5.`, `1e-3`), finite in
float64; hexadecimal (`0x10`), `_` separators (`1_000`), suffixes and non-ASCII digits are refused.
Keywords are case-insensitive (`and`, `AND`); `&`/`|`/`~` are not accepted. COLUMN is a column name of
the catalog's flat view (`teff`, `teff_p16`, `snr`, `ra`, `true_teff`, ...): names are checked against
the catalog before anything is evaluated, names starting with `_` are refused, and so is anything
else -- attribute access (`.`), calls (`f(...)`), indexing, strings, operators outside the grammar.
`and`/`or`/`not` take boolean operands (comparisons or boolean columns); arithmetic takes numbers.
Comparisons with NaN are false, as in numpy.
"""
from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

import numpy as np

from gridkit.errors import GridkitError

MAX_LENGTH = 10_000
MAX_DEPTH = 64


class QueryError(GridkitError, ValueError):
    """A query outside the grammar, or naming a column the catalog does not have."""


# -- tokens --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Token:
    kind: str  # NUMBER, NAME, OP, LPAR, RPAR, END
    text: str
    pos: int


_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)  # ASCII digits only (float() takes others too)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD = re.compile(r"[\w.]*")  # what follows a malformed number, to show it whole
_OPS = ("<=", ">=", "==", "!=", "<", ">", "+", "-", "*", "/")
KEYWORDS = ("and", "or", "not", "true", "false")


def tokenize(text: str) -> list[Token]:
    """Split `text` into tokens; any character outside the grammar is an error naming it and its position."""
    if not isinstance(text, str):
        raise QueryError(f"query must be a string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise QueryError(f"query is {len(text)} characters long; the limit is {MAX_LENGTH}")
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        m = _NUMBER.match(text, i)
        if m:
            end = m.end()
            if end < n and (text[end].isalnum() or text[end] in "_."):
                word = text[i:_WORD.match(text, end).end()]
                raise QueryError(f"malformed number {word!r} at position {i} in query {text!r}: a number is decimal digits with an "
                                 "optional '.' and exponent (5000, 0.5, .5, 5., 1e-3); hexadecimal (0x10), '_' separators (1_000), "
                                 "suffixes and attribute access are not part of the grammar")
            if not np.isfinite(float(m.group())):
                raise QueryError(f"number {m.group()!r} at position {i} in query {text!r} is not finite (beyond the largest float, "
                                 f"{np.finfo(np.float64).max:.4g})")
            tokens.append(Token("NUMBER", m.group(), i))
            i = end
            continue
        m = _NAME.match(text, i)
        if m:
            tokens.append(Token("NAME", m.group(), i))
            i = m.end()
            continue
        if c == "(":
            tokens.append(Token("LPAR", c, i))
            i += 1
            continue
        if c == ")":
            tokens.append(Token("RPAR", c, i))
            i += 1
            continue
        op = next((o for o in _OPS if text.startswith(o, i)), None)
        if op is not None:
            tokens.append(Token("OP", op, i))
            i += len(op)
            continue
        what = {".": "attribute access", "[": "indexing", "'": "a string", '"': "a string", ",": "an argument list",
                "=": "assignment (use == to compare)", "&": "'&' (use 'and')", "|": "'|' (use 'or')", "~": "'~' (use 'not')"}.get(c)
        hint = f": {what} is not allowed" if what else ""
        raise QueryError(f"unexpected character {c!r} at position {i} in query {text!r}{hint}")
    tokens.append(Token("END", "", n))
    return tokens


# -- syntax tree ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Number:
    value: float


@dataclass(frozen=True)
class Bool:
    value: bool


@dataclass(frozen=True)
class Column:
    name: str
    pos: int


@dataclass(frozen=True)
class Unary:
    op: str  # "-", "+", "not"
    operand: object


@dataclass(frozen=True)
class Binary:
    op: str  # arithmetic, comparison, "and", "or"
    left: object
    right: object


_COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq, "!=": operator.ne}
_ARITH = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    # helpers
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def _keyword(self, word: str) -> bool:
        return self.tok.kind == "NAME" and self.tok.text.lower() == word

    def _fail(self, what: str, tok: Token | None = None) -> QueryError:
        tok = tok or self.tok
        found = "end of query" if tok.kind == "END" else repr(tok.text)
        return QueryError(f"{what} at position {tok.pos} in query {self.text!r}, found {found}")

    def parse(self):
        if self.tok.kind == "END":
            raise QueryError("query is empty")
        node = self.or_expr()
        if self.tok.kind != "END":
            raise self._fail("expected 'and', 'or', an operator or the end of the query")
        return node

    def _enter(self):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise QueryError(f"query nests deeper than {MAX_DEPTH} levels")

    def or_expr(self):
        node = self.and_expr()
        while self._keyword("or"):
            self.i += 1
            node = Binary("or", node, self.and_expr())
        return node

    def and_expr(self):
        node = self.not_expr()
        while self._keyword("and"):
            self.i += 1
            node = Binary("and", node, self.not_expr())
        return node

    def not_expr(self):
        if self._keyword("not"):
            self.i += 1
            self._enter()
            node = Unary("not", self.not_expr())
            self.depth -= 1
            return node
        return self.comparison()

    def comparison(self):
        node = self.sum()
        if self.tok.kind == "OP" and self.tok.text in _COMPARE:
            op = self.tok.text
            self.i += 1
            node = Binary(op, node, self.sum())
            if self.tok.kind == "OP" and self.tok.text in _COMPARE:
                raise self._fail("chained comparisons are not allowed (write 'a < b and b < c')")
        return node

    def sum(self):
        node = self.product()
        while self.tok.kind == "OP" and self.tok.text in "+-":
            op = self.tok.text
            self.i += 1
            node = Binary(op, node, self.product())
        return node

    def product(self):
        node = self.unary()
        while self.tok.kind == "OP" and self.tok.text in "*/":
            op = self.tok.text
            self.i += 1
            node = Binary(op, node, self.unary())
        return node

    def unary(self):
        if self.tok.kind == "OP" and self.tok.text in "+-":
            op = self.tok.text
            self.i += 1
            self._enter()
            node = Unary(op, self.unary())
            self.depth -= 1
            return node
        return self.atom()

    def atom(self):
        tok = self.tok
        if tok.kind == "NUMBER":
            self.i += 1
            return Number(float(tok.text))
        if tok.kind == "LPAR":
            self.i += 1
            self._enter()
            node = self.or_expr()
            self.depth -= 1
            if self.tok.kind != "RPAR":
                raise self._fail("expected ')' to close the '(' at position %d" % tok.pos)
            self.i += 1
            return node
        if tok.kind == "NAME":
            word = tok.text.lower()
            if word in ("true", "false"):
                self.i += 1
                return Bool(word == "true")
            if word in KEYWORDS:
                raise self._fail(f"expected a number, a column or '(' before keyword {tok.text!r}")
            if tok.text.startswith("_"):
                raise QueryError(f"name {tok.text!r} at position {tok.pos} is not allowed: names starting with '_' are refused")
            self.i += 1
            if self.tok.kind == "LPAR":
                raise QueryError(f"calls are not allowed: {tok.text}( at position {tok.pos} in query {self.text!r}")
            return Column(tok.text, tok.pos)
        raise self._fail("expected a number, a column name or '('")


def parse(text: str):
    """The syntax tree of a query (raises QueryError for anything outside the grammar)."""
    return _Parser(text).parse()


def names(tree) -> list[str]:
    """Column names a tree refers to, in order of first use."""
    out: list[str] = []

    def walk(node):
        if isinstance(node, Column):
            if node.name not in out:
                out.append(node.name)
        elif isinstance(node, Unary):
            walk(node.operand)
        elif isinstance(node, Binary):
            walk(node.left)
            walk(node.right)

    walk(tree)
    return out


def check(tree, available: Iterable[str], boolean_columns: Iterable[str] = ()) -> None:
    """Check every column exists and every operator gets operands of the right type (before evaluating)."""
    available = set(available)
    booleans = set(boolean_columns)
    unknown = [n for n in names(tree) if n not in available]
    if unknown:
        raise QueryError(f"unknown column(s) {', '.join(map(repr, unknown))}; available: {', '.join(sorted(available))}")
    top = _type(tree, booleans)
    if top != "bool":
        raise QueryError("a query must be a condition (a comparison, a boolean column, or several joined by and/or/not), not a number")


def _type(node, booleans) -> str:
    if isinstance(node, Number):
        return "num"
    if isinstance(node, Bool):
        return "bool"
    if isinstance(node, Column):
        return "bool" if node.name in booleans else "num"
    if isinstance(node, Unary):
        t = _type(node.operand, booleans)
        want = "bool" if node.op == "not" else "num"
        if t != want:
            raise QueryError(f"'{node.op}' needs a {'condition' if want == 'bool' else 'number'}")
        return t
    left, right = _type(node.left, booleans), _type(node.right, booleans)
    if node.op in ("and", "or"):
        if left != "bool" or right != "bool":
            raise QueryError(f"'{node.op}' joins conditions (comparisons or boolean columns), not numbers")
        return "bool"
    if node.op in _COMPARE:
        if left != right and node.op not in ("==", "!="):
            raise QueryError(f"'{node.op}' compares numbers with numbers")
        return "bool"
    if left != "num" or right != "num":
        raise QueryError(f"'{node.op}' needs numbers on both sides")
    return "num"


def evaluate(tree, columns: Mapping[str, object] | Callable[[str], object]):
    """Evaluate a checked tree on arrays (numpy or dask): `columns` maps (or is called with) each name."""
    get = columns if callable(columns) else columns.__getitem__
    cache: dict[str, object] = {}

    def value(node):
        if isinstance(node, Number):
            return node.value
        if isinstance(node, Bool):
            return node.value
        if isinstance(node, Column):
            if node.name not in cache:
                cache[node.name] = get(node.name)
            return cache[node.name]
        if isinstance(node, Unary):
            v = value(node.operand)
            return np.logical_not(v) if node.op == "not" else (-v if node.op == "-" else v)
        a, b = value(node.left), value(node.right)
        if node.op == "and":
            return np.logical_and(a, b)
        if node.op == "or":
            return np.logical_or(a, b)
        if node.op in _COMPARE:
            return _COMPARE[node.op](a, b)
        with np.errstate(divide="ignore", invalid="ignore"):
            return _ARITH[node.op](a, b)

    return value(tree)


def mask(text: str, columns: Mapping[str, np.ndarray], n: int | None = None, boolean_columns: Iterable[str] | None = None) -> np.ndarray:
    """The boolean row mask of a query on a mapping of equally long 1-D arrays (parsed and checked first)."""
    tree = parse(text)
    if boolean_columns is None:
        boolean_columns = [k for k, v in columns.items() if np.dtype(getattr(v, "dtype", float)) == bool]
    check(tree, columns.keys(), boolean_columns)
    if n is None:
        n = len(next(iter(columns.values()))) if columns else 0
    return np.broadcast_to(np.asarray(evaluate(tree, columns), dtype=bool), (n,)).copy()
