"""The `${{ }}` expression language of GitHub Actions: parse, evaluate, render.

    parse(source) -> Node                  one expression (cached)
    evaluate(node, env) -> value           a pure function of the tree and an Environment
    parse_template(text) -> Template       text with `${{ }}` parts (cached)
    render(template, env)                  raw value for a lone expression, else str
    render_value(raw, env)                 renders every string in nested data
    condition(text) -> Node                an `if:` value, with the implicit `success() &&`
    template_contexts(raw) -> frozenset    the context names rendering `raw` reads

Syntax errors raise conveyor.errors.ExpressionSyntaxError (with a 0-based
offset); evaluation errors raise conveyor.errors.ExpressionError.
"""

from conveyor.expr.ast import (
    STATUS_FUNCTIONS,
    Call,
    Compare,
    ContextRef,
    Index,
    Literal,
    Logical,
    Node,
    Not,
    Star,
    context_names,
    is_status_call,
    walk,
)
from conveyor.expr.environment import Environment
from conveyor.expr.evaluate import evaluate
from conveyor.expr.parser import KNOWN_FUNCTIONS, MAX_DEPTH, FunctionSpec, parse
from conveyor.expr.template import (
    Expression,
    Template,
    condition,
    iter_expressions,
    parse_template,
    render,
    render_value,
    template_contexts,
)
from conveyor.expr.values import to_boolean, to_number, to_string

__all__ = [
    "KNOWN_FUNCTIONS",
    "MAX_DEPTH",
    "STATUS_FUNCTIONS",
    "Call",
    "Compare",
    "ContextRef",
    "Environment",
    "Expression",
    "FunctionSpec",
    "Index",
    "Literal",
    "Logical",
    "Node",
    "Not",
    "Star",
    "Template",
    "condition",
    "context_names",
    "evaluate",
    "is_status_call",
    "iter_expressions",
    "parse",
    "parse_template",
    "render",
    "render_value",
    "template_contexts",
    "to_boolean",
    "to_number",
    "to_string",
    "walk",
]
