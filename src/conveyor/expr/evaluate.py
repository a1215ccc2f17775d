"""Evaluates an expression tree: a pure function of the tree and an Environment.

Reading a missing property or an index out of range gives null, never an
error. `&&` and `||` return one of their operands and stop early. After an
object filter (`.*`), further property and index steps map over the
filtered elements, keeping only those that have the property.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from conveyor.errors import ExpressionError
from conveyor.expr.ast import Call, Compare, ContextRef, Index, Literal, Logical, Node, Not, Star
from conveyor.expr.environment import Environment
from conveyor.expr.functions import FUNCTIONS
from conveyor.expr.values import (
    MISSING,
    FilteredArray,
    elements,
    get_property,
    index,
    loose_equal,
    order,
    to_boolean,
)


def evaluate(node: Node, env: Environment) -> Any:
    """The value of `node`; raises ExpressionError for runtime errors (bad JSON, bad format)."""
    value = _eval(node, env)
    return list(value) if type(value) is FilteredArray else value


def _eval(node: Node, env: Environment) -> Any:
    return _HANDLERS[type(node)](node, env)


def _literal(node: Literal, _env: Environment) -> Any:
    return node.value


def _context(node: ContextRef, env: Environment) -> Any:
    value = get_property(env.contexts, node.name)
    return None if value is MISSING else value


def _index(node: Index, env: Environment) -> Any:
    target = _eval(node.target, env)
    key = _eval(node.index, env)
    if type(target) is FilteredArray:
        found = (index(element, key) for element in target)
        return FilteredArray(value for value in found if value is not MISSING)
    value = index(target, key)
    return None if value is MISSING else value


def _star(node: Star, env: Environment) -> Any:
    target = _eval(node.target, env)
    if type(target) is FilteredArray:
        return FilteredArray(value for element in target for value in elements(element))
    return FilteredArray(elements(target))


def _not(node: Not, env: Environment) -> Any:
    return not to_boolean(_eval(node.operand, env))


def _compare(node: Compare, env: Environment) -> Any:
    left = _eval(node.left, env)
    right = _eval(node.right, env)
    if node.op == "==":
        return loose_equal(left, right)
    if node.op == "!=":
        return not loose_equal(left, right)
    return order(node.op, left, right)


def _logical(node: Logical, env: Environment) -> Any:
    # `&&` stops at the first falsy operand, `||` at the first truthy one.
    stop_when = node.op == "||"
    value = None
    for operand in node.operands:
        value = _eval(operand, env)
        if to_boolean(value) is stop_when:
            return value
    return value


def _call(node: Call, env: Environment) -> Any:
    if node.name == "case":
        return _case(node.args, env)
    args = [_eval(arg, env) for arg in node.args]
    return FUNCTIONS[node.name](env, args)


def _case(args: tuple[Node, ...], env: Environment) -> Any:
    """`case(pred1, value1, pred2, value2, ..., default)`: the value of the first true predicate."""
    for position in range(0, len(args) - 1, 2):
        predicate = _eval(args[position], env)
        if type(predicate) is not bool:
            raise ExpressionError(
                "case(): each condition must evaluate to a boolean (true or false)"
            )
        if predicate:
            return _eval(args[position + 1], env)
    return _eval(args[-1], env)


_HANDLERS: dict[type, Callable[[Any, Environment], Any]] = {
    Literal: _literal,
    ContextRef: _context,
    Index: _index,
    Star: _star,
    Not: _not,
    Compare: _compare,
    Logical: _logical,
    Call: _call,
}
