"""The exceptions users catch.

Every exception carries what a user needs to act (status, Together's error type/code, the request
id to quote to support, a hint) and never a secret: messages are passed through
:func:`~prefect_together_lora.redaction.redact` when they are built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from prefect_together_lora.redaction import redact
from prefect_together_lora.retry import retry_after_seconds

if TYPE_CHECKING:
    import httpx

    from prefect_together_lora.schemas import Finding


class TogetherLoraError(Exception):
    """Base class of every error raised by prefect-together-lora."""

    def __init__(self, message: str) -> None:
        self.message = redact(message)
        super().__init__(self.message)


# --- Together API errors -------------------------------------------------------------------------


class TogetherError(TogetherLoraError):
    """An error answered by the Together API (or a transport failure talking to it)."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        request_id: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        self.status_code = status_code
        self.retry_after_s = retry_after_s
        self.error_type = error_type
        self.code = code
        self.param = param
        self.request_id = request_id
        details = [f"HTTP {status_code}" if status_code is not None else None, error_type, code]
        suffix = ", ".join(d for d in details if d)
        if request_id:
            suffix = f"{suffix}, request id {request_id}" if suffix else f"request id {request_id}"
        super().__init__(f"{message} ({suffix})" if suffix else message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class TogetherConnectionError(TogetherError):
    """The API could not be reached (connection refused, reset, timed out) after all retries."""


class GenerationTimedOut(TogetherConnectionError):
    """A generation got no answer within the read timeout; not re-sent (it may still be
    running, and it is billed)."""


class AuthenticationError(TogetherError):
    """401/403: the API key is missing, invalid or lacks access."""


class InvalidRequestError(TogetherError):
    """400/422: the request was refused as malformed or not allowed."""


class NotFoundError(TogetherError):
    """404: the resource (job, route) does not exist."""


class ModelNotAvailable(NotFoundError):
    """``model_not_available``: unknown model, not ready yet, or needs a dedicated endpoint."""


class PaymentRequired(TogetherError):
    """402: the account's spending limit is reached or it has no credits."""


class RateLimitError(TogetherError):
    """429: above the dynamic rate limit, still so after all retries."""


class ServerError(TogetherError):
    """5xx from Together, still so after all retries."""


class ServiceUnavailable(ServerError):
    """503: overloaded or not ready yet (typical of an adapter's cold start)."""


class ConflictError(InvalidRequestError):
    """409: a stale etag, or a name that exists already (v2)."""


class ModelNameTaken(InvalidRequestError):
    """The model name is already used by a different adapter in this account."""


class UploadRejected(TogetherError):
    """The upload answered HTTP 200 without ``data``, only a ``message`` (a Together quirk)."""


_STATUS_CLASSES: dict[int, type[TogetherError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    402: PaymentRequired,
    403: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    422: InvalidRequestError,
    429: RateLimitError,
    503: ServiceUnavailable,
}

_HINTS: dict[type[TogetherError], str] = {
    AuthenticationError: "Check TOGETHER_API_KEY (or the TogetherCredentials block).",
    PaymentRequired: "Raise the spending limit or add credits in Together's billing settings.",
    RateLimitError: "Lower the request rate or concurrency; limits are per org and model.",
    ServiceUnavailable: "Together is overloaded or the model is still loading; retry later.",
}


def request_id_of(response: httpx.Response) -> str | None:
    """The id to quote to Together support: ``cf-ray``, else ``x-request-id``."""
    return response.headers.get("cf-ray") or response.headers.get("x-request-id")


def error_from_response(response: httpx.Response) -> TogetherError:
    """Map a non-2xx Together response to the most precise exception, with an actionable message."""
    status = response.status_code
    body: Any = None
    try:
        body = response.json()
    except ValueError:
        body = None
    error: dict[str, Any] = {}
    request_id = request_id_of(response)
    if isinstance(body, dict):
        raw = body.get("error")
        if isinstance(raw, dict):
            error = raw
        elif isinstance(raw, str):
            error = {"message": raw}
        elif isinstance(body.get("message"), str):
            # the v2 RPC shape: {"code": <int>, "message": ..., "details": [{"detail": ...}]}
            details = body.get("details")
            detail = next(
                (
                    d["detail"]
                    for d in (details if isinstance(details, list) else [])
                    if isinstance(d, dict) and isinstance(d.get("detail"), str) and d["detail"]
                ),
                None,
            )
            error = {"message": detail or body["message"]}
        request_id = request_id or (body.get("id") if isinstance(body.get("id"), str) else None)
    message = str(error.get("message") or _fallback_message(status, response))
    code = error.get("code") if isinstance(error.get("code"), str) else None
    cls: type[TogetherError]
    if code == "model_not_available":
        cls = ModelNotAvailable
    elif status == 403 and any(w in message.lower() for w in ("token", "context")):
        # Together answers 403 when prompt + max_tokens exceed the context length: not a key
        cls = InvalidRequestError
    elif "model name already exists" in message.lower():
        cls = ModelNameTaken
    else:
        cls = _STATUS_CLASSES.get(status, ServerError if status >= 500 else TogetherError)
    hint = _HINTS.get(cls)
    if hint and hint not in message:
        message = f"{message} {hint}"
    return cls(
        message,
        status_code=status,
        error_type=error.get("type") if isinstance(error.get("type"), str) else None,
        code=code,
        param=error.get("param") if isinstance(error.get("param"), str) else None,
        request_id=request_id,
        retry_after_s=retry_after_seconds(response.headers),
    )


def _fallback_message(status: int, response: httpx.Response) -> str:
    text = response.text.strip()[:200] if response.content else ""
    reason = response.reason_phrase or "error"
    return f"Together answered {status} {reason}" + (f": {text}" if text else "")


# --- Pipeline errors -----------------------------------------------------------------------------


class SourceError(TogetherLoraError):
    """The adapter source is malformed or cannot be read (wrong form, unreachable, forbidden)."""


class ArchiveCorrupt(SourceError):
    """The bytes arrived but are not a sound archive (structure, limits, truncation): the
    archive must be re-created, which is a different fix from an unreachable source."""


class PresignError(TogetherLoraError):
    """A presigned URL could not be produced with the lifetime Together needs."""


class AdapterInvalid(TogetherLoraError):
    """Validation found errors; ``findings`` lists every one, with codes and hints."""

    def __init__(self, findings: Sequence[Finding], source: str = "") -> None:
        self.findings = list(findings)
        self.source = source
        errors = [f for f in self.findings if f.severity == "error"]
        lines = [
            f"- {f.code}: {f.message}" + (f" Hint: {f.hint}" if f.hint else "") for f in errors
        ]
        where = f" {source}" if source else ""
        super().__init__(
            f"Adapter{where} is invalid ({len(errors)} error(s)):\n" + "\n".join(lines)
        )

    def __reduce__(self) -> Any:  # a failed run's result, read from another process
        return (type(self), (self.findings, self.source))


class JobFailed(TogetherLoraError):
    """Together's import of the adapter failed (a v1 job ``Failed``; a v2 remote upload
    ``FAILED``/out of restarts, or its revision failed validation). ``timeline`` holds what
    Together reported on the way, ``findings`` its validation errors; ``model_name`` /
    ``model_id`` say what exists on Together afterwards (a v2 model record stays)."""

    def __init__(
        self,
        job_id: str,
        reason: str,
        timeline: Sequence[Any] = (),
        findings: Sequence[Finding] = (),
        model_name: str | None = None,
        model_id: str | None = None,
    ) -> None:
        self.job_id = job_id
        self.reason = redact(reason)
        self.timeline = list(timeline)
        self.findings = list(findings)
        self.model_name = model_name
        self.model_id = model_id
        super().__init__(f"Together job {job_id} failed: {self.reason}")

    def __reduce__(self) -> Any:
        return (
            type(self),
            (
                self.job_id,
                self.reason,
                self.timeline,
                self.findings,
                self.model_name,
                self.model_id,
            ),
        )


class JobTimedOut(TogetherLoraError):
    """The job did not reach a terminal status in time; it may still finish on Together's side."""

    def __init__(self, job_id: str, waited_s: float, last_status: str) -> None:
        self.job_id = job_id
        self.waited_s = waited_s
        self.last_status = last_status
        super().__init__(
            f"Together job {job_id} still '{last_status}' after {waited_s:.0f}s. It may still "
            f"finish: re-run await_job with job_id={job_id} and a larger max_wait_s."
        )

    def __reduce__(self) -> Any:
        return (type(self), (self.job_id, self.waited_s, self.last_status))


class ServingFailed(TogetherLoraError):
    """Serving the adapter failed (an endpoint/deployment/attachment refused, failed, or not
    ready in time). ``resources`` lists what the attempt created on Together, so the caller can
    tear it down; the message says what exists and whether it bills."""

    def __init__(self, message: str, resources: Sequence[Any] = ()) -> None:
        self.resources = list(resources)
        self.reason = redact(message)
        super().__init__(self.reason)

    def __reduce__(self) -> Any:
        return (type(self), (self.reason, self.resources))


class SmokeTestFailed(TogetherLoraError):
    """The uploaded model did not answer the smoke prompts properly."""


class EvalBelowThreshold(TogetherLoraError):
    """The evaluation gate failed; ``report`` holds every criterion and its value."""

    def __init__(self, message: str, report: Any = None) -> None:
        self.report = report
        super().__init__(message)
