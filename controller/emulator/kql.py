"""The subset of Kusto (KQL) that Azure Resource Graph queries are written in.

A tokenizer and a recursive-descent parser build a small tree that is evaluated over
the emulated rows. Anything outside the subset raises :class:`KqlError` naming the
part not understood, so a query the emulator cannot answer fails loudly instead of
matching the wrong resources. Grammar (keywords are case-sensitive, as in Kusto)::

    query    := TABLE ('|' stage)*            TABLE: Resources (any case)
    stage    := 'where' expr
              | 'project' column (',' column)*
              | ('order' | 'sort') 'by' column ('asc' | 'desc')? (',' ...)*   default desc
              | ('limit' | 'take') INT
    expr     := and ('or' and)*
    and      := unary ('and' unary)*
    unary    := 'not' '(' expr ')' | '(' expr ')' | FUNC '(' field ')' | field OP operand
    FUNC     := isempty | isnotempty | isnull | isnotnull
    OP       := == != =~ !~ < <= > >= | in in~ !in !in~ (list)
              | has contains startswith endswith and their !… and …_cs forms
              | 'matches' 'regex' STRING
    field    := column ('.' NAME | '[' STRING ']')*
    operand  := STRING | NUMBER | true | false | '(' literal (',' literal)* ')'

Strings take single or double quotes with backslash escapes, or ``@'…'`` verbatim.
A field that is absent (an untagged resource's ``tags['k']``) is null: string
operators see it as ``""``, so ``isempty`` holds and ``!=`` / ``!in`` match it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Row = Mapping[str, Any]


class KqlError(ValueError):
    """A query outside the supported subset, or malformed; the message names the part."""


# -- tokens ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    kind: str  # name, string, number, op, punct, end
    text: str
    value: Any
    pos: int


_SYMBOLS = ("==", "!=", "=~", "!~", "<=", ">=", "|", ",", "(", ")", "[", "]", ".", "<", ">", "=")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z]+)?~?")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "0": "\0"}


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif text.startswith("//", i):  # a comment runs to the end of the line
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        elif ch in "'\"" or (ch == "@" and text[i + 1 : i + 2] in ("'", '"')):
            value, end = _string(text, i)
            tokens.append(Token("string", text[i:end], value, i))
            i = end
        elif ch.isdigit():
            m = _NUMBER.match(text, i)
            assert m is not None
            num = float(m.group()) if "." in m.group() else int(m.group())
            tokens.append(Token("number", m.group(), num, i))
            i = m.end()
        elif ch == "!" and _NAME.match(text, i + 1):
            m = _NAME.match(text, i + 1)
            assert m is not None
            tokens.append(Token("name", "!" + m.group(), "!" + m.group(), i))
            i = m.end()
        elif m := _NAME.match(text, i):
            tokens.append(Token("name", m.group(), m.group(), i))
            i = m.end()
        else:
            symbol = next((s for s in _SYMBOLS if text.startswith(s, i)), None)
            if symbol is None:
                raise KqlError(f"unexpected character {ch!r} at position {i}")
            tokens.append(Token("punct", symbol, symbol, i))
            i += len(symbol)
    tokens.append(Token("end", "end of query", None, len(text)))
    return tokens


def _string(text: str, i: int) -> tuple[str, int]:
    verbatim = text[i] == "@"
    if verbatim:
        i += 1
    quote = text[i]
    out: list[str] = []
    j = i + 1
    while j < len(text):
        ch = text[j]
        if ch == quote:
            return "".join(out), j + 1
        if ch == "\\" and not verbatim:
            nxt = text[j + 1 : j + 2]
            if nxt not in _ESCAPES:
                raise KqlError(f"unsupported escape '\\{nxt}' in the string at position {i}")
            out.append(_ESCAPES[nxt])
            j += 2
            continue
        out.append(ch)
        j += 1
    raise KqlError(f"unterminated string starting at position {i}")


# -- tree --------------------------------------------------------------------------------

Expr = Callable[[Row], bool]


@dataclass(frozen=True)
class Field:
    column: str
    path: tuple[str, ...]

    def get(self, row: Row) -> Any:
        value = row.get(self.column)
        for key in self.path:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    def __str__(self) -> str:
        return self.column + "".join(f"[{json.dumps(k)}]" for k in self.path)


@dataclass(frozen=True)
class Where:
    test: Expr


@dataclass(frozen=True)
class Project:
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Order:
    keys: tuple[tuple[str, bool], ...]  # (column, descending)


@dataclass(frozen=True)
class Limit:
    count: int


Stage = Where | Project | Order | Limit


@dataclass(frozen=True)
class Query:
    stages: tuple[Stage, ...]

    @property
    def limited(self) -> bool:
        """A ``limit``/``take`` makes the result unpageable (Resource Graph gives no token)."""
        return any(isinstance(s, Limit) for s in self.stages)

    def run(self, rows: Iterable[Row]) -> list[dict[str, Any]]:
        """The query's result over ``rows``, in one pass per stage."""
        current: Iterable[Row] = rows
        for stage in self.stages:
            if isinstance(stage, Where):
                current = [r for r in current if stage.test(r)]
            elif isinstance(stage, Project):
                cols = stage.columns
                current = [{c: r.get(c) for c in cols} for r in current]
            elif isinstance(stage, Order):
                ordered = list(current)
                for column, desc in reversed(stage.keys):  # stable sorts, last key first
                    ordered.sort(key=_by(column), reverse=desc)
                current = ordered
            else:
                current = list(current)[: stage.count]
        return [dict(r) for r in current]


def _by(column: str) -> Callable[[Row], tuple[int, Any]]:
    return lambda row: _sort_key(row.get(column))


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    if isinstance(value, bool):
        return (1, int(value))
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (3, json.dumps(value, sort_keys=True))


# -- values ------------------------------------------------------------------------------


def _text(value: Any) -> str:
    """``tostring()``: null is "", dynamic values are JSON, booleans lower-case."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def _equal(value: Any, literal: Any, fold: bool) -> bool:
    if isinstance(literal, bool) or isinstance(value, bool):
        return value is literal
    if isinstance(literal, int | float) and isinstance(value, int | float):
        return float(value) == float(literal)
    left, right = _text(value), _text(literal)
    return left.lower() == right.lower() if fold else left == right


def _terms(text: str) -> list[str]:
    return re.findall(r"[A-Za-z0-9]+", text)


def _has(value: str, needle: str) -> bool:
    """``has``: ``needle`` is a whole term of ``value`` (terms are alphanumeric runs)."""
    if not needle:
        return True
    if not re.fullmatch(r"[A-Za-z0-9]+", needle):
        # a needle with punctuation matches where its terms occur in sequence
        return (
            re.search(r"(?<![A-Za-z0-9])" + re.escape(needle) + r"(?![A-Za-z0-9])", value)
            is not None
        )
    return needle in _terms(value)


_STRING_OPS: dict[str, Callable[[str, str], bool]] = {
    "has": lambda v, n: _has(v.lower(), n.lower()),
    "has_cs": _has,
    "contains": lambda v, n: n.lower() in v.lower(),
    "contains_cs": lambda v, n: n in v,
    "startswith": lambda v, n: v.lower().startswith(n.lower()),
    "startswith_cs": lambda v, n: v.startswith(n),
    "endswith": lambda v, n: v.lower().endswith(n.lower()),
    "endswith_cs": lambda v, n: v.endswith(n),
}
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}
_FUNCTIONS: dict[str, Callable[[Any], bool]] = {
    "isempty": lambda v: _text(v) == "",
    "isnotempty": lambda v: _text(v) != "",
    "isnull": lambda v: v is None,
    "isnotnull": lambda v: v is not None,
}
_STAGES = ("where", "project", "order", "sort", "limit", "take")


# -- parser ------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str, columns: Sequence[str]) -> None:
        self.tokens = tokenize(text)
        self.i = 0
        self.columns = list(columns)  # what the current stage's rows have

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def at(self, text: str) -> bool:
        return self.tok.kind in ("name", "punct") and self.tok.text == text

    def expect(self, text: str, what: str) -> Token:
        if not self.at(text):
            raise self.unexpected(what)
        return self.take()

    def unexpected(self, wanted: str) -> KqlError:
        tok = self.tok
        got = "the end of the query" if tok.kind == "end" else repr(tok.text)
        return KqlError(f"expected {wanted} at position {tok.pos}, found {got}")

    # query and stages

    def query(self) -> Query:
        table = self.take()
        if table.kind != "name" or table.text.lower() != "resources":
            raise KqlError(
                f"unsupported table {table.text!r} at position {table.pos} (only Resources)"
            )
        stages: list[Stage] = []
        while self.at("|"):
            self.take()
            stages.append(self.stage())
        if self.tok.kind != "end":
            raise self.unexpected("'|' or the end of the query")
        return Query(tuple(stages))

    def stage(self) -> Stage:
        tok = self.take()
        name = tok.text
        if tok.kind != "name" or name not in _STAGES:
            raise KqlError(
                f"unsupported operator {name!r} at position {tok.pos} "
                f"(supported: where, project, order by, sort by, limit, take)"
            )
        if name == "where":
            return Where(self.expr())
        if name == "project":
            cols = [self.column_name()]
            while self.at(","):
                self.take()
                cols.append(self.column_name())
            self.columns = cols
            return Project(tuple(cols))
        if name in ("order", "sort"):
            self.expect("by", f"'by' after '{name}'")
            keys = [self.sort_key()]
            while self.at(","):
                self.take()
                keys.append(self.sort_key())
            return Order(tuple(keys))
        count = self.take()
        if count.kind != "number" or not isinstance(count.value, int):
            raise KqlError(f"expected a whole number after '{name}' at position {count.pos}")
        return Limit(count.value)

    def column_name(self) -> str:
        tok = self.take()
        if tok.kind != "name" or tok.text.startswith("!"):
            self.i -= 1
            raise self.unexpected("a column name")
        if self.at("=") or self.at(".") or self.at("[") or self.at("("):
            raise KqlError(
                f"unsupported column expression after '{tok.text}' at position {self.tok.pos}"
                " (only plain column names)"
            )
        if tok.text not in self.columns:
            raise KqlError(f"failed to resolve column '{tok.text}' at position {tok.pos}")
        return tok.text

    def sort_key(self) -> tuple[str, bool]:
        column = self.column_name()
        desc = True  # Kusto sorts descending unless told
        if self.at("asc") or self.at("desc"):
            desc = self.take().text == "desc"
        if self.at("nulls"):
            raise KqlError(f"unsupported 'nulls first/last' at position {self.tok.pos}")
        return column, desc

    # expressions

    def expr(self) -> Expr:
        left = self.conjunction()
        while self.at("or"):
            self.take()
            right = self.conjunction()
            left = _or(left, right)
        return left

    def conjunction(self) -> Expr:
        left = self.unary()
        while self.at("and"):
            self.take()
            right = self.unary()
            left = _and(left, right)
        return left

    def unary(self) -> Expr:
        if self.at("("):
            self.take()
            inner = self.expr()
            self.expect(")", "')'")
            return inner
        tok = self.tok
        if tok.kind == "name" and self.tokens[self.i + 1].text == "(":
            name = tok.text
            self.take()
            self.take()
            if name == "not":
                inner = self.expr()
                self.expect(")", "')'")
                return _not(inner)
            if name not in _FUNCTIONS:
                raise KqlError(
                    f"unsupported function '{name}' at position {tok.pos} "
                    f"(supported: not, {', '.join(_FUNCTIONS)})"
                )
            field = self.field()
            self.expect(")", "')'")
            fn = _FUNCTIONS[name]
            return lambda row: fn(field.get(row))
        field = self.field()
        return self.comparison(field)

    def field(self) -> Field:
        tok = self.tok
        if tok.kind != "name" or tok.text.startswith("!") or tok.text.endswith("~"):
            raise self.unexpected("a column")
        self.take()
        if tok.text not in self.columns:
            raise KqlError(f"failed to resolve column '{tok.text}' at position {tok.pos}")
        path: list[str] = []
        while self.at(".") or self.at("["):
            if self.take().text == ".":
                key = self.take()
                if key.kind != "name":
                    self.i -= 1
                    raise self.unexpected("a property name after '.'")
                path.append(key.text)
            else:
                key = self.take()
                if key.kind != "string":
                    self.i -= 1
                    raise self.unexpected("a quoted key inside '[...]'")
                path.append(key.value)
                self.expect("]", "']'")
        return Field(tok.text, tuple(path))

    def literal(self) -> Any:
        tok = self.take()
        if tok.kind in ("string", "number"):
            return tok.value
        if tok.kind == "name" and tok.text in ("true", "false"):
            return tok.text == "true"
        self.i -= 1
        raise self.unexpected("a literal (a quoted string, a number, true or false)")

    def string_literal(self, op: str) -> str:
        tok = self.take()
        if tok.kind != "string":
            self.i -= 1
            raise self.unexpected(f"a quoted string after '{op}'")
        return str(tok.value)

    def comparison(self, field: Field) -> Expr:
        tok = self.take()
        op = tok.text
        if tok.kind == "end":
            self.i -= 1
            raise self.unexpected(f"an operator after '{field}'")
        if op in ("==", "!=", "=~", "!~"):
            value = self.literal()
            fold = op in ("=~", "!~")
            if op in ("==", "=~"):
                return lambda row: _equal(field.get(row), value, fold)
            return lambda row: not _equal(field.get(row), value, fold)
        if op in _COMPARE:
            bound = self.literal()
            if not isinstance(bound, int | float) or isinstance(bound, bool):
                raise KqlError(f"'{op}' needs a number at position {tok.pos}")
            cmp = _COMPARE[op]
            return lambda row: _numeric(field.get(row), bound, cmp)
        if op in ("in", "in~", "!in", "!in~"):
            values = self.literal_list(op)
            fold = op.endswith("~")
            negate = op.startswith("!")
            if fold:
                folded = {_text(v).lower() for v in values}
                test: Expr = lambda row: _text(field.get(row)).lower() in folded  # noqa: E731
            else:
                test = lambda row: any(_equal(field.get(row), v, False) for v in values)  # noqa: E731
            return _not(test) if negate else test
        negate = op.startswith("!")
        base = op[1:] if negate else op
        if base in _STRING_OPS:
            needle = _text(self.literal())
            fn = _STRING_OPS[base]
            if negate:
                return lambda row: not fn(_text(field.get(row)), needle)
            return lambda row: fn(_text(field.get(row)), needle)
        if op == "matches":
            self.expect("regex", "'regex' after 'matches'")
            pattern = self.string_literal("matches regex")
            try:
                regex = re.compile(pattern)
            except re.error as exc:
                raise KqlError(f"invalid regular expression {pattern!r}: {exc}") from None
            return lambda row: regex.search(_text(field.get(row))) is not None
        raise KqlError(f"unsupported operator {op!r} at position {tok.pos}")

    def literal_list(self, op: str) -> list[Any]:
        self.expect("(", f"'(' after '{op}'")
        values = [self.literal()]
        while self.at(","):
            self.take()
            values.append(self.literal())
        self.expect(")", "')'")
        return values


def _and(a: Expr, b: Expr) -> Expr:
    return lambda row: a(row) and b(row)


def _or(a: Expr, b: Expr) -> Expr:
    return lambda row: a(row) or b(row)


def _not(a: Expr) -> Expr:
    return lambda row: not a(row)


def _numeric(value: Any, bound: float, cmp: Callable[[float, float], bool]) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            value = float(_text(value))
        except ValueError:
            return False
    return cmp(float(value), float(bound))


def parse(text: str, columns: Sequence[str]) -> Query:
    """Parse ``text``; ``columns`` are the table's columns (others fail to resolve)."""
    return _Parser(text, columns).query()
