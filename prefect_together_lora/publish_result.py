"""What a publish run produced, and its markdown report (the ``together-lora-report-*``
artifact): source, fingerprint, findings, job timeline, the model name to call, smoke samples,
eval table and the verdict."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from prefect_together_lora.evaluation.runner import EvalReport
from prefect_together_lora.reporting import md_escape, md_table
from prefect_together_lora.schemas import ValidationReport
from prefect_together_lora.smoke import SmokeReport
from prefect_together_lora.together.backend import (
    ApiVersion,
    ImportEvent,
    Resource,
    ServingReport,
)

Verdict = Literal[
    "pending", "published", "published-gate-warning", "validated", "duplicate", "failed"
]
Step = Literal[
    "parse",
    "preflight",
    "stage",
    "presign",
    "validate",
    "upload",
    "await_job",
    "serve",
    "smoke_infer",
    "evaluate",
    "teardown",
]


class PublishResult(BaseModel):
    """The outcome of ``publish_adapter``. Holds no secret: safe to persist and show."""

    source: str
    base_model: str
    api: ApiVersion = "v2"
    fingerprint: str | None = None
    model_name: str | None = Field(
        default=None, description="The adapter's qualified name on Together."
    )
    requested_name: str | None = Field(
        default=None, description="The name asked for (events use it as their resource)."
    )
    model_id: str | None = Field(default=None, description="v2 model record id (ml_...).")
    revision_id: str | None = Field(default=None, description="v2 revision validated.")
    job_id: str | None = Field(default=None, description="v1 job or v2 remote upload id.")
    new_upload: bool = Field(default=False, description="False when an earlier upload was reused.")
    validation: ValidationReport | None = None
    timeline: list[ImportEvent] = Field(default_factory=list)
    serving: ServingReport | None = None
    inference_model: str | None = Field(
        default=None, description="The model string to call the adapter with."
    )
    resources: list[Resource] = Field(
        default_factory=list, description="What this run made on Together, and its final state."
    )
    teardown: str | None = Field(default=None, description="The teardown applied, if any.")
    gate: str = Field(default="no gate", description="The evaluation gate this run applied.")
    smoke: SmokeReport | None = None
    evaluation: EvalReport | None = None
    verdict: Verdict = "pending"
    failed_step: Step | None = None
    error: str | None = None
    report_key: str | None = None

    @property
    def billing(self) -> list[Resource]:
        """Resources left running (and billing per replica-minute)."""
        return [r for r in self.resources if r.bills and r.state == "live"]


def render_report(result: PublishResult) -> str:
    icon = {
        "published": "✅",
        "published-gate-warning": "⚠️",
        "validated": "✅",
        "duplicate": "↩️",
    }.get(result.verdict, "❌")
    lines = [f"# {icon} LoRA adapter publish: {result.verdict}", ""]
    facts = [
        ("Source", result.source),
        ("Fingerprint", result.fingerprint or "-"),
        ("Base model", result.base_model),
        ("Together API", result.api),
        ("Gate", result.gate),
        ("Model on Together", f"`{result.model_name}`" if result.model_name else "-"),
        ("Model id / revision", f"{result.model_id or '-'} / {result.revision_id or '-'}"),
        ("Import (job / upload)", result.job_id or "-"),
        ("Upload", "new" if result.new_upload else ("reused" if result.job_id else "-")),
        (
            "Call it as",
            f"`{result.inference_model}` at {result.serving.inference_url}"
            if result.inference_model and result.serving
            else "-",
        ),
    ]
    lines += [md_table(["", ""], [list(f) for f in facts]), ""]
    if result.error:
        lines += [f"**Failed at `{result.failed_step}`:** {md_escape(result.error, 2000)}", ""]
    lines += render_serving(result)
    if result.validation is not None:
        report = result.validation
        lines += [
            "## Validation",
            "",
            f"{'Valid' if report.valid else 'Invalid'} — {describe_adapter(report)}",
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
            "## Import timeline",
            "",
            md_table(
                ["time", "level", "event", "message"],
                [
                    [e.at.isoformat() if e.at else "", e.level, e.kind or e.status, e.message]
                    for e in result.timeline
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


def describe_adapter(report: ValidationReport) -> str:
    """What validation read, in words; only what is known (never "rank None")."""
    adapter = report.adapter
    parts = []
    if adapter.rank is not None:
        parts.append(f"rank {adapter.rank}")
    if adapter.alpha is not None:
        parts.append(f"alpha {adapter.alpha}")
    if adapter.target_modules:
        parts.append(f"modules {', '.join(adapter.target_modules)}")
    if adapter.layers is not None:
        parts.append(f"{adapter.layers} layers")
    if adapter.dtype:
        parts.append(adapter.dtype)
    if adapter.parameters:
        parts.append(f"{adapter.parameters:,} parameters")
    read = f"read {report.bytes_read:,} bytes in {report.requests} requests"
    if not parts:
        return f"nothing of the adapter could be read ({read})."
    return ", ".join(parts) + f"; {read}."


def render_serving(result: PublishResult) -> list[str]:
    """What is served where, on what hardware, and what the run left on Together."""
    serving = result.serving
    lines: list[str] = []
    if serving is not None:
        lines += ["## Serving", ""]
        if serving.mode == "none":
            lines += ["Not served (serving mode 'none'): no smoke test, no evaluation.", ""]
        else:
            rows = [
                ["mode", serving.mode],
                ["endpoint", f"{serving.endpoint_name or '-'} ({serving.endpoint_id or '-'})"],
                [
                    "deployment",
                    f"{serving.deployment_name or '-'} ({serving.deployment_id or '-'})",
                ],
                ["hardware", serving.hardware or "-"],
                ["replicas (min-max)", f"{serving.min_replicas}-{serving.max_replicas}"],
                [
                    "idle scale-to-zero",
                    f"{serving.inactive_timeout_min} min"
                    if serving.inactive_timeout_min
                    else "never",
                ],
                ["adapter model string", serving.adapter_model or "-"],
                ["base model string", serving.base_model or "-"],
                ["ready after s", f"{serving.ready_after_s:.1f}"],
            ]
            lines += [md_table(["", ""], rows), ""]
        lines += [f"- {md_escape(note, 500)}" for note in serving.notes]
    if result.resources:
        billing = result.billing
        lines += [
            "## On Together after this run"
            + (f" (teardown: {result.teardown})" if result.teardown else ""),
            "",
            md_table(
                ["kind", "name", "id", "created by this run", "state", "billing"],
                [
                    [
                        r.kind,
                        r.name,
                        r.id,
                        "yes" if r.created else "no",
                        r.state,
                        "YES" if r.bills and r.state == "live" else "no",
                    ]
                    for r in result.resources
                ],
            ),
            "",
            f"**{len(billing)} resource(s) billing per replica-minute.**"
            if billing
            else "Nothing this run created is billing.",
            "",
        ]
    return lines


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
                ["error rate", f"{ev.adapter_error_rate:.1%}", f"{ev.base_error_rate:.1%}"],
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
