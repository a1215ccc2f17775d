"""Parses expression source into a tree: recursive descent, one function per level.

Precedence, loosest first (GitHub's): `||`, `&&`, `== !=`, `< <= > >=`, `!`,
then property access, indexing and calls. Function names are checked and
their argument counts validated here, so a misspelt function is a syntax
error before anything runs. Nesting deeper than MAX_DEPTH is refused, which
keeps both parsing and evaluation clear of Python's recursion limit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from conveyor.errors import ExpressionSyntaxError
from conveyor.expr.ast import Call, Compare, ContextRef, Index, Literal, Logical, Node, Not, Star
from conveyor.expr.lexer import Token, TokenKind, tokenize

MAX_DEPTH = 50
"""GitHub's limit on how deeply an expression may nest."""


@dataclass(frozen=True)
class FunctionSpec:
    """A built-in function's canonical name and how many arguments it takes."""

    name: str
    min_args: int
    max_args: int | None
    odd_args: bool = False


KNOWN_FUNCTIONS: Mapping[str, FunctionSpec] = {
    spec.name.lower(): spec
    for spec in (
        FunctionSpec("contains", 2, 2),
        FunctionSpec("startsWith", 2, 2),
        FunctionSpec("endsWith", 2, 2),
        FunctionSpec("format", 1, None),
        FunctionSpec("join", 1, 2),
        FunctionSpec("toJSON", 1, 1),
        FunctionSpec("fromJSON", 1, 1),
        FunctionSpec("hashFiles", 1, None),
        FunctionSpec("case", 3, None, odd_args=True),
        FunctionSpec("success", 0, 0),
        FunctionSpec("always", 0, 0),
        FunctionSpec("cancelled", 0, 0),
        FunctionSpec("failure", 0, 0),
    )
}
"""Every function an expression may call, keyed by lower-cased name (names ignore case)."""

_EQUALITY = {TokenKind.EQ: "==", TokenKind.NE: "!="}
_ORDERING = {TokenKind.LT: "<", TokenKind.LE: "<=", TokenKind.GT: ">", TokenKind.GE: ">="}
_LITERALS = frozenset(
    {TokenKind.NUMBER, TokenKind.STRING, TokenKind.TRUE, TokenKind.FALSE, TokenKind.NULL}
)


@lru_cache(maxsize=4096)
def parse(source: str) -> Node:
    """The tree of `source`; raises ExpressionSyntaxError with a 0-based offset into it."""
    return _Parser(source).parse()


class _Parser:
    """One parse of one source: the tokens, a cursor, and the depth bookkeeping."""

    def __init__(self, source: str) -> None:
        self._tokens = tokenize(source)
        self._pos = 0
        self._nesting = 0
        self._depths: dict[int, int] = {}

    def parse(self) -> Node:
        """expression := or_expr EOF"""
        if self._peek().kind is TokenKind.EOF:
            raise ExpressionSyntaxError("expected an expression", self._peek().offset)
        node = self._or()
        token = self._peek()
        if token.kind is not TokenKind.EOF:
            raise self._unexpected(token)
        return node

    def _or(self) -> Node:
        """or_expr := and_expr ( '||' and_expr )*"""
        return self._chain(TokenKind.OR, "||", self._and)

    def _and(self) -> Node:
        """and_expr := equality ( '&&' equality )*"""
        return self._chain(TokenKind.AND, "&&", self._equality)

    def _chain(self, kind: TokenKind, op: str, operand: Callable[[], Node]) -> Node:
        first = operand()
        operands = [first]
        while self._peek().kind is kind:
            self._advance()
            operands.append(operand())
        if len(operands) == 1:
            return first
        return self._build(Logical(op, tuple(operands), first.offset), operands)

    def _equality(self) -> Node:
        """equality := comparison ( ( '==' | '!=' ) comparison )*"""
        node = self._comparison()
        while (op := _EQUALITY.get(self._peek().kind)) is not None:
            self._advance()
            right = self._comparison()
            node = self._build(Compare(op, node, right, node.offset), [node, right])
        return node

    def _comparison(self) -> Node:
        """comparison := unary ( ( '<' | '<=' | '>' | '>=' ) unary )*"""
        node = self._unary()
        while (op := _ORDERING.get(self._peek().kind)) is not None:
            self._advance()
            right = self._unary()
            node = self._build(Compare(op, node, right, node.offset), [node, right])
        return node

    def _unary(self) -> Node:
        """unary := '!' unary | postfix"""
        token = self._peek()
        if token.kind is not TokenKind.NOT:
            return self._postfix()
        self._advance()
        self._enter(token)
        operand = self._unary()
        self._nesting -= 1
        return self._build(Not(operand, token.offset), [operand])

    def _postfix(self) -> Node:
        """postfix := primary ( '.' ( NAME | '*' ) | '[' ( or_expr | '*' ) ']' )*"""
        node = self._primary()
        while True:
            token = self._peek()
            if token.kind is TokenKind.DOT:
                self._advance()
                name = self._advance()
                if name.kind is TokenKind.STAR:
                    node = self._build(Star(node, node.offset), [node])
                elif name.kind is TokenKind.IDENT:
                    key = self._build(Literal(name.text, name.offset), [])
                    node = self._build(Index(node, key, node.offset), [node, key])
                else:
                    raise self._unexpected(name, "a property name or '*' after '.'")
            elif token.kind is TokenKind.LBRACKET:
                self._advance()
                if self._peek().kind is TokenKind.STAR:
                    self._advance()
                    node = self._build(Star(node, node.offset), [node])
                else:
                    self._enter(token)
                    key = self._or()
                    self._nesting -= 1
                    node = self._build(Index(node, key, node.offset), [node, key])
                self._expect(TokenKind.RBRACKET, "']'")
            else:
                return node

    def _primary(self) -> Node:
        """primary := literal | NAME | NAME '(' [ or_expr ( ',' or_expr )* ] ')' | '(' or_expr ')'"""
        token = self._advance()
        if token.kind in _LITERALS:
            return self._build(Literal(token.value, token.offset), [])
        if token.kind is TokenKind.IDENT:
            if self._peek().kind is TokenKind.LPAREN:
                return self._call(token)
            return self._build(ContextRef(token.text, token.offset), [])
        if token.kind is TokenKind.LPAREN:
            self._enter(token)
            node = self._or()
            self._nesting -= 1
            self._expect(TokenKind.RPAREN, "')'")
            return node
        raise self._unexpected(token)

    def _call(self, name: Token) -> Node:
        spec = KNOWN_FUNCTIONS.get(name.text.lower())
        if spec is None:
            raise ExpressionSyntaxError(f"unknown function '{name.text}'", name.offset)
        open_paren = self._advance()
        self._enter(open_paren)
        args: list[Node] = []
        if self._peek().kind is not TokenKind.RPAREN:
            args.append(self._or())
            while self._peek().kind is TokenKind.COMMA:
                self._advance()
                args.append(self._or())
        self._nesting -= 1
        self._expect(TokenKind.RPAREN, "',' or ')'")
        _check_arity(spec, len(args), name.offset)
        return self._build(Call(spec.name, tuple(args), name.offset), args)

    def _build(self, node: Node, parts: list[Node]) -> Node:
        """Records the depth of a new node and refuses trees deeper than MAX_DEPTH."""
        depth = 1 + max((self._depths[id(part)] for part in parts), default=0)
        if depth > MAX_DEPTH:
            raise ExpressionSyntaxError(_too_deep(), node.offset)
        self._depths[id(node)] = depth
        return node

    def _enter(self, token: Token) -> None:
        self._nesting += 1
        if self._nesting > MAX_DEPTH:
            raise ExpressionSyntaxError(_too_deep(), token.offset)

    def _peek(self) -> Token:
        return self._tokens[self._pos]

    def _advance(self) -> Token:
        token = self._tokens[self._pos]
        if token.kind is not TokenKind.EOF:
            self._pos += 1
        return token

    def _expect(self, kind: TokenKind, what: str) -> Token:
        token = self._advance()
        if token.kind is not kind:
            raise self._unexpected(token, what)
        return token

    @staticmethod
    def _unexpected(token: Token, expected: str | None = None) -> ExpressionSyntaxError:
        found = "end of expression" if token.kind is TokenKind.EOF else f"'{token.text}'"
        message = f"unexpected {found}"
        if expected:
            message += f"; expected {expected}"
        return ExpressionSyntaxError(message, token.offset)


def _check_arity(spec: FunctionSpec, count: int, offset: int) -> None:
    if count < spec.min_args:
        raise ExpressionSyntaxError(
            f"too few arguments for {spec.name}(): expected at least {spec.min_args}, got {count}",
            offset,
        )
    if spec.max_args is not None and count > spec.max_args:
        raise ExpressionSyntaxError(
            f"too many arguments for {spec.name}(): expected at most {spec.max_args}, got {count}",
            offset,
        )
    if spec.odd_args and count % 2 == 0:
        raise ExpressionSyntaxError(
            f"{spec.name}() needs an odd number of arguments (condition, value pairs, then a default)",
            offset,
        )


def _too_deep() -> str:
    return f"expression nests too deeply (more than {MAX_DEPTH} levels)"
