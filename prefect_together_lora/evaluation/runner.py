"""Run an eval set on the adapter and its base: concurrent under rate limits, resumable, scored,
compared pairwise, and judged against the gate."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any

from pydantic import BaseModel, Field

from prefect_together_lora.client import AsyncTogetherClient
from prefect_together_lora.errors import (
    GenerationTimedOut,
    RateLimitError,
    ServerError,
    TogetherConnectionError,
    TogetherError,
)
from prefect_together_lora.evaluation.dataset import EvalRow
from prefect_together_lora.evaluation.judge import DEFAULT_RUBRIC, judge_messages, parse_judge_score
from prefect_together_lora.evaluation.limiter import AdaptiveLimiter
from prefect_together_lora.evaluation.metrics import get_metric
from prefect_together_lora.evaluation.stats import bootstrap_mean_ci, mean, percentile
from prefect_together_lora.evaluation.store import AnswerStore, MemoryAnswerStore, answer_key
from prefect_together_lora.options import EvalOptions

TRANSIENT = (RateLimitError, ServerError, TogetherConnectionError)
OnProgress = Callable[[int, int], None]


class Answer(BaseModel):
    output: str = ""
    latency_s: float | None = None
    error: str | None = None
    score: float | None = None
    reused: bool = Field(default=False, description="Taken from the answer store.")


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


class TagStats(BaseModel):
    tag: str
    rows: int
    adapter_mean: float
    base_mean: float
    delta: float


class EvalReport(BaseModel):
    adapter_model: str
    base_model: str
    rows: list[RowResult]
    adapter_mean: float
    base_mean: float
    delta: float
    delta_ci_low: float
    delta_ci_high: float
    wins: int
    ties: int
    losses: int
    errors: int
    adapter_error_rate: float = 0.0
    base_error_rate: float = 0.0
    adapter_p95_latency_s: float | None = None
    base_p95_latency_s: float | None = None
    per_tag: list[TagStats] = Field(default_factory=list)
    criteria: list[Criterion] = Field(default_factory=list)
    asked: int = Field(default=0, description="Requests answered in this run.")
    reused: int = Field(default=0, description="Answers taken from the answer store.")
    throttled: int = Field(default=0, description="429 answers seen (all retried).")
    judge_calls: int = 0
    judge_unparsed: int = 0

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.criteria)

    @property
    def verdict(self) -> str:
        if not self.criteria:
            return "no gate"
        return "pass" if self.passed else "fail"


class _Runner:
    def __init__(
        self,
        client: AsyncTogetherClient,
        options: EvalOptions,
        store: AnswerStore,
        total: int,
        on_progress: OnProgress | None,
        slot: Callable[[], AbstractAsyncContextManager[Any]] | None,
    ) -> None:
        self.client = client
        self.options = options
        self.store = store
        self.limiter = AdaptiveLimiter(options.concurrency)
        self.total = total
        self.done = 0
        self.on_progress = on_progress
        self.slot = slot
        self.asked = self.reused = self.judge_calls = self.judge_unparsed = 0
        self.rng = random.Random(options.seed)

    async def ask(
        self, model: str, messages: list[dict[str, str]], params: dict[str, Any]
    ) -> Answer:
        """The stored answer, or ask until answered (transient failures are retried until the
        deadline, so no row is lost to a 429 storm)."""
        key = answer_key(model, messages, params)
        stored = self.store.get(key)
        if stored is not None:
            self.reused += 1
            return Answer(**stored, reused=True)
        deadline = time.monotonic() + self.options.retry_deadline_s
        backoff = 0.5
        while True:
            async with self.limiter, self.slot() if self.slot else nullcontext():
                started = time.monotonic()
                try:
                    reply = await self.client.chat(model, messages, **params)
                except GenerationTimedOut as exc:  # asking again would bill it again
                    return Answer(error=exc.message, latency_s=round(time.monotonic() - started, 4))
                except TRANSIENT as exc:
                    if isinstance(exc, RateLimitError) or exc.status_code == 503:
                        self.limiter.on_throttle()
                    failure: TogetherError | None = exc
                except TogetherError as exc:
                    return Answer(error=exc.message, latency_s=round(time.monotonic() - started, 4))
                else:
                    self.limiter.on_success(reply.rate_limit)
                    answer = Answer(
                        output=reply.text, latency_s=round(time.monotonic() - started, 4)
                    )
                    self.asked += 1
                    self.store.put(key, answer.model_dump(exclude={"score", "reused"}))
                    return answer
            if time.monotonic() >= deadline:
                assert failure is not None
                return Answer(
                    error=f"gave up after {self.options.retry_deadline_s:.0f}s: {failure.message}"
                )
            hinted = failure.retry_after_s if failure is not None else None
            wait = hinted if hinted is not None and hinted <= 60 else self.rng.uniform(0, backoff)
            backoff = min(backoff * 2, 30.0)
            await asyncio.sleep(wait)

    def progressed(self) -> None:
        self.done += 1
        if self.on_progress is not None:
            self.on_progress(self.done, self.total)

    async def answer(self, model: str, row: EvalRow) -> Answer:
        answer = await self.ask(model, row.as_messages(), self.options.generation)
        self.progressed()
        return answer

    async def score(self, row: EvalRow, metric: str, answer: Answer) -> Answer:
        if answer.error is not None:
            return answer
        if metric != "judge":
            answer.score = get_metric(metric)(answer.output, row.expected, row)
            return answer
        assert self.options.judge_model is not None
        messages = judge_messages(
            self.options.judge_rubric or DEFAULT_RUBRIC,
            row.prompt_text,
            row.expected,
            answer.output,
        )
        verdict = await self.ask(
            self.options.judge_model,
            messages,
            {"max_tokens": 32, "temperature": 0.0, "seed": self.options.seed},
        )
        self.judge_calls += 1
        answer.score = parse_judge_score(verdict.output) if verdict.error is None else None
        if answer.score is None:
            self.judge_unparsed += 1
            answer.score = 0.0
        return answer


async def run_eval(
    client: AsyncTogetherClient,
    rows: list[EvalRow],
    adapter_model: str,
    base_model: str,
    options: EvalOptions,
    *,
    store: AnswerStore | None = None,
    on_progress: OnProgress | None = None,
    slot: Callable[[], AbstractAsyncContextManager[Any]] | None = None,
) -> EvalReport:
    """Ask both models every row with the same generation parameters, score, compare."""
    metrics = {row.id: row.metric or options.default_metric for row in rows}
    for metric in set(metrics.values()):
        get_metric(metric)  # an unknown metric fails before anything is asked
        if metric == "judge" and not options.judge_model:
            raise ValueError("rows use the 'judge' metric but EvalOptions.judge_model is unset")
    runner = _Runner(
        client, options, store or MemoryAnswerStore(), 2 * len(rows), on_progress, slot
    )
    throttled_before = client.status_counts[429]

    async def one(row: EvalRow) -> RowResult:
        adapter, base = await asyncio.gather(
            runner.answer(adapter_model, row), runner.answer(base_model, row)
        )
        metric = metrics[row.id]
        adapter, base = await asyncio.gather(
            runner.score(row, metric, adapter), runner.score(row, metric, base)
        )
        return RowResult(
            id=row.id,
            prompt=row.prompt_text,
            expected=row.expected,
            metric=metric,
            tags=row.tags,
            adapter=adapter,
            base=base,
        )

    results = await asyncio.gather(*[one(row) for row in rows])
    report = summarize(list(results), adapter_model, base_model, options)
    report.asked, report.reused = runner.asked, runner.reused
    report.judge_calls, report.judge_unparsed = runner.judge_calls, runner.judge_unparsed
    report.throttled = max(runner.limiter.throttled, client.status_counts[429] - throttled_before)
    return report


def summarize(
    results: list[RowResult], adapter_model: str, base_model: str, options: EvalOptions
) -> EvalReport:
    adapter_scores = [r.adapter.score or 0.0 for r in results]
    base_scores = [r.base.score or 0.0 for r in results]
    deltas = [a - b for a, b in zip(adapter_scores, base_scores, strict=True)]
    wins = sum(d > 0 for d in deltas)
    losses = sum(d < 0 for d in deltas)
    low, high = bootstrap_mean_ci(deltas, resamples=options.bootstrap_resamples, seed=options.seed)
    adapter_errors = sum(r.adapter.error is not None for r in results)
    base_errors = sum(r.base.error is not None for r in results)
    adapter_latencies = [
        r.adapter.latency_s
        for r in results
        if r.adapter.latency_s is not None and not r.adapter.reused
    ]
    base_latencies = [
        r.base.latency_s for r in results if r.base.latency_s is not None and not r.base.reused
    ]
    report = EvalReport(
        adapter_model=adapter_model,
        base_model=base_model,
        rows=results,
        adapter_mean=round(mean(adapter_scores), 6),
        base_mean=round(mean(base_scores), 6),
        delta=round(mean(deltas), 6),
        delta_ci_low=round(low, 6),
        delta_ci_high=round(high, 6),
        wins=wins,
        losses=losses,
        ties=len(results) - wins - losses,
        errors=adapter_errors + base_errors,
        adapter_error_rate=round(adapter_errors / len(results), 6) if results else 0.0,
        base_error_rate=round(base_errors / len(results), 6) if results else 0.0,
        adapter_p95_latency_s=percentile(adapter_latencies, 95),
        base_p95_latency_s=percentile(base_latencies, 95),
        per_tag=_per_tag(results),
    )
    report.criteria = gate(report, options)
    return report


def _per_tag(results: list[RowResult]) -> list[TagStats]:
    tags = sorted({t for r in results for t in r.tags})
    stats = []
    for tag in tags:
        tagged = [r for r in results if tag in r.tags]
        a = mean([r.adapter.score or 0.0 for r in tagged])
        b = mean([r.base.score or 0.0 for r in tagged])
        stats.append(
            TagStats(
                tag=tag,
                rows=len(tagged),
                adapter_mean=round(a, 6),
                base_mean=round(b, 6),
                delta=round(a - b, 6),
            )
        )
    return stats


def gate(report: EvalReport, options: EvalOptions) -> list[Criterion]:
    """Every configured criterion with its value; all are reported, passing or not."""
    criteria = []
    if options.min_score is not None:
        criteria.append(
            Criterion(
                name="min_score",
                threshold=options.min_score,
                value=report.adapter_mean,
                passed=report.adapter_mean >= options.min_score,
            )
        )
    if options.min_delta_over_base is not None:
        value = report.delta_ci_low if options.gate_on_interval else report.delta
        criteria.append(
            Criterion(
                name="min_delta_over_base"
                + (" (95% CI lower bound)" if options.gate_on_interval else ""),
                threshold=options.min_delta_over_base,
                value=value,
                passed=value >= options.min_delta_over_base,
            )
        )
    worst = max(report.adapter_error_rate, report.base_error_rate)
    if options.max_error_rate is not None:
        # both arms count: an eval whose base calls fail is no comparison at all
        criteria.append(
            Criterion(
                name="max_error_rate (adapter or base)",
                threshold=options.max_error_rate,
                value=worst,
                passed=worst <= options.max_error_rate,
            )
        )
    if options.min_delta_over_base is not None:
        # a base answer that failed scores 0 and would hand the adapter a free "win": the
        # comparison only counts when the base answered (as often as max_error_rate allows)
        allowed = options.max_error_rate or 0.0
        criteria.append(
            Criterion(
                name="base answered (comparison complete)",
                threshold=1.0 - allowed,
                value=1.0 - report.base_error_rate,
                passed=report.base_error_rate <= allowed,
            )
        )
    if options.max_p95_latency_s is not None:
        p95 = report.adapter_p95_latency_s
        criteria.append(
            Criterion(
                name="max_p95_latency_s",
                threshold=options.max_p95_latency_s,
                value=p95,
                passed=p95 is not None and p95 <= options.max_p95_latency_s,
            )
        )
    return criteria


def describe_gate(options: EvalOptions) -> str:
    """The gate these options apply, in words (every report states it, or "no gate")."""
    parts = []
    if options.min_score is not None:
        parts.append(f"adapter mean score >= {options.min_score}")
    if options.min_delta_over_base is not None:
        which = "95% CI lower bound of " if options.gate_on_interval else ""
        parts.append(f"{which}adapter - base >= {options.min_delta_over_base} (base answered)")
    if options.max_error_rate is not None:
        parts.append(f"error rate (adapter or base) <= {options.max_error_rate}")
    if options.max_p95_latency_s is not None:
        parts.append(f"p95 latency <= {options.max_p95_latency_s}s")
    if not parts:
        return "no gate"
    gate = "; ".join(parts) + f" (on fail: {options.on_fail})"
    return gate if options.eval_set else f"{gate} — but no eval set, so it is not evaluated"


def gate_failure_message(report: EvalReport) -> str:
    failed = [c for c in report.criteria if not c.passed]
    return "Evaluation gate failed: " + "; ".join(
        f"{c.name} = {'n/a' if c.value is None else f'{c.value:.4f}'} (threshold {c.threshold})"
        for c in failed
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
