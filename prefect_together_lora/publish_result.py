"""What a publish run produced, and its markdown report (the ``together-lora-report-*``
artifact): source, fingerprint, findings, job timeline, the model name to call, smoke samples,
eval table and the verdict."""

from __future__ import annotations

from pydantic import BaseModel, Field

from prefect_together_lora.evaluation.runner import EvalReport
from prefect_together_lora.reporting import md_escape, md_table
from prefect_together_lora.schemas import StatusUpdate, ValidationReport
from prefect_together_lora.smoke import SmokeReport


class PublishResult(BaseModel):
    """The outcome of ``publish_adapter``. Holds no secret: safe to persist and show."""

    source: str
    base_model: str
    fingerprint: str | None = None
    model_name: str | None = Field(default=None, description="The name to call on Together.")
    requested_name: str | None = Field(
        default=None, description="The name asked for (events use it as their resource)."
    )
    job_id: str | None = None
    new_upload: bool = Field(default=False, description="False when an earlier upload was reused.")
    validation: ValidationReport | None = None
    timeline: list[StatusUpdate] = Field(default_factory=list)
    smoke: SmokeReport | None = None
    evaluation: EvalReport | None = None
    verdict: str = "pending"
    failed_step: str | None = None
    error: str | None = None
    report_key: str | None = None


def render_report(result: PublishResult) -> str:
    icon = {"published": "✅", "published-gate-warning": "⚠️"}.get(result.verdict, "❌")
    lines = [f"# {icon} LoRA adapter publish: {result.verdict}", ""]
    facts = [
        ("Source", result.source),
        ("Fingerprint", result.fingerprint or "-"),
        ("Base model", result.base_model),
        ("Model name to call", f"`{result.model_name}`" if result.model_name else "-"),
        ("Together job", result.job_id or "-"),
        ("Upload", "new" if result.new_upload else ("reused" if result.job_id else "-")),
    ]
    lines += [md_table(["", ""], [list(f) for f in facts]), ""]
    if result.error:
        lines += [f"**Failed at `{result.failed_step}`:** {md_escape(result.error, 2000)}", ""]
    if result.validation is not None:
        report = result.validation
        adapter = report.adapter
        lines += [
            "## Validation",
            "",
            f"{'Valid' if report.valid else 'Invalid'} — rank {adapter.rank}, alpha "
            f"{adapter.alpha}, modules {', '.join(adapter.target_modules) or '-'}, "
            f"{adapter.layers} layers, {adapter.dtype}, {adapter.parameters or 0:,} "
            f"parameters; read {report.bytes_read:,} bytes in {report.requests} requests.",
            "",
        ]
        if report.findings:
            lines += [
                md_table(
                    ["code", "severity", "message", "hint"],
                    [[f.code, f.severity, f.message, f.hint or ""] for f in report.findings],
                ),
                "",
            ]
    if result.timeline:
        lines += [
            "## Job timeline",
            "",
            md_table(
                ["time", "status", "message"],
                [
                    [u.timestamp.isoformat() if u.timestamp else "", u.status.value, u.message]
                    for u in result.timeline
                ],
            ),
            "",
        ]
    if result.smoke is not None:
        smoke = result.smoke
        lines += [
            "## Smoke test",
            "",
            f"{'Passed' if smoke.passed else 'Failed'}: {len(smoke.samples)} calls, "
            f"{smoke.cold_start_retries} cold-start retries, ready after "
            f"{smoke.ready_after_s:.1f}s.",
            "",
            md_table(
                ["prompt", "output", "latency s", "tokens", "finish"],
                [
                    [
                        s.prompt,
                        s.error or s.output,
                        s.latency_s,
                        s.completion_tokens,
                        s.finish_reason,
                    ]
                    for s in smoke.samples
                ],
            ),
            "",
        ]
    if result.evaluation is not None:
        lines += render_evaluation(result.evaluation)
    return "\n".join(lines)


def render_evaluation(ev: EvalReport) -> list[str]:
    """The evaluation section: metrics, the delta's interval, per-tag table, gate, samples."""
    lines = [
        "## Evaluation",
        "",
        md_table(
            ["", "adapter", "base"],
            [
                ["mean score", f"{ev.adapter_mean:.3f}", f"{ev.base_mean:.3f}"],
                [
                    "delta (95% bootstrap CI)",
                    f"{ev.delta:+.3f} [{ev.delta_ci_low:+.3f}, {ev.delta_ci_high:+.3f}]",
                    "",
                ],
                ["wins / ties / losses", f"{ev.wins} / {ev.ties} / {ev.losses}", ""],
                ["error rate", f"{ev.adapter_error_rate:.1%}", ""],
                ["p95 latency s", _num(ev.adapter_p95_latency_s), _num(ev.base_p95_latency_s)],
                [
                    "answers asked / reused / throttled (429)",
                    f"{ev.asked} / {ev.reused} / {ev.throttled}",
                    "",
                ],
            ]
            + (
                [["judge calls / unparsed", f"{ev.judge_calls} / {ev.judge_unparsed}", ""]]
                if ev.judge_calls
                else []
            ),
        ),
        "",
    ]
    if ev.per_tag:
        lines += [
            md_table(
                ["tag", "rows", "adapter", "base", "delta"],
                [
                    [
                        t.tag,
                        t.rows,
                        f"{t.adapter_mean:.3f}",
                        f"{t.base_mean:.3f}",
                        f"{t.delta:+.3f}",
                    ]
                    for t in ev.per_tag
                ],
            ),
            "",
        ]
    if ev.criteria:
        lines += [
            f"**Gate: {ev.verdict}**",
            "",
            md_table(
                ["criterion", "threshold", "value", "passed"],
                [
                    [c.name, c.threshold, _num(c.value), "yes" if c.passed else "NO"]
                    for c in ev.criteria
                ],
            ),
            "",
        ]
    lines += [
        md_table(
            ["id", "expected", "adapter", "base", "scores"],
            [
                [
                    r.id,
                    " | ".join(r.expected),
                    r.adapter.error or r.adapter.output,
                    r.base.error or r.base.output,
                    f"{r.adapter.score} / {r.base.score}",
                ]
                for r in ev.rows[:50]
            ],
        ),
        "",
    ]
    return lines


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
