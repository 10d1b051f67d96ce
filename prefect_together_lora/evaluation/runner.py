"""Run an eval set on the adapter and its base, concurrently, and score every answer."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pydantic import BaseModel, Field

from prefect_together_lora.client import AsyncTogetherClient
from prefect_together_lora.errors import TogetherError
from prefect_together_lora.evaluation.dataset import EvalRow
from prefect_together_lora.evaluation.metrics import get_metric
from prefect_together_lora.options import EvalOptions


class Answer(BaseModel):
    output: str = ""
    latency_s: float | None = None
    error: str | None = None
    score: float | None = None


class RowResult(BaseModel):
    id: str
    prompt: str
    expected: list[str]
    metric: str
    tags: list[str] = Field(default_factory=list)
    adapter: Answer
    base: Answer


class Criterion(BaseModel):
    name: str
    threshold: float
    value: float | None
    passed: bool


class EvalReport(BaseModel):
    adapter_model: str
    base_model: str
    rows: list[RowResult]
    adapter_mean: float
    base_mean: float
    delta: float
    wins: int
    ties: int
    losses: int
    errors: int
    criteria: list[Criterion] = Field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.criteria)

    @property
    def verdict(self) -> str:
        if not self.criteria:
            return "no gate"
        return "pass" if self.passed else "fail"


async def _ask(
    client: AsyncTogetherClient,
    model: str,
    row: EvalRow,
    options: EvalOptions,
    semaphore: asyncio.Semaphore,
) -> Answer:
    async with semaphore:
        started = time.monotonic()
        try:
            reply = await client.chat(
                model,
                row.as_messages(),
                max_tokens=options.max_tokens,
                temperature=options.temperature,
                seed=options.seed,
            )
        except TogetherError as exc:
            return Answer(error=exc.message, latency_s=round(time.monotonic() - started, 4))
        return Answer(output=reply.text, latency_s=round(time.monotonic() - started, 4))


def _score(answer: Answer, row: EvalRow, metric: str) -> Answer:
    if answer.error is None:
        answer.score = get_metric(metric)(answer.output, row.expected, row)
    return answer


async def run_eval(
    client: AsyncTogetherClient,
    rows: list[EvalRow],
    adapter_model: str,
    base_model: str,
    options: EvalOptions,
) -> EvalReport:
    """Ask both models every row (same seed and temperature), bounded by ``concurrency``."""
    for row in rows:
        get_metric(row.metric or options.default_metric)  # unknown metric: fail before asking
    semaphore = asyncio.Semaphore(options.concurrency)
    answers = await asyncio.gather(
        *[
            _ask(client, model, row, options, semaphore)
            for row in rows
            for model in (adapter_model, base_model)
        ]
    )
    results = []
    for index, row in enumerate(rows):
        metric = row.metric or options.default_metric
        results.append(
            RowResult(
                id=row.id,
                prompt=row.prompt_text,
                expected=row.expected,
                metric=metric,
                tags=row.tags,
                adapter=_score(answers[2 * index], row, metric),
                base=_score(answers[2 * index + 1], row, metric),
            )
        )
    return summarize(results, adapter_model, base_model, options)


def summarize(
    results: list[RowResult], adapter_model: str, base_model: str, options: EvalOptions
) -> EvalReport:
    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else 0.0

    adapter_scores = [r.adapter.score or 0.0 for r in results]
    base_scores = [r.base.score or 0.0 for r in results]
    wins = sum(a > b for a, b in zip(adapter_scores, base_scores, strict=True))
    losses = sum(a < b for a, b in zip(adapter_scores, base_scores, strict=True))
    adapter_mean, base_mean = mean(adapter_scores), mean(base_scores)
    criteria: list[Criterion] = []
    if options.min_score is not None:
        criteria.append(
            Criterion(
                name="min_score",
                threshold=options.min_score,
                value=adapter_mean,
                passed=adapter_mean >= options.min_score,
            )
        )
    if options.min_improvement_over_base is not None:
        delta = adapter_mean - base_mean
        criteria.append(
            Criterion(
                name="min_improvement_over_base",
                threshold=options.min_improvement_over_base,
                value=delta,
                passed=delta >= options.min_improvement_over_base,
            )
        )
    return EvalReport(
        adapter_model=adapter_model,
        base_model=base_model,
        rows=results,
        adapter_mean=round(adapter_mean, 6),
        base_mean=round(base_mean, 6),
        delta=round(adapter_mean - base_mean, 6),
        wins=wins,
        losses=losses,
        ties=len(results) - wins - losses,
        errors=sum((r.adapter.error is not None) + (r.base.error is not None) for r in results),
        criteria=criteria,
    )


def table_rows(report: EvalReport, limit: int = 500) -> list[dict[str, Any]]:
    """Rows for the Prefect table artifact (prompts and outputs excerpted)."""

    def excerpt(text: str, n: int = 160) -> str:
        return text if len(text) <= n else text[: n - 1] + "…"

    return [
        {
            "id": r.id,
            "prompt": excerpt(r.prompt),
            "expected": excerpt(" | ".join(r.expected)),
            "metric": r.metric,
            "adapter_output": excerpt(r.adapter.error or r.adapter.output),
            "base_output": excerpt(r.base.error or r.base.output),
            "adapter_score": r.adapter.score,
            "base_score": r.base.score,
            "adapter_latency_s": r.adapter.latency_s,
            "base_latency_s": r.base.latency_s,
        }
        for r in report.rows[:limit]
    ]
