"""Flow and task options as pydantic models: validated in Python, rendered as described forms
in the Prefect UI (no free-form dicts, every field described, every default valid)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

DEFAULT_SMOKE_PROMPTS = [
    "Say hello in one short sentence.",
    "What is 12 + 30? Answer with the number only.",
    "Summarise in five words what you are trained to do.",
]


_UNITS = {"s": "(s)", "min": "(min)", "ms": "(ms)"}
_WORDS = {
    "p95": "p95",
    "ci": "CI",
    "hf": "HF",
    "lora": "LoRA",
    "id": "id",
    "url": "URL",
    "uri": "URI",
    "api": "API",
    "aws": "AWS",
}


def field_title(name: str, _info: object = None) -> str:
    """A readable form title for a field name: ``max_wait_s`` → "Max wait (s)",
    ``inactive_timeout_min`` → "Inactive timeout (min)"."""
    words = name.split("_")
    unit = _UNITS.get(words[-1]) if len(words) > 1 else None
    if unit:
        words = words[:-1]
    text = " ".join(_WORDS.get(w, w) for w in words)
    text = text[:1].upper() + text[1:]
    return f"{text} {unit}" if unit else text


def readable_titles(flow: Any) -> Any:
    """Give a flow's UI form readable field titles ("Presign expires (s)" for
    ``presign_expires_s``): Prefect titles parameters with their raw names."""
    for name, prop in flow.parameters.properties.items():
        prop["title"] = field_title(name)
    return flow


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", field_title_generator=field_title)


class JobOptions(_Options):
    """How ``await_job`` polls Together's upload job."""

    poll_initial_s: float = Field(
        default=1.0, gt=0, description="Shortest poll interval, and the first (s)."
    )
    poll_factor: float = Field(default=1.5, ge=1.0, description="Interval growth per poll.")
    poll_fraction: float | None = Field(
        default=0.1,
        gt=0,
        le=1,
        description="Poll every this fraction of the time waited so far (completion is "
        "noticed within max(poll_initial_s, fraction * job time)); unset: grow by poll_factor.",
    )
    poll_max_s: float = Field(default=30.0, gt=0, description="Longest poll interval (s).")
    max_wait_s: float = Field(default=3600.0, ge=0, description="Give up after this long (s).")
    not_found_grace_s: float = Field(
        default=60.0,
        ge=0,
        description="Right after submit a job can briefly answer 404; keep polling this long.",
    )


class SmokeOptions(_Options):
    """A few calls on the uploaded model before anyone relies on it."""

    enabled: bool = Field(default=True, description="Run the smoke test.")
    prompts: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SMOKE_PROMPTS),
        min_length=1,
        description="Prompts sent to the adapter.",
    )
    mode: Literal["chat", "completion"] = Field(
        default="chat", description="Chat or completion endpoint."
    )
    max_tokens: int = Field(default=64, ge=1, le=4096, description="max_tokens per call.")
    temperature: float = Field(default=0.0, ge=0, le=2, description="Sampling temperature.")
    ready_timeout_s: float = Field(
        default=600.0,
        ge=0,
        description="How long cold-start answers (503 / 404 model_not_available) are retried.",
    )
    retry_interval_s: float = Field(
        default=5.0, gt=0, description="Wait between cold-start retries (s)."
    )


class EvalOptions(_Options):
    """Evaluation of the adapter against its base model on an eval set, with a gate."""

    eval_set: str | None = Field(
        default=None,
        description="JSONL eval set: local path, s3://... or hf://datasets/org/name/file.jsonl "
        "(rows: prompt or messages, expected, optional metric, tags, id).",
    )
    default_metric: str = Field(
        default="exact_match",
        description="Metric for rows that name none: exact_match, contains, regex, json_valid, "
        "json_schema, token_f1, rouge_l, judge, or one registered with register_metric().",
    )
    max_tokens: int = Field(default=256, ge=1, le=8192, description="max_tokens per answer.")
    temperature: float = Field(default=0.0, ge=0, le=2, description="Same for both models.")
    seed: int = Field(default=1234, description="Same seed for both models and the bootstrap.")
    concurrency: int = Field(default=8, ge=1, le=256, description="Most requests in flight.")
    min_score: float | None = Field(
        default=None, ge=0, le=1, description="Gate: the adapter's mean score at least this."
    )
    min_delta_over_base: float | None = Field(
        default=None,
        ge=-1,
        le=1,
        validation_alias=AliasChoices("min_delta_over_base", "min_improvement_over_base"),
        description="Gate: adapter mean minus base mean at least this.",
    )
    gate_on_interval: bool = Field(
        default=False,
        description="Apply min_delta_over_base to the lower bound of the 95% bootstrap "
        "interval instead of the mean delta (stricter: the gain must be significant).",
    )
    max_error_rate: float | None = Field(
        default=None, ge=0, le=1, description="Gate: share of adapter calls that failed."
    )
    max_p95_latency_s: float | None = Field(
        default=None, gt=0, description="Gate: 95th percentile adapter latency in seconds."
    )
    on_fail: Literal["fail", "warn"] = Field(
        default="fail", description="A failed gate fails the flow, or only warns."
    )
    judge_model: str | None = Field(
        default=None, description="Together model that grades answers for the 'judge' metric."
    )
    judge_rubric: str | None = Field(
        default=None,
        description="Instructions for the judge; default: a 0-10 correctness "
        "rubric answered as 'Score: N'.",
    )
    bootstrap_resamples: int = Field(
        default=2000, ge=100, le=100_000, description="Resamples for the delta's interval."
    )
    answer_store: str | None = Field(
        default=None,
        description="Where answers are recorded as they arrive so re-runs resume: a folder, "
        "s3://bucket/prefix, or 'memory'; default: $PREFECT_HOME/together-lora/answers.",
    )
    rate_limit_name: str | None = Field(
        default=None, description="Prefect global rate limit taken before each request."
    )
    concurrency_limit_name: str | None = Field(
        default=None,
        description="Prefect global concurrency limit held by each request in flight (shared "
        "with other flows, e.g. every evaluation against one Together account).",
    )
    rate_limit_strict: bool = Field(
        default=False,
        description="Fail when the rate or concurrency limit does not exist (else Prefect "
        "warns and does not limit).",
    )
    retry_deadline_s: float = Field(
        default=900.0,
        ge=0,
        description="How long a rate-limited or unavailable request keeps being retried.",
    )

    @property
    def generation(self) -> dict[str, Any]:
        """Generation parameters sent with every request (and part of each answer's key)."""
        return {"max_tokens": self.max_tokens, "temperature": self.temperature, "seed": self.seed}


class ValidationSettings(_Options):
    """Validation limits (Together publishes none; these are the documented defaults)."""

    max_rank: int | None = Field(
        default=None, ge=1, le=1024, description="Maximum LoRA rank; default from the catalog (64)."
    )
    catalog_path: str | None = Field(
        default=None, description="JSON file extending the base-model catalog."
    )
    check_data: bool = Field(
        default=False,
        description="Also sample lora_B values (rule T9: all-zero or NaN/Inf); reads up to "
        "1 MiB of weights.",
    )
    catalog_variable: str | None = Field(
        default=None, description="Prefect Variable holding a catalog extension (JSON)."
    )
