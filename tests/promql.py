"""The metric names and labels a PromQL expression (an alert rule, a dashboard query) refers to.

Enough of PromQL's grammar to find every name a query depends on: selectors with their
matchers, and the label lists of ``by``/``without``/``on``/``ignoring``/``group_*``. Grafana's
``$variables`` are dropped first. A name typed wrong in a query gives an empty panel or an alert
that never fires, with no error anywhere: the tests compare these names with a live server's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["Selector", "names_in", "problems"]

_TOKEN = re.compile(
    r'\s+|"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|\[[^\]]*\]|[0-9][0-9a-zA-Z.]*|[a-zA-Z_:][a-zA-Z0-9_:]*'
    r"|=~|!~|!=|==|>=|<=|[{}(),=<>+\-*/%^@]"
)
_AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
                 "topk", "quantile", "limitk", "limit_ratio"}
_LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = {"offset", "bool", "and", "or", "unless", "atan2", "inf", "nan", "Inf", "NaN"}
_VARIABLE = re.compile(r"\$\{[^}]*\}|\$[a-zA-Z_][a-zA-Z0-9_]*")


@dataclass
class Selector:
    """One vector selector: its metric name (``""`` for ``{...}`` alone) and matchers ``label -> (op, value)``."""

    name: str
    matchers: dict[str, tuple[str, str]] = field(default_factory=dict)


def _tokens(expr: str) -> list[str]:
    expr = _VARIABLE.sub("1m", expr)  # every Grafana variable used here is a range ($__rate_interval)
    tokens, pos = [], 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if match is None:
            raise ValueError(f"cannot read {expr[pos:pos + 20]!r} in {expr!r}")
        if not match.group().isspace():
            tokens.append(match.group())
        pos = match.end()
    return tokens


def _unquote(text: str) -> str:
    return text[1:-1].encode().decode("unicode_escape")


def names_in(expr: str) -> tuple[list[Selector], set[str]]:
    """The expression's selectors, and the labels it groups or matches on."""
    tokens = _tokens(expr)
    selectors: list[Selector] = []
    grouping: set[str] = set()
    i = 0
    while i < len(tokens):
        token = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else ""
        if token in _LABEL_LISTS:
            if following == "(":
                i += 2
                while tokens[i] != ")":
                    if tokens[i] != ",":
                        grouping.add(tokens[i])
                    i += 1
        elif token == "{" or (re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", token) and following != "("
                              and token not in _AGGREGATIONS and token not in _KEYWORDS):
            selector = Selector("" if token == "{" else token)
            if token != "{" and following == "{":
                i += 1
            if tokens[i] == "{":
                i += 1
                while tokens[i] != "}":
                    if tokens[i] != ",":
                        label, op, value = tokens[i], tokens[i + 1], tokens[i + 2]
                        selector.matchers[label] = (op, _unquote(value))
                        i += 2
                    i += 1
            selectors.append(selector)
        i += 1
    return selectors, grouping


def problems(expr: str, series: Iterable[dict[str, str]],
             values: dict[tuple[str, str], Iterable[str]] | None = None) -> list[str]:
    """What in ``expr`` no live series has: a metric name, a label of that metric, a label value
    compared with ``=`` (``values``, by metric and label, adds values the code defines that the
    traffic did not produce), a grouping label. ``series`` are label sets with ``__name__``, as
    Prometheus's series API gives."""
    labels_of: dict[str, set[str]] = {}
    seen: dict[tuple[str, str], set[str]] = {}
    for one in series:
        name = one["__name__"]
        labels_of.setdefault(name, set()).update(one)
        for label, value in one.items():
            seen.setdefault((name, label), set()).add(value)
    found: list[str] = []
    selectors, grouping = names_in(expr)
    available: set[str] = set()
    for selector in selectors:
        if selector.name not in labels_of:
            found.append(f"no series named {selector.name!r}")
            continue
        available |= labels_of[selector.name]
        for label, (op, value) in selector.matchers.items():
            if label not in labels_of[selector.name]:
                found.append(f"{selector.name} has no label {label!r}")
            elif op == "=" and value not in seen[(selector.name, label)] | set((values or {}).get((selector.name, label), ())):
                found.append(f"{selector.name} never has {label}={value!r}")
    found += [f"no series of {expr!r} has the label {label!r}" for label in sorted(grouping - available)]
    return found
