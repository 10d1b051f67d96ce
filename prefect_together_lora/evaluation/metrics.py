"""Metrics: small functions ``(output, expected, row) -> score in [0, 1]``, in a registry users
can extend with :func:`register_metric`."""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from collections.abc import Callable
from typing import Any

from prefect_together_lora.evaluation.dataset import EvalRow

Metric = Callable[[str, list[str], EvalRow], float]
METRICS: dict[str, Metric] = {}


def register_metric(name: str) -> Callable[[Metric], Metric]:
    """Decorator: ``@register_metric("my_metric")`` makes a metric usable by name in eval rows."""

    def decorator(fn: Metric) -> Metric:
        METRICS[name] = fn
        return fn

    return decorator


def get_metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(
            f"Unknown metric '{name}'. Available: {', '.join(sorted(METRICS))}; "
            "register more with register_metric()."
        ) from None


_PUNCT = str.maketrans("", "", string.punctuation)


def normalize(text: str) -> str:
    """Lowercase, drop punctuation and articles, collapse whitespace (SQuAD-style)."""
    text = text.lower().translate(_PUNCT)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def tokens(text: str) -> list[str]:
    return normalize(text).split()


@register_metric("exact_match")
def exact_match(output: str, expected: list[str], row: EvalRow) -> float:
    return float(any(normalize(output) == normalize(e) for e in expected))


@register_metric("contains")
def contains(output: str, expected: list[str], row: EvalRow) -> float:
    out = normalize(output)
    return float(any(normalize(e) in out for e in expected))


@register_metric("regex")
def regex(output: str, expected: list[str], row: EvalRow) -> float:
    for pattern in expected:
        try:
            if re.search(pattern, output):
                return 1.0
        except re.error as exc:
            raise ValueError(f"row {row.id}: invalid regex {pattern!r} ({exc})") from None
    return 0.0


def _json_of(output: str) -> Any:
    text = output.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, re.DOTALL)
    return json.loads(fenced.group(1) if fenced else text)


@register_metric("json_valid")
def json_valid(output: str, expected: list[str], row: EvalRow) -> float:
    try:
        _json_of(output)
    except (ValueError, RecursionError):
        return 0.0
    return 1.0


def _best_f_measure(
    output: str,
    expected: list[str],
    overlap: Callable[[list[str], list[str]], int],
    both_empty: float,
) -> float:
    """The best F-measure of the output's tokens against any reference, given how many
    tokens two sequences share (``both_empty`` scores an empty output against an empty
    reference)."""
    predicted = tokens(output)
    best = 0.0
    for reference in expected:
        ref = tokens(reference)
        if not predicted or not ref:
            best = max(best, both_empty if predicted == ref else 0.0)
            continue
        shared = overlap(predicted, ref)
        if shared:
            precision, recall = shared / len(predicted), shared / len(ref)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def _common(a: list[str], b: list[str]) -> int:
    return sum((Counter(a) & Counter(b)).values())


@register_metric("token_f1")
def token_f1(output: str, expected: list[str], row: EvalRow) -> float:
    return _best_f_measure(output, expected, _common, both_empty=1.0)


def _lcs(a: list[str], b: list[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


@register_metric("rouge_l")
def rouge_l(output: str, expected: list[str], row: EvalRow) -> float:
    """ROUGE-L F-measure: the longest common subsequence of tokens."""
    return _best_f_measure(output, expected, _lcs, both_empty=0.0)


@register_metric("json_schema")
def json_schema(output: str, expected: list[str], row: EvalRow) -> float:
    """The output is JSON valid against the JSON Schema given as the row's ``expected``."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        schema = json.loads(expected[0])
        Draft202012Validator.check_schema(schema)
    except (ValueError, SchemaError) as exc:
        raise ValueError(f"row {row.id}: expected must be a JSON Schema ({exc})") from None
    try:
        document = _json_of(output)
    except (ValueError, RecursionError):
        return 0.0
    return float(Draft202012Validator(schema).is_valid(document))


@register_metric("judge")
def judge(output: str, expected: list[str], row: EvalRow) -> float:
    """Placeholder: the runner asks the judge model (needs ``judge_model``); never called."""
    raise ValueError("the 'judge' metric needs EvalOptions.judge_model")
