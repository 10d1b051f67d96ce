"""``publish_adapter``: one call (or one event) takes a LoRA adapter to a live, checked,
reported Together model. Works on its own, from a deployment, or as a subflow of training."""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, get_run_logger
from pydantic import SecretStr

from prefect_together_lora import events
from prefect_together_lora.credentials import TogetherCredentials
from prefect_together_lora.errors import AdapterInvalid, EvalBelowThreshold
from prefect_together_lora.evaluation.dataset import load_eval_set
from prefect_together_lora.evaluation.runner import table_rows
from prefect_together_lora.options import EvalOptions, JobOptions, SmokeOptions, ValidationSettings
from prefect_together_lora.publish_result import PublishResult, render_report
from prefect_together_lora.redaction import redact
from prefect_together_lora.reporting import (
    artifact_key,
    link_artifact,
    markdown_artifact,
    slug,
    table_artifact,
)
from prefect_together_lora.schemas import Finding, ValidationReport
from prefect_together_lora.sources import AdapterSource
from prefect_together_lora.sources.hf import revision_moved
from prefect_together_lora.sources.resolve import ResolvedSource
from prefect_together_lora.tasks import (
    await_job,
    evaluate,
    presign,
    smoke_infer,
    stage,
    upload,
    validate,
)


def _hf_token(secret_block: str | None) -> SecretStr | None:
    if not secret_block:
        return None
    from prefect.blocks.system import Secret

    block: Any = Secret.load(secret_block)
    value = block.get()
    return SecretStr(str(value)) if value else None


def _final_name(model_name: str, suffix: str, fingerprint: str) -> str:
    if suffix == "auto":
        from prefect_together_lora.caching import digest

        return f"{model_name}-{digest(fingerprint)[:8]}"
    return model_name


def _model_link(credentials: TogetherCredentials, model_name: str) -> str:
    if "together.xyz" in credentials.base_url or "together.ai" in credentials.base_url:
        return f"https://api.together.ai/models/{model_name}"
    return f"{credentials.base_url}/v1/models"


@flow(name="publish-adapter")
def publish_adapter(
    source: str,
    base_model: str,
    model_name: str,
    credentials: TogetherCredentials | None = None,
    name_suffix: Literal["none", "auto"] = "none",
    description: str | None = None,
    staging_uri: str | None = None,
    presign_expires_s: int = 6 * 3600,
    hf_token_secret: str | None = None,
    aws_credentials_block: str | None = None,
    validation: ValidationSettings = ValidationSettings(),
    job: JobOptions = JobOptions(),
    smoke: SmokeOptions = SmokeOptions(),
    evaluation: EvalOptions = EvalOptions(),
) -> PublishResult:
    """Validate a LoRA adapter, upload it to Together, wait for the job, smoke-test and
    evaluate the model, and leave a report artifact (also when a step fails).

    Args:
        source: Adapter location: a local folder or archive, s3://bucket/key.zip or .tar.gz,
            s3://bucket/folder/, hf://org/repo[@revision], a Hub URL, or a presigned https URL.
        base_model: Together base model id, e.g.
            meta-llama/Meta-Llama-3.1-8B-Instruct-Reference.
        model_name: Name for the adapter on Together (your account's namespace is added).
        credentials: Together credentials block; default: TOGETHER_API_KEY from the
            environment.
        name_suffix: 'auto' appends a short content hash to model_name (one name per adapter).
        description: Description stored with the model on Together.
        staging_uri: s3://bucket/prefix where local or S3-folder adapters are staged as one zip;
            default: TOGETHER_LORA_STAGING_URI.
        presign_expires_s: Lifetime of the presigned URL in seconds (Together needs >= 6000).
        hf_token_secret: Name of a Prefect Secret block holding the Hugging Face token.
        aws_credentials_block: Name of a prefect-aws AwsCredentials block; default: the
            standard AWS chain (environment, profile, instance role).
        validation: Validation limits (max rank, catalog extensions).
        job: How the upload job is polled (intervals, maximum wait).
        smoke: Smoke test prompts and cold-start tolerance.
        evaluation: Eval set, metrics, concurrency and the pass/fail gate.
    """
    logger = get_run_logger()
    creds = credentials or TogetherCredentials.from_env()
    hf_token = _hf_token(hf_token_secret)
    parsed = AdapterSource.parse(source)
    result = PublishResult(
        source=parsed.display, base_model=base_model, report_key=artifact_key("report", model_name)
    )
    step = "stage"
    try:
        if parsed.needs_staging:
            parsed = stage(parsed, staging_uri, aws_credentials_block)
        step = "presign"
        resolved = presign(parsed, presign_expires_s, hf_token, aws_credentials_block)
        result.fingerprint = resolved.fingerprint
        step = "validate"
        report = _validate(result, resolved, base_model, validation, hf_token)
        moved = revision_moved(resolved, hf_token)
        if moved is not None:  # H2: the Hub repo changed while we validated: validate again
            finding = Finding(
                code="HF_REVISION_MOVED",
                severity="warning",
                message=f"Revision '{parsed.revision or 'main'}' moved from "
                f"{(resolved.revision_sha or '')[:12]} to {moved[:12]} during validation; "
                "re-validating.",
            )
            logger.warning("%s: %s", finding.code, finding.message)
            resolved = presign(parsed, presign_expires_s, hf_token, aws_credentials_block)
            result.fingerprint = resolved.fingerprint
            report = _validate(result, resolved, base_model, validation, hf_token)
            report = report.model_copy(update={"findings": [finding, *report.findings]})
        result.validation = report
        name = _final_name(model_name, name_suffix, resolved.fingerprint)
        events.emit(
            events.VALIDATED,
            name,
            {
                "fingerprint": resolved.fingerprint,
                "base_model": base_model,
                "source": parsed.display,
                "warnings": len(report.findings),
            },
        )
        step = "upload"
        upload_future = upload.submit(resolved, name, base_model, creds, description, hf_token)
        uploaded = upload_future.result()
        result.model_name, result.job_id = uploaded.model_name, uploaded.job_id
        result.new_upload = upload_future.state.name != "Cached" and not uploaded.reconciled
        events.emit(
            events.UPLOADED,
            uploaded.model_name,
            {
                "job_id": uploaded.job_id,
                "fingerprint": resolved.fingerprint,
                "new_upload": result.new_upload,
            },
        )
        step = "await_job"
        result.timeline = await_job(uploaded.job_id, creds, job, uploaded.model_name)
        events.emit(
            events.READY, uploaded.model_name, {"job_id": uploaded.job_id, "base_model": base_model}
        )
        if smoke.enabled:
            step = "smoke_infer"
            result.smoke = smoke_infer(uploaded.model_name, creds, smoke)
        if evaluation.eval_set:
            step = "evaluate"
            rows = load_eval_set(evaluation.eval_set, hf_token=hf_token)
            result.evaluation = evaluate(rows, uploaded.model_name, base_model, creds, evaluation)
            _report_evaluation(result)
            if not result.evaluation.passed:
                failed = [c for c in result.evaluation.criteria if not c.passed]
                message = "Evaluation gate failed: " + "; ".join(
                    f"{c.name} {c.value:.4f} < {c.threshold}" for c in failed if c.value is not None
                )
                if evaluation.on_fail == "fail":
                    raise EvalBelowThreshold(message, result.evaluation)
                logger.warning("%s (on_fail='warn': publishing anyway)", message)
                result.verdict = "published-gate-warning"
        if result.verdict == "pending":
            result.verdict = "published"
    except Exception as exc:
        result.verdict, result.failed_step = "failed", step
        result.error = redact(str(exc))
        raise
    finally:
        _write_report(result, creds)
    return result


def _validate(
    result: PublishResult,
    resolved: ResolvedSource,
    base_model: str,
    settings: ValidationSettings,
    hf_token: SecretStr | None,
) -> ValidationReport:
    try:
        return validate(resolved, base_model, settings, hf_token)
    except AdapterInvalid as exc:
        result.fingerprint = resolved.fingerprint
        result.validation = ValidationReport(
            source=resolved.source.display,
            base_model=base_model,
            findings=exc.findings,
            fingerprint=resolved.fingerprint,
        )
        raise


def _report_evaluation(result: PublishResult) -> None:
    ev = result.evaluation
    if ev is None or result.model_name is None:
        return
    table_artifact(
        artifact_key("eval", result.model_name),
        table_rows(ev),
        f"Evaluation of {result.model_name} vs {ev.base_model}",
    )
    events.emit(
        events.EVALUATED,
        result.model_name,
        {
            "verdict": ev.verdict,
            "adapter_mean": ev.adapter_mean,
            "base_mean": ev.base_mean,
            "delta": ev.delta,
            "wins": ev.wins,
            "ties": ev.ties,
            "losses": ev.losses,
            "rows": len(ev.rows),
            "errors": ev.errors,
        },
    )


def _write_report(result: PublishResult, credentials: TogetherCredentials) -> None:
    name = result.model_name or result.source
    markdown_artifact(
        result.report_key or artifact_key("report", name),
        render_report(result),
        f"Publish report: {result.verdict}",
    )
    if result.validation is not None and result.validation.findings:
        table_artifact(
            artifact_key("findings", name),
            [f.model_dump() for f in result.validation.findings],
            f"Validation findings for {result.source}",
        )
    if result.model_name and result.verdict.startswith("published"):
        link_artifact(
            artifact_key("model", result.model_name),
            _model_link(credentials, result.model_name),
            f"{result.model_name} on Together",
            "Call this model name",
        )


def run_publish(**parameters: Any) -> PublishResult:
    """Run the flow from plain Python (CLI, scripts) with keyword parameters."""
    return publish_adapter(**parameters)


__all__ = ["publish_adapter", "run_publish", "slug"]
