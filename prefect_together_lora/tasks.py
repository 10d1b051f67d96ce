"""The Prefect tasks: thin wrappers over the plain functions, adding retries, caching, logs and
artifacts. Which tasks cache, and why:

- ``stage``: not cached; staging is content-addressed itself (an existing key is not re-sent).
- ``presign``: never cached or persisted — its result is a secret URL, and signing is local.
- ``validate``: cached on the adapter's content fingerprint + base model + rules version.
- ``upload``: cached on fingerprint + model name + base model + API + account (and project), so
  a re-run follows the same import; if that cache is gone, the backend reconciles what exists
  on Together (the record, our earlier upload of the same source) instead of creating more.
- ``await_job``, ``serve``, ``teardown`` and ``smoke_infer``: never cached (live state).
- ``evaluate``: cached on both model names + eval rows + options.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, SecretStr

from prefect_together_lora.caching import (
    EvaluationCachePolicy,
    UploadCachePolicy,
    ValidationCachePolicy,
)
from prefect_together_lora.credentials import TogetherCredentials
from prefect_together_lora.errors import (
    AdapterInvalid,
    SmokeTestFailed,
    TogetherConnectionError,
)
from prefect_together_lora.evaluation.dataset import EvalRow
from prefect_together_lora.evaluation.runner import EvalReport, run_eval
from prefect_together_lora.evaluation.store import open_store
from prefect_together_lora.options import EvalOptions, JobOptions, SmokeOptions, ValidationSettings
from prefect_together_lora.polling import progress_of, wait_for_import
from prefect_together_lora.reporting import (
    artifact_key,
    progress_artifact,
    slug,
    table_artifact,
    update_progress,
)
from prefect_together_lora.retry import RETRYABLE_STATUS, RetryPolicy
from prefect_together_lora.schemas import ValidationReport
from prefect_together_lora.smoke import SmokeReport, run_smoke
from prefect_together_lora.sources import AdapterSource
from prefect_together_lora.sources.resolve import ResolvedSource, resolve_source
from prefect_together_lora.staging import stage_source
from prefect_together_lora.together.backend import (
    AdapterHandle,
    AdapterSpec,
    ApiVersion,
    ImportEvent,
    ImportPoll,
    Resource,
    ServingOptions,
    ServingReport,
    TeardownMode,
)
from prefect_together_lora.validation.catalog import load_catalog
from prefect_together_lora.validation.rules import ValidationOptions
from prefect_together_lora.validation.validator import validate_resolved


def s3_client_for(aws_credentials_block: str | None) -> Any:
    """boto3's default chain, or the session of a saved prefect-aws ``AwsCredentials`` block."""
    from prefect_together_lora.sources.s3 import make_s3_client

    if not aws_credentials_block:
        return make_s3_client()
    from prefect.blocks.core import Block

    try:
        block: Any = Block.load(f"aws-credentials/{aws_credentials_block}")
    except (ValueError, KeyError) as exc:
        raise ValueError(
            f"Cannot load AWS credentials block '{aws_credentials_block}' ({exc}); "
            "install prefect-aws and save an AwsCredentials block first."
        ) from None
    return make_s3_client(block.get_boto3_session())


def _logger() -> Any:
    """The run logger inside a run; a module logger when a task is called with ``.fn()``."""
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("prefect_together_lora.tasks")


def prefect_request_slot(
    options: EvalOptions,
) -> Callable[[], AbstractAsyncContextManager[None]] | None:
    """What each evaluation request holds: a Prefect rate-limit token and/or a slot of a
    global concurrency limit (shared with every other flow using the same names)."""
    if not options.rate_limit_name and not options.concurrency_limit_name:
        return None
    from prefect.concurrency.asyncio import concurrency, rate_limit

    @asynccontextmanager
    async def slot() -> AsyncIterator[None]:
        if options.rate_limit_name:
            await rate_limit(options.rate_limit_name, strict=options.rate_limit_strict)
        if options.concurrency_limit_name:
            async with concurrency(
                options.concurrency_limit_name, strict=options.rate_limit_strict
            ):
                yield
        else:
            yield

    return slot


def retry_on_crash(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect-level retries are for whole-task failures (network gone, worker trouble), not a
    second layer of HTTP retries: the client already retried transient HTTP errors."""
    try:
        state.result()
    except (TogetherConnectionError, ConnectionError, TimeoutError):
        return True
    except Exception:
        return False
    return False


@task(
    name="stage",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=retry_on_crash,
)
def stage(
    source: AdapterSource,
    staging_uri: str | None = None,
    aws_credentials_block: str | None = None,
    extra_files: list[str] | None = None,
) -> AdapterSource:
    """Package a local folder/archive or an S3 folder as one archive in S3 (from a folder:
    the adapter files, plus files matching the ``extra_files`` glob patterns)."""
    logger = _logger()

    def progress(sent: int, total: int) -> None:
        logger.info(
            "Staging %s: %d%% of %.1f MiB sent",
            source.display,
            100 * sent // max(1, total),
            total / 2**20,
        )

    staged = stage_source(
        source,
        staging_uri,
        s3_client=s3_client_for(aws_credentials_block),
        progress=progress,
        extra_files=extra_files or (),
    )
    logger.info(
        "Staged %s as %s (%s, %d bytes)",
        source.display,
        staged.uri,
        "uploaded" if staged.uploaded else "already there",
        staged.size,
    )
    return AdapterSource.s3(staged.bucket, staged.key)


@task(
    name="presign",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=retry_on_crash,
)
def presign(
    source: AdapterSource,
    expires_s: int = 6 * 3600,
    hf_token: SecretStr | None = None,
    aws_credentials_block: str | None = None,
) -> ResolvedSource:
    """SigV4-presign an S3 archive (≥ 100 min) or pin a Hub revision; fingerprint the content."""
    client = s3_client_for(aws_credentials_block) if source.uses_s3 else None
    resolved = resolve_source(source, expires_s=expires_s, s3_client=client, hf_token=hf_token)
    logger = _logger()
    for warning in resolved.warnings:
        logger.warning(warning)
    logger.info("Resolved %s (fingerprint %s)", source.display, resolved.fingerprint)
    return resolved


@task(
    name="validate",
    cache_policy=ValidationCachePolicy(),
    cache_expiration=timedelta(days=7),
    retries=1,
    retry_delay_seconds=10,
    retry_condition_fn=retry_on_crash,
)
def validate(
    resolved: ResolvedSource,
    base_model: str,
    settings: ValidationSettings | None = None,
    hf_token: SecretStr | None = None,
) -> ValidationReport:
    """Every rule that metadata can decide, reading only headers; raises AdapterInvalid."""
    settings = settings or ValidationSettings()
    catalog = load_catalog(settings.catalog_path, variable=settings.catalog_variable)
    report = validate_resolved(
        resolved,
        base_model,
        catalog=catalog,
        options=ValidationOptions(max_rank=settings.max_rank, check_data=settings.check_data),
        hf_token=hf_token,
    )
    logger = _logger()
    for finding in report.findings:
        log = logger.error if finding.severity == "error" else logger.info
        log("%s %s: %s", finding.severity.upper(), finding.code, finding.message)
    logger.info("Validation read %d bytes in %d requests", report.bytes_read, report.requests)
    if not report.valid:
        raise AdapterInvalid(report.findings, report.source)
    return report


@task(name="preflight", cache_policy=NO_CACHE, persist_result=False)
def preflight(credentials: TogetherCredentials, api: ApiVersion = "v2") -> str:
    """One cheap authenticated call before anything is staged: a wrong base URL, key or
    project fails here in seconds (a refused connection is not retried for minutes)."""
    quick = RetryPolicy(max_attempts=2, initial_delay_s=0.2, max_delay_s=0.5)
    with credentials.get_backend(api, quick, connect_timeout_s=3.0, timeout_s=15.0) as backend:
        who = backend.preflight()
    _logger().info("Together: %s", who)
    return who


@task(
    name="upload",
    cache_policy=UploadCachePolicy(),
    cache_expiration=timedelta(days=30),
    retries=1,
    retry_delay_seconds=30,
    retry_condition_fn=retry_on_crash,
)
def upload(
    resolved: ResolvedSource,
    model_name: str,
    base_model: str,
    credentials: TogetherCredentials,
    description: str | None = None,
    hf_token: SecretStr | None = None,
    api: ApiVersion = "v2",
) -> AdapterHandle:
    """Start Together's import of the adapter (v2: model record + remote upload; v1:
    ``POST /v1/models``); idempotent per adapter, name and account: an earlier import of the
    same source is followed, never repeated."""
    spec = AdapterSpec(
        name=model_name,
        source_url=SecretStr(resolved.model_source.get_secret_value()),
        base_model=base_model,
        hf_token=hf_token,
        description=description,
    )
    with credentials.get_backend(api) as backend:
        handle = backend.import_adapter(spec)
    _logger().info(
        "Import %s of %s on %s (%s)",
        handle.job_id,
        handle.model_name,
        api,
        "following the existing one" if handle.reused else "created",
    )
    return handle


class Imported(BaseModel):
    """``await_job``'s result: the handle (now with its revision) and the import's timeline."""

    handle: AdapterHandle
    timeline: list[ImportEvent]


@task(name="await_job", cache_policy=NO_CACHE, persist_result=False)
def await_job(
    handle: AdapterHandle,
    credentials: TogetherCredentials,
    options: JobOptions | None = None,
) -> Imported:
    """Poll until Together has the weights (v2: upload SUCCEEDED and revision validated) or
    raise JobFailed (with Together's reason and validation findings) / JobTimedOut."""
    logger = _logger()
    progress_id = progress_artifact(
        artifact_key("job", handle.model_name), 0.0, f"Together import {handle.job_id}"
    )
    revision: list[str | None] = [handle.revision_id]

    def on_poll(poll: ImportPoll) -> None:
        for event in poll.events:
            log = logger.warning if event.level in ("warn", "error") else logger.info
            log("Import %s: %s %s", handle.job_id, event.kind or event.status, event.message)
        revision[0] = poll.status.revision_id or revision[0]
        update_progress(
            progress_id,
            progress_of(poll.status.state),
            f"Together import {handle.job_id}: {poll.status.raw}",
        )

    with credentials.get_backend(handle.api) as backend:
        timeline = wait_for_import(backend, handle, options, on_poll=on_poll)
    return Imported(
        handle=handle.model_copy(update={"revision_id": revision[0]}), timeline=timeline
    )


@task(
    name="serve",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=1,
    retry_delay_seconds=10,
    retry_condition_fn=retry_on_crash,
)
def serve(
    handle: AdapterHandle, credentials: TogetherCredentials, options: ServingOptions
) -> ServingReport:
    """Make the adapter callable (v2: attach to a named deployment, or deploy an endpoint +
    deployment from the base's LoRA profile) and wait until it is READY. Raises ServingFailed
    listing what it created, so the flow can tear it down."""
    logger = _logger()
    with credentials.get_backend(handle.api) as backend:
        report = backend.serve(handle, options)
    for note in report.notes:
        logger.warning(note)
    if report.mode != "none":
        logger.info(
            "Serving %s (%s) on %s %s: call model %r at %s",
            handle.model_name,
            report.mode,
            report.deployment_name or "serverless",
            f"({report.hardware})" if report.hardware else "",
            report.adapter_model,
            report.inference_url,
        )
    return report


@task(
    name="teardown",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=2,
    retry_delay_seconds=[10, 30],
    retry_condition_fn=retry_on_crash,
)
def teardown(
    handle: AdapterHandle,
    resources: list[Resource],
    credentials: TogetherCredentials,
    mode: TeardownMode,
    keep_model: bool = False,
) -> list[Resource]:
    """Apply ``mode`` (keep / scale-to-zero / delete) to what this run created, in the order
    Together requires; raises ServingFailed naming anything left behind."""
    with credentials.get_backend(handle.api) as backend:
        final = backend.teardown(handle, resources, mode, keep_model=keep_model)
    logger = _logger()
    for resource in final:
        logger.info(
            "%s %s: %s%s",
            resource.kind,
            resource.name or resource.id,
            resource.state,
            " (billing)" if resource.bills and resource.state == "live" else "",
        )
    return final


@task(name="smoke_infer", cache_policy=NO_CACHE)
def smoke_infer(
    model_name: str,
    credentials: TogetherCredentials,
    options: SmokeOptions | None = None,
    inference_url: str | None = None,
) -> SmokeReport:
    """A few real calls on ``inference_url`` (default: the control plane, as v1 serves);
    tolerant of cold start; fails on errors or empty outputs."""
    options = options or SmokeOptions()
    logger = _logger()
    # 503 here is a cold start: smoke's own loop waits for it (counted, up to ready_timeout_s)
    retry = credentials.retry_policy(retry_statuses=RETRYABLE_STATUS - {503})
    with credentials.get_sync_client(retry, host=inference_url) as client:
        report = run_smoke(
            client,
            model_name,
            options,
            on_wait=lambda exc: logger.info(
                "%s is not ready yet (%s); retrying in %.0fs",
                model_name,
                exc.status_code,
                options.retry_interval_s,
            ),
        )
    table_artifact(
        artifact_key("smoke", model_name),
        [
            {
                "prompt": s.prompt,
                "output": s.error or s.output,
                "latency_s": s.latency_s,
                "prompt_tokens": s.prompt_tokens,
                "completion_tokens": s.completion_tokens,
                "finish_reason": s.finish_reason,
            }
            for s in report.samples
        ],
        f"Smoke test of {model_name}",
    )
    logger.info(
        "Smoke test: %d/%d calls answered, %d cold-start retries",
        len(report.samples) - len(report.failures),
        len(report.samples),
        report.cold_start_retries,
    )
    if not report.passed:
        first = report.failures[0]
        raise SmokeTestFailed(
            f"{len(report.failures)} of {len(report.samples)} smoke calls to "
            f"{model_name} failed; first: {first.error or 'empty output'} "
            f"(prompt: {first.prompt[:80]!r})."
        )
    return report


@task(name="evaluate", cache_policy=EvaluationCachePolicy(), cache_expiration=timedelta(days=7))
def evaluate(
    rows: list[EvalRow],
    adapter_model: str,
    base_model: str,
    credentials: TogetherCredentials,
    options: EvalOptions | None = None,
    inference_url: str | None = None,
) -> EvalReport:
    """The eval set on adapter and base (same seed/temperature), scored, with the gate's
    criteria; the flow decides whether a failed gate fails or warns. Answers are recorded as
    they arrive, so a retry or a re-run asks only what is still missing."""
    options = options or EvalOptions()
    logger = _logger()
    store = open_store(options.answer_store, slug(f"{adapter_model}-vs-{base_model}", 120))
    progress_id = progress_artifact(
        artifact_key("eval-progress", adapter_model),
        0.0,
        f"Evaluating {adapter_model}: 0/{2 * len(rows)} answers",
    )
    step = max(1, len(rows) // 10)

    def on_progress(done: int, total: int) -> None:
        if done % step == 0 or done == total:
            update_progress(
                progress_id,
                100.0 * done / total,
                f"Evaluating {adapter_model}: {done}/{total} answers",
            )

    slot = prefect_request_slot(options)

    # 429 and 503 go to the runner, which adapts its concurrency and never drops a row
    retry = credentials.retry_policy(retry_statuses=RETRYABLE_STATUS - {429, 503})

    async def go() -> EvalReport:
        async with credentials.get_async_client(retry, host=inference_url) as client:
            return await run_eval(
                client,
                rows,
                adapter_model,
                base_model,
                options,
                store=store,
                on_progress=on_progress,
                slot=slot,
            )

    report = asyncio.run(go())
    logger.info(
        "Eval: adapter %.3f vs base %.3f (delta %+.3f, 95%% CI [%+.3f, %+.3f]), %d/%d/%d W/T/L, "
        "%d asked, %d reused, %d throttled; verdict %s",
        report.adapter_mean,
        report.base_mean,
        report.delta,
        report.delta_ci_low,
        report.delta_ci_high,
        report.wins,
        report.ties,
        report.losses,
        report.asked,
        report.reused,
        report.throttled,
        report.verdict,
    )
    return report
