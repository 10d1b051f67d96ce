"""``publish_adapter``: one call (or one event) takes a LoRA adapter to a live, checked,
reported Together model. Works on its own, from a deployment, or as a subflow of training."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Literal, TypeVar

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, SecretStr

from prefect_together_lora import events
from prefect_together_lora.credentials import TogetherCredentials
from prefect_together_lora.errors import (
    AdapterInvalid,
    EvalBelowThreshold,
    JobFailed,
    ServingFailed,
)
from prefect_together_lora.evaluation.dataset import load_eval_set
from prefect_together_lora.evaluation.runner import describe_gate, gate_failure_message, table_rows
from prefect_together_lora.fleet import Candidate, FleetEntry, discover
from prefect_together_lora.hashing import digest
from prefect_together_lora.options import (
    EvalOptions,
    JobOptions,
    SmokeOptions,
    ValidationSettings,
    readable_titles,
)
from prefect_together_lora.publish_result import PublishResult, Step, render_report
from prefect_together_lora.redaction import redact, strip_query
from prefect_together_lora.reporting import (
    artifact_key,
    link_artifact,
    markdown_artifact,
    slug,
    table_artifact,
)
from prefect_together_lora.schemas import Finding, ValidationReport
from prefect_together_lora.sources import AdapterSource, ResolvedSource, SourceContext
from prefect_together_lora.tasks import (
    await_job,
    evaluate,
    preflight,
    presign,
    serve,
    smoke_infer,
    stage,
    teardown,
    upload,
    validate,
)
from prefect_together_lora.together.backend import (
    AdapterHandle,
    ApiVersion,
    Resource,
    ServingOptions,
    ServingReport,
    TeardownMode,
)

_Options = TypeVar("_Options", bound=BaseModel)
PUBLISH_DEPLOYMENT_NAME = "publish-adapter"  # flows/serve.py serves it under this name


def _hf_token(secret_block: str | None) -> SecretStr | None:
    if not secret_block:
        return None
    from prefect.blocks.system import Secret

    block: Any = Secret.load(secret_block)
    value = block.get()
    return SecretStr(str(value)) if value else None


def _final_name(model_name: str, suffix: str, fingerprint: str) -> str:
    if suffix == "auto":
        return f"{model_name}-{digest(fingerprint)[:8]}"
    return model_name


def _model_link(credentials: TogetherCredentials, model_name: str) -> str:
    if "together.xyz" in credentials.base_url or "together.ai" in credentials.base_url:
        return f"https://api.together.ai/models/{model_name}"
    return f"{credentials.base_url}/v1/models"


DUPLICATE_WINDOW_S = 1800.0


def earlier_triggered_run(source: str, model_name: str) -> str | None:
    """The id of an earlier publish run that a trigger started for the same adapter (same
    source and model name, within 30 min), when this run was started by a trigger too.

    One training run can fire both triggers (its announcement event and its completion); the
    later run defers to the earlier one, so one training run gives one publish. Runs started
    by hand, a schedule or the UI never defer, and neither does a run after a failed one."""
    from prefect.runtime import deployment, flow_run

    if not deployment.id or not flow_run.id:
        return None
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId

    with get_client(sync_client=True) as client:
        me = client.read_flow_run(flow_run.id)
        if me.created_by is None or me.created_by.type != "AUTOMATION" or me.created is None:
            return None
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                deployment_id=FlowRunFilterDeploymentId(any_=[deployment.id])
            ),
            limit=200,
        )
    wanted = (_same_place(source), model_name)
    for run in runs:
        if run.id == me.id or run.created is None or run.created_by is None:
            continue
        earlier = (run.created, str(run.id)) < (me.created, str(me.id))
        recent = (me.created - run.created).total_seconds() <= DUPLICATE_WINDOW_S
        failed = run.state_type is not None and run.state_type.value in (
            "FAILED",
            "CRASHED",
            "CANCELLED",
        )
        same = (
            _same_place(str(run.parameters.get("source", ""))),
            run.parameters.get("model_name"),
        ) == wanted
        if earlier and recent and same and not failed and run.created_by.type == "AUTOMATION":
            return str(run.id)
    return None


def _same_place(source: str) -> str:
    """A source in a comparable form (a local path without a trailing slash)."""
    return source.rstrip("/") or source


def _deployment_parameters() -> dict[str, Any]:
    """The parameters stored on this run's deployment (not the run's own: Prefect's
    ``prefect.runtime.deployment.parameters`` answers the latter); {} outside a deployment."""
    from prefect.runtime import deployment

    if not deployment.id:
        return {}
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return dict(client.read_deployment(deployment.id).parameters or {})


def with_deployment_option(stored: dict[str, Any], name: str, value: _Options) -> _Options:
    """An option set on the deployment survives a run's partial override, field by field.

    Prefect replaces a parameter whole: a trigger passing ``evaluation={"eval_set": ...}`` would
    drop a gate (``min_score``) set on the deployment in the UI or ``prefect.yaml``. Here the
    option is the deployment's value updated with only the fields this run set (a null from a
    missing event key is "not set"). ``stored`` is the deployment's parameters ({} outside
    a deployment, where the value is returned unchanged)."""
    base = stored.get(name)
    if not isinstance(base, dict):
        return value
    set_here = value.model_dump(exclude_unset=True)
    fields = {**base, **{k: v for k, v in set_here.items() if v is not None}}
    return type(value).model_validate(fields)


@contextmanager
def _step(result: PublishResult, name: Step) -> Iterator[None]:
    """Run one step of the flow; a failure records which step it was (once: the innermost)."""
    try:
        yield
    except Exception:
        if result.failed_step is None:
            result.failed_step = name
        raise


@flow(name="publish-adapter")
def publish_adapter(
    source: str,
    base_model: str,
    model_name: str,
    credentials: TogetherCredentials | None = None,
    api: ApiVersion = "v2",
    serving: ServingOptions = ServingOptions(),
    teardown: TeardownMode = "keep",
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
    """Validate a LoRA adapter, import it into Together, serve it, smoke-test and evaluate it
    against its base, apply the teardown, and leave a report artifact (also when a step fails,
    saying what exists on Together and whether it bills).

    Args:
        source: Adapter location: a local folder or archive, s3://bucket/key.zip or .tar.gz,
            s3://bucket/folder/, hf://org/repo[@revision], a Hub URL, or a presigned https URL.
        base_model: The base model, e.g. meta-llama/Meta-Llama-3.1-8B-Instruct-Reference
            (v2 also takes its ml_ weights id).
        model_name: Name for the adapter on Together (your project's or account's namespace is
            added).
        credentials: Together credentials block; default: TOGETHER_API_KEY (and
            TOGETHER_BASE_URL, TOGETHER_PROJECT_ID) from the environment.
        api: Together API: v2 (project-scoped; dedicated serving) or v1 (legacy upload API,
            serverless adapters where the account still has them).
        serving: How the adapter is served: deploy an endpoint + deployment from the base's
            LoRA profile, attach to a deployment you name, or none (stop once validated).
        teardown: After a successful run: keep what was created, scale-to-zero the
            deployments it created, or delete everything it created. On any failure, what the
            run created is stopped and deleted whatever this says (the model record stays).
        name_suffix: 'auto' appends a short content hash to model_name (one name per adapter).
        description: Description stored with the model on Together.
        staging_uri: s3://bucket/prefix where local or S3-folder adapters are staged as one zip;
            default: TOGETHER_LORA_STAGING_URI.
        presign_expires_s: Lifetime of the presigned URL in seconds (Together needs >= 6000).
        hf_token_secret: Name of a Prefect Secret block holding the Hugging Face token.
        aws_credentials_block: Name of a prefect-aws AwsCredentials block; default: the
            standard AWS chain (environment, profile, instance role).
        validation: Validation limits (max rank, catalog extensions).
        job: How the import is polled (intervals, maximum wait).
        smoke: Smoke test prompts and cold-start tolerance.
        evaluation: Eval set, metrics, concurrency and the pass/fail gate.
    """
    logger = get_run_logger()
    creds = credentials or TogetherCredentials.from_env()
    hf_token = _hf_token(hf_token_secret)
    stored = _deployment_parameters()
    serving = with_deployment_option(stored, "serving", serving)
    validation = with_deployment_option(stored, "validation", validation)
    job = with_deployment_option(stored, "job", job)
    smoke = with_deployment_option(stored, "smoke", smoke)
    evaluation = with_deployment_option(stored, "evaluation", evaluation)
    result = PublishResult(
        source=strip_query(source),
        base_model=base_model,
        api=api,
        gate=describe_gate(evaluation),
        report_key=artifact_key("report", model_name),
    )
    logger.info("Gate: %s", result.gate)
    duplicate_of = earlier_triggered_run(source, model_name)
    if duplicate_of is not None:
        # both triggers fired for one training run (its event and its completion)
        logger.info(
            "Run %s already publishes %s from %s: nothing to do.",
            duplicate_of,
            model_name,
            result.source,
        )
        result.verdict = "duplicate"
        result.error = f"duplicate of publish run {duplicate_of} (same adapter, both triggers)"
        _write_report(result, creds)
        return result
    handle: AdapterHandle | None = None
    try:
        with _step(result, "parse"):
            parsed = AdapterSource.parse(source)
            result.source = parsed.display
            if parsed.given_url() is not None:
                logger.warning(
                    "source is a presigned URL: Prefect stores flow parameters as given, "
                    "signature included. Pass s3://bucket/key instead and the flow signs a fresh "
                    "URL itself."
                )
        with _step(result, "preflight"):
            preflight(creds, api)
        if parsed.needs_staging:
            with _step(result, "stage"):
                parsed = stage(parsed, staging_uri, aws_credentials_block)
        with _step(result, "presign"):
            resolved = presign(parsed, presign_expires_s, hf_token, aws_credentials_block)
            result.fingerprint = resolved.fingerprint
        with _step(result, "validate"):
            resolved, report = _validate_pinned(
                result,
                parsed,
                resolved,
                (presign_expires_s, hf_token, aws_credentials_block),
                base_model,
                validation,
            )
        name = _final_name(model_name, name_suffix, resolved.fingerprint)
        result.requested_name = name
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
        with _step(result, "upload"):
            upload_future = upload.submit(
                resolved, name, base_model, creds, description, hf_token, api
            )
            handle = upload_future.result()
            result.model_name, result.job_id = handle.model_name, handle.job_id
            result.model_id = handle.model_id
            result.new_upload = upload_future.state.name != "Cached" and not handle.reused
        events.emit(
            events.UPLOADED,
            name,
            {
                "job_id": handle.job_id,
                "model_id": handle.model_id,
                "fingerprint": resolved.fingerprint,
                "new_upload": result.new_upload,
                "api": api,
            },
            **{"together.model": handle.model_name},
        )
        with _step(result, "await_job"):
            try:
                imported = await_job(handle, creds, job)
            except JobFailed as exc:
                _add_findings(result, exc)
                raise
            handle, result.timeline = imported.handle, imported.timeline
            result.revision_id = handle.revision_id
        events.emit(
            events.READY,
            name,
            {"job_id": handle.job_id, "base_model": base_model, "revision_id": handle.revision_id},
            **{"together.model": handle.model_name},
        )
        with _step(result, "serve"):
            try:
                served = serve(handle, creds, serving)
            except ServingFailed as exc:
                result.resources = exc.resources
                raise
            result.serving, result.resources = served, list(served.resources)
            result.inference_model = served.adapter_model
        if served.mode == "none":
            logger.info("Serving mode 'none': the adapter is validated on Together, not served.")
            result.verdict = "validated"
        if smoke.enabled and served.adapter_model:
            with _step(result, "smoke_infer"):
                result.smoke = smoke_infer(served.adapter_model, creds, smoke, served.inference_url)
        if evaluation.eval_set and served.adapter_model:
            with _step(result, "evaluate"):
                _evaluate(result, served, evaluation, creds, hf_token)
        if teardown != "keep":
            with _step(result, "teardown"):
                result.resources = _teardown(handle, result, creds, teardown, keep_model=False)
        if result.verdict == "pending":
            result.verdict = "published"
    except Exception as exc:
        result.verdict = "failed"
        # an invalid adapter's findings are listed in the report: state the error once
        message = str(exc).splitlines()[0] if isinstance(exc, AdapterInvalid) else str(exc)
        result.error = redact(message)
        if handle is not None and result.failed_step != "teardown":
            _clean_up_after_failure(handle, result, creds)
        # callers in this process (the CLI) read what exists on Together from the failure
        exc.publish_result = result  # type: ignore[attr-defined]
        raise
    finally:
        _write_report(result, creds)
    return result


def _add_findings(result: PublishResult, failed: JobFailed) -> None:
    """Together's own validation errors join the run's findings (report, findings artifact)."""
    if failed.findings and result.validation is not None:
        result.validation = result.validation.model_copy(
            update={"findings": [*result.validation.findings, *failed.findings]}
        )


def _validate_pinned(
    result: PublishResult,
    parsed: AdapterSource,
    resolved: ResolvedSource,
    presign_args: tuple[int, SecretStr | None, str | None],
    base_model: str,
    validation: ValidationSettings,
) -> tuple[ResolvedSource, ValidationReport]:
    """Validate; when the Hub repo moved meanwhile (H2), pin the new revision and validate
    again, so what is uploaded is what was validated."""
    hf_token = presign_args[1]
    report = _validate(result, resolved, base_model, validation, hf_token)
    moved = parsed.moved_since(resolved, SourceContext(hf_token=hf_token))
    if moved is not None:
        finding = Finding(
            code="HF_REVISION_MOVED",
            severity="warning",
            message=f"{parsed.display} moved from "
            f"{(resolved.revision_sha or '')[:12]} to {moved[:12]} during validation; "
            "re-validating.",
        )
        get_run_logger().warning("%s: %s", finding.code, finding.message)
        resolved = presign(parsed, *presign_args)
        result.fingerprint = resolved.fingerprint
        report = _validate(result, resolved, base_model, validation, hf_token)
        report = report.model_copy(update={"findings": [finding, *report.findings]})
    result.validation = report
    return resolved, report


def _evaluate(
    result: PublishResult,
    served: ServingReport,
    options: EvalOptions,
    credentials: TogetherCredentials,
    hf_token: SecretStr | None,
) -> None:
    """The adapter against its base on the same deployment; a failed gate raises (or warns)."""
    if served.base_model is None or served.adapter_model is None:
        raise ValueError(
            "No base model string to compare against (merged serving has no base on the same "
            "deployment): set serving.base_model_string, or serve without merge."
        )
    rows = load_eval_set(options.eval_set or "", hf_token=hf_token)
    result.evaluation = evaluate(
        rows, served.adapter_model, served.base_model, credentials, options, served.inference_url
    )
    _report_evaluation(result)
    if not result.evaluation.passed:
        message = gate_failure_message(result.evaluation)
        if options.on_fail == "fail":
            raise EvalBelowThreshold(message, result.evaluation)
        get_run_logger().warning("%s (on_fail='warn': publishing anyway)", message)
        result.verdict = "published-gate-warning"


def _teardown(
    handle: AdapterHandle,
    result: PublishResult,
    credentials: TogetherCredentials,
    mode: TeardownMode,
    *,
    keep_model: bool,
) -> list[Resource]:
    result.teardown = f"{mode} (after the failure; model record kept)" if keep_model else mode
    try:
        return teardown(handle, result.resources, credentials, mode, keep_model)
    except ServingFailed as exc:
        result.resources = exc.resources or result.resources
        raise


def _clean_up_after_failure(
    handle: AdapterHandle, result: PublishResult, credentials: TogetherCredentials
) -> None:
    """Nothing the run created may keep billing after a failure: stop and delete it (the
    model record, which costs nothing, stays). A failed clean-up is logged loudly and added to
    the error, never hidden."""
    if not any(r.created and r.kind != "model" for r in result.resources):
        return
    logger = get_run_logger()
    try:
        result.resources = _teardown(handle, result, credentials, "delete", keep_model=True)
    except Exception as exc:
        logger.error("Clean-up after the failure was incomplete: %s", exc)
        result.error = f"{result.error} | clean-up incomplete: {redact(str(exc))}"
    else:
        logger.warning(
            "Failed at %s: deleted what this run created on Together (%s).",
            result.failed_step,
            ", ".join(f"{r.kind} {r.name or r.id}: {r.state}" for r in result.resources),
        )


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
        result.requested_name or result.model_name,
        {
            "verdict": ev.verdict,
            "adapter_mean": ev.adapter_mean,
            "base_mean": ev.base_mean,
            "delta": ev.delta,
            "delta_ci": [ev.delta_ci_low, ev.delta_ci_high],
            "criteria": {
                c.name: {"value": c.value, "threshold": c.threshold, "passed": c.passed}
                for c in ev.criteria
            },
            "wins": ev.wins,
            "ties": ev.ties,
            "losses": ev.losses,
            "rows": len(ev.rows),
            "errors": ev.errors,
            "throttled": ev.throttled,
        },
        **{"together.model": result.model_name},
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


readable_titles(publish_adapter)


def run_publish(**parameters: Any) -> PublishResult:
    """Run the flow from plain Python (CLI, scripts) with keyword parameters."""
    return publish_adapter(**parameters)


__all__ = ["publish_adapter", "publish_new_adapters", "run_publish", "slug"]


@task(name="discover-adapters", cache_policy=NO_CACHE)
def discover_adapters(
    location: str, name_prefix: str, hf_token: SecretStr | None = None
) -> list[Candidate]:
    """Every adapter under the location, fingerprinted and named by content."""
    candidates = discover(location, name_prefix, hf_token=hf_token)
    get_run_logger().info("Found %d adapter(s) under %s", len(candidates), location)
    return candidates


@task(name="check-published", cache_policy=NO_CACHE, persist_result=False)
def check_published(
    names: list[str], credentials: TogetherCredentials, api: ApiVersion = "v2"
) -> dict[str, str]:
    """Which of ``names`` Together has already (or is importing): name → why it is skipped."""
    with credentials.get_backend(api) as backend:
        return {n: reason for n in names if (reason := backend.published(n)) is not None}


@flow(name="publish-new-adapters")
def publish_new_adapters(
    location: str,
    base_model: str | None = None,
    name_prefix: str = "lora",
    credentials: TogetherCredentials | None = None,
    api: ApiVersion = "v2",
    serving: ServingOptions = ServingOptions(),
    teardown: TeardownMode = "keep",
    staging_uri: str | None = None,
    max_concurrent: int = 2,
    publish_deployment: str | None = f"publish-adapter/{PUBLISH_DEPLOYMENT_NAME}",
    hf_token_secret: str | None = None,
    job: JobOptions = JobOptions(),
    smoke: SmokeOptions = SmokeOptions(),
    evaluation: EvalOptions = EvalOptions(),
) -> list[FleetEntry]:
    """Scan a location for adapters and publish the ones Together does not have yet: each as
    a run of the ``publish-adapter`` deployment (so the workers of its pool publish in
    parallel), or as an in-process subflow where that deployment does not exist. An adapter
    that fails validation is reported (artifact, event) and skipped by later scans until its
    content changes; any other failure fails the scan. A summary table lists every adapter.

    Args:
        location: s3://bucket/prefix/ (archives, and folders holding adapter_config.json) or
            hf://<author> (that author's model repos).
        base_model: Base every adapter is published on; empty: each adapter's own
            base_model_name_or_path (a location may mix bases).
        name_prefix: Model names are <prefix>-<adapter>-<content hash>: one per content.
        credentials: Together credentials block; default: TOGETHER_API_KEY.
        api: Together API (v2 default, v1 legacy).
        serving: How each published adapter is served.
        teardown: What is kept running after each successful publish.
        staging_uri: s3://bucket/prefix where S3 folders are staged as zips; default:
            TOGETHER_LORA_STAGING_URI.
        max_concurrent: How many adapters are published at the same time.
        publish_deployment: The deployment each adapter is published through
            (flow/deployment); empty: in-process subflows.
        hf_token_secret: Name of a Prefect Secret block holding the Hugging Face token.
        job: How each import is polled.
        smoke: Smoke test of each published adapter.
        evaluation: Evaluation and gate applied to each published adapter.
    """
    logger = get_run_logger()
    creds = credentials or TogetherCredentials.from_env()
    hf_token = _hf_token(hf_token_secret)
    candidates = discover_adapters(location, name_prefix, hf_token)
    known = check_published([c.model_name for c in candidates], creds, api)
    entries: list[FleetEntry] = []
    todo: list[tuple[Candidate, str]] = []
    for candidate in candidates:
        entry = FleetEntry(
            source=candidate.source,
            model_name=candidate.model_name,
            fingerprint=candidate.fingerprint,
            action="skipped",
            base_model=base_model or candidate.recorded_base,
        )
        if candidate.model_name in known:
            entry.reason = known[candidate.model_name]
        elif (earlier := rejected_before(candidate.fingerprint)) is not None:
            entry.reason = f"rejected earlier, content unchanged: {earlier}"
        elif entry.base_model is None:
            entry.action, entry.reason = (
                "rejected",
                ("its adapter_config.json records no base model: set base_model for the scan"),
            )
            remember_rejection(candidate, entry.reason)
        else:
            todo.append((candidate, entry.base_model))
            continue
        entries.append(entry)

    shared = {
        "api": api,
        "serving": serving,
        "teardown": teardown,
        "staging_uri": staging_uri,
        "hf_token_secret": hf_token_secret,
        "job": job,
        "smoke": smoke,
        "evaluation": evaluation,
    }
    published = _publish_through_deployment(
        publish_deployment, credentials, shared, todo, max(1, max_concurrent)
    )
    if published is None:
        logger.info("No deployment %s: publishing as in-process subflows.", publish_deployment)
        published = _publish_as_subflows(creds, shared, todo, max(1, max_concurrent))
    for entry in published:
        if entry.action == "rejected":
            remember_rejection(entry, entry.reason)
    entries += published
    counts = {a: sum(e.action == a for e in entries) for a in ("published", "skipped", "rejected")}
    table_artifact(
        artifact_key("fleet", location),
        [e.model_dump() for e in entries],
        f"Fleet scan of {location}: {counts['published']} published, {counts['skipped']} "
        f"skipped, {counts['rejected']} rejected",
    )
    for entry in entries:
        if entry.action == "rejected":
            events.emit(
                events.REJECTED,
                entry.model_name,
                {"source": entry.source, "fingerprint": entry.fingerprint, "reason": entry.reason},
            )
    logger.info(
        "Fleet scan of %s: %s",
        location,
        ", ".join(f"{e.model_name}={e.action}" for e in entries) or "nothing found",
    )
    failed = [e for e in entries if e.action == "failed"]
    if failed:
        raise RuntimeError(
            f"{len(failed)} of {len(entries)} adapters failed to publish (they are retried by "
            "the next scan): " + "; ".join(f"{e.source}: {e.reason}" for e in failed)
        )
    return entries


def _entry(
    candidate: Candidate, base: str, run_id: Any, error: str | None, invalid: bool
) -> FleetEntry:
    return FleetEntry(
        source=candidate.source,
        model_name=candidate.model_name,
        fingerprint=candidate.fingerprint,
        action="published" if error is None else ("rejected" if invalid else "failed"),
        reason=redact(error) if error else "",
        base_model=base,
        flow_run_id=str(run_id) if run_id else None,
    )


def _publish_through_deployment(
    name: str | None,
    credentials: TogetherCredentials | None,
    shared: dict[str, Any],
    todo: list[tuple[Candidate, str]],
    max_concurrent: int,
) -> list[FleetEntry] | None:
    """Each adapter as a run of the deployment, at most ``max_concurrent`` in flight (its
    pool's workers and concurrency limit decide where and how many run), all followed with one
    read per poll; transient API errors are waited out. None when the deployment is missing."""
    if not name:
        return None
    import time

    import httpx
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
    from prefect.runtime import flow_run

    transient = (PrefectHTTPStatusError, httpx.TransportError)
    logger = get_run_logger()
    try:
        with get_client(sync_client=True) as client:
            client.read_deployment_by_name(name)
    except ObjectNotFound:
        return None
    params: dict[str, Any] = {
        k: v.model_dump(mode="json") if isinstance(v, BaseModel) else v for k, v in shared.items()
    }
    block_id = getattr(credentials, "_block_document_id", None)
    if block_id is not None:  # a saved block travels as a reference, never as its values
        params["credentials"] = {"$ref": {"block_document_id": str(block_id)}}

    def start(candidate: Candidate, base: str) -> Any:
        for attempt in range(6):
            try:
                return run_deployment(
                    name,
                    parameters={
                        **params,
                        "source": candidate.source,
                        "base_model": base,
                        "model_name": candidate.model_name,
                    },
                    # the same key for the same scan and content: a retried start adds no run
                    idempotency_key=f"fleet-{flow_run.id}-{candidate.fingerprint}",
                    timeout=0,
                )
            except transient as exc:
                logger.warning("Starting a publish run failed (%s); retrying", exc)
                time.sleep(min(30, 2**attempt))
        raise RuntimeError(f"Could not start a publish run for {candidate.source}")

    pending = list(todo)
    running: dict[Any, tuple[Candidate, str]] = {}
    done: list[FleetEntry] = []
    with get_client(sync_client=True) as client:
        while pending or running:
            while pending and len(running) < max_concurrent:
                candidate, base = pending.pop(0)
                running[start(candidate, base).id] = (candidate, base)
            time.sleep(1)
            try:
                runs = client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(running)))
                )
            except transient as exc:  # a busy server: keep following the same runs
                logger.warning("Reading the publish runs failed (%s); retrying", exc)
                continue
            for run in runs:
                if run.state is None or not run.state.is_final():
                    continue
                candidate, base = running.pop(run.id)
                message = None
                if not run.state.is_completed():
                    message = run.state.message or f"publish run {run.name} {run.state.name}"
                done.append(
                    _entry(candidate, base, run.id, message, "AdapterInvalid" in (message or ""))
                )
    return done


def _publish_as_subflows(
    credentials: TogetherCredentials,
    shared: dict[str, Any],
    todo: list[tuple[Candidate, str]],
    max_concurrent: int,
) -> list[FleetEntry]:
    def one(item: tuple[Candidate, str]) -> FleetEntry:
        candidate, base = item
        state = publish_adapter(
            source=candidate.source,
            base_model=base,
            model_name=candidate.model_name,
            credentials=credentials,
            return_state=True,
            **shared,
        )
        run_id = state.state_details.flow_run_id
        if state.is_completed():
            entry = _entry(candidate, base, run_id, None, False)
            entry.job_id = state.result().job_id
            return entry
        error = state.result(raise_on_failure=False)
        message = str(error) if isinstance(error, BaseException) else (state.message or "failed")
        return _entry(candidate, base, run_id, message, isinstance(error, AdapterInvalid))

    with ThreadPoolExecutor(max_workers=max_concurrent) as pool:
        # each subflow runs in a copy of this flow's context, so it is linked as a child run
        return list(pool.map(lambda item: contextvars.copy_context().run(one, item), todo))


REJECTED_PREFIX = "together-lora-rejected-"


def _rejection_variable(fingerprint: str) -> str:
    return REJECTED_PREFIX + digest(fingerprint)[:24]


def rejected_before(fingerprint: str) -> str | None:
    """Why this exact content was rejected by an earlier scan (a Prefect Variable per
    rejected content, visible in the UI; delete it to retry), or None."""
    from prefect.variables import Variable

    value = Variable.get(_rejection_variable(fingerprint), default=None)
    return value.get("reason") if isinstance(value, dict) else None


def remember_rejection(candidate: Candidate | FleetEntry, reason: str) -> None:
    from prefect.variables import Variable

    try:
        Variable.set(
            _rejection_variable(candidate.fingerprint),
            {"source": candidate.source, "reason": reason[:2000]},
            overwrite=True,
        )
    except Exception as exc:  # never lose the scan's report over the memo
        get_run_logger().warning(
            "Could not remember the rejection of %s: %s", candidate.source, exc
        )


readable_titles(publish_new_adapters)
