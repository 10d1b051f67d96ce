"""Typed httpx clients for the Together endpoints the pipeline needs.

``TogetherClient`` (sync) and ``AsyncTogetherClient`` share one core: how each request is built,
how each answer is parsed, how errors are mapped and when to retry. Only the I/O differs.
Paths carry their API version (``/v1/...``), so the base URL is the bare host and a future
``/v2`` project-scoped backend can live beside this one on the same host.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx
from pydantic import BaseModel, SecretStr

from prefect_together_lora._version import __version__
from prefect_together_lora.errors import (
    GenerationTimedOut,
    ModelNameTaken,
    TogetherConnectionError,
    UploadRejected,
    error_from_response,
)
from prefect_together_lora.redaction import redact, secret_value, strip_query
from prefect_together_lora.retry import RetryPolicy
from prefect_together_lora.schemas import (
    ChatCompletion,
    Completion,
    Job,
    ModelInfo,
    RateLimitInfo,
    UploadJob,
    UploadRequest,
)
from prefect_together_lora.together.settings import DEFAULT_BASE_URL, normalize_base_url

logger = logging.getLogger("prefect_together_lora.client")

API_V1 = "/v1"
_T = TypeVar("_T", bound=BaseModel)
_S = TypeVar("_S", bound="SyncHttpClient")
_HF_REPO = re.compile(r"^[\w.-]+/[\w.-]+$")


@dataclass(frozen=True)
class Call:
    """One request. ``idempotent=False`` (a create without an idempotency key) is retried only
    when the server certainly did not act on it: a refused connection or a 429; anything else
    is left to the caller, which reconciles by reading state back instead of sending it twice."""

    method: str
    path: str
    json: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    idempotent: bool = True
    billed: bool = False  # a generation: a read timeout means it may still be running (billed)


def source_identity(source: str) -> str:
    """What makes two ``model_source`` strings the same adapter location, with no secret in it:
    a presigned URL without its (signature-bearing) query, a Hub repo as ``hf:org/repo``."""
    source = source.strip()
    if _HF_REPO.match(source):
        return f"hf:{source}"
    parts = urlsplit(source)
    if parts.hostname in ("huggingface.co", "www.huggingface.co"):
        repo = "/".join(parts.path.strip("/").split("/")[:2])
        return f"hf:{repo}"
    return strip_query(source)


def _name_matches(job_name: str | None, requested: str) -> bool:
    if not job_name:
        return False
    return job_name == requested or job_name.rsplit("/", 1)[-1] == requested.rsplit("/", 1)[-1]


def reconcile_upload(jobs: Iterable[Job], request: UploadRequest) -> UploadJob:
    """After "Model name already exists": our earlier upload (same name and source) is returned
    as the job to follow; a name held by another source raises :class:`ModelNameTaken`."""
    wanted = source_identity(request.model_source.get_secret_value())
    same_name = [j for j in jobs if _name_matches(j.model_name, request.model_name)]
    for job in sorted(
        same_name, key=lambda j: j.created_at.timestamp() if j.created_at else 0.0, reverse=True
    ):
        source = job.args.model_source if job.args else None
        if source is not None and source_identity(source.get_secret_value()) == wanted:
            return UploadJob(
                job_id=job.job_id,
                model_name=job.model_name or request.model_name,
                message="Model name already exists; following the existing upload job.",
                reconciled=True,
            )
    if same_name:
        other = same_name[0].args.model_source_redacted if same_name[0].args else None
        detail = f" (uploaded from {other})" if other else ""
        raise ModelNameTaken(
            f"Model name '{request.model_name}' is already used by a different adapter{detail}. "
            "Choose another name, or use name_suffix='auto' to append a content hash."
        )
    raise ModelNameTaken(
        f"Model name '{request.model_name}' already exists in this Together account and no upload "
        "job for it was found. Choose another name, or use name_suffix='auto'."
    )


class _ClientCore:
    """Request building, parsing and retry decisions shared by both clients (no I/O here)."""

    def __init__(
        self,
        api_key: str | SecretStr,
        base_url: str = DEFAULT_BASE_URL,
        *,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._api_key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        if not self._api_key.get_secret_value():
            raise ValueError("api_key is empty: set TOGETHER_API_KEY.")
        self.base_url = normalize_base_url(base_url)
        self.retry = retry or RetryPolicy()
        self._timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
        # responses seen per status code (retried ones included): e.g. how many 429s
        self.status_counts: Counter[int] = Counter()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    def _client_options(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "timeout": self._timeout,
            "headers": {
                "Authorization": f"Bearer {self._api_key.get_secret_value()}",
                "User-Agent": f"prefect-together-lora/{__version__}",
                "Accept": "application/json",
            },
            "follow_redirects": False,
        }

    # -- request builders --------------------------------------------------------------------

    @staticmethod
    def _upload_call(request: UploadRequest) -> Call:
        return Call("POST", f"{API_V1}/models", request.to_json())

    @staticmethod
    def _job_call(job_id: str) -> Call:
        if not job_id or not job_id.strip():
            raise ValueError("job_id is empty")
        return Call("GET", f"{API_V1}/jobs/{quote(job_id.strip(), safe='')}")

    @staticmethod
    def _inference_call(kind: str, model: str, payload: dict[str, Any]) -> Call:
        if not model:
            raise ValueError("model is empty")
        if payload.get("stream"):
            raise ValueError("streaming is not supported by this client; omit stream=True")
        path = f"{API_V1}/chat/completions" if kind == "chat" else f"{API_V1}/completions"
        return Call("POST", path, {"model": model, **payload}, billed=True)

    # -- parsers -----------------------------------------------------------------------------

    @staticmethod
    def _parse_upload(response: httpx.Response, request: UploadRequest) -> UploadJob:
        body = response.json()
        if not isinstance(body, dict):
            raise UploadRejected("Together answered the upload with an unexpected body.")
        data: dict[str, Any] = body["data"] if isinstance(body.get("data"), dict) else body
        message = body.get("message") if isinstance(body.get("message"), str) else None
        if not data.get("job_id"):
            text = message or "no data and no message"
            # "name already exists", or (a re-submit) "weights already exist": both mean an
            # earlier upload holds it; the caller follows that job when it is ours
            if "already exist" in text.lower():
                raise ModelNameTaken(text, status_code=response.status_code)
            raise UploadRejected(
                f"Together accepted the request but created no job: {text}",
                status_code=response.status_code,
            )
        return UploadJob.model_validate(
            {**data, "model_name": data.get("model_name") or request.model_name, "message": message}
        )

    @staticmethod
    def _parse_jobs(response: httpx.Response) -> list[Job]:
        body = response.json()
        items = body.get("data", []) if isinstance(body, dict) else body
        return [Job.model_validate(item) for item in items or []]

    @staticmethod
    def _parse_models(response: httpx.Response) -> list[ModelInfo]:
        body = response.json()
        items = body.get("data", []) if isinstance(body, dict) else body
        return [ModelInfo.model_validate(item) for item in items or []]

    @staticmethod
    def _parse_inference(response: httpx.Response, model: type[_T]) -> _T:
        parsed = model.model_validate(response.json())
        parsed.rate_limit = RateLimitInfo.from_headers(response.headers)  # type: ignore[attr-defined]
        return parsed

    @staticmethod
    def _chat_payload(messages: Iterable[Mapping[str, Any] | BaseModel], params: dict[str, Any]):
        rendered = [
            m.model_dump(exclude_none=True) if isinstance(m, BaseModel) else dict(m)
            for m in messages
        ]
        if not rendered:
            raise ValueError("messages is empty")
        return {"messages": rendered, **params}

    # -- retry decisions ---------------------------------------------------------------------

    def _after_response(self, call: Call, attempt: int, response: httpx.Response) -> float | None:
        """None when the response is final (raises on a final error), else the delay to wait."""
        self.status_counts[response.status_code] += 1
        if response.is_success:
            return None
        retryable = self.retry.is_retryable(response) and (
            call.idempotent or response.status_code == 429
        )
        if attempt < self.retry.max_attempts and retryable:
            delay = self.retry.delay(attempt, response)
            logger.info(
                "%s %s answered %s; retry %d/%d in %.2fs",
                call.method,
                call.path,
                response.status_code,
                attempt,
                self.retry.max_attempts - 1,
                delay,
            )
            return delay
        raise error_from_response(response)

    def _after_error(self, call: Call, attempt: int, exc: httpx.TransportError) -> float:
        unsent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
        if call.billed and isinstance(exc, httpx.ReadTimeout):
            # re-sending would generate (and bill) the same answer again, and again
            raise GenerationTimedOut(
                f"{call.method} {call.path} got no answer within the read timeout; not "
                "re-sent, since the generation may still be running and is billed. Raise "
                "timeout_s (or lower max_tokens) for long generations."
            ) from None
        if attempt >= self.retry.max_attempts or not (call.idempotent or unsent):
            raise TogetherConnectionError(
                f"Could not reach Together at {self.base_url} for {call.method} {call.path} after "
                f"{attempt} attempt(s): {type(exc).__name__}: {redact(str(exc), [self._api_key])}. "
                "Check the network and TOGETHER_BASE_URL."
            ) from None
        delay = self.retry.delay(attempt)
        logger.info(
            "%s %s failed (%s); retry %d/%d in %.2fs",
            call.method,
            call.path,
            type(exc).__name__,
            attempt,
            self.retry.max_attempts - 1,
            delay,
        )
        return delay

    def _build_upload(
        self,
        model_name: str,
        model_source: str | SecretStr,
        base_model: str | None,
        description: str | None,
        hf_token: str | SecretStr | None,
        lora_model: str | None,
    ) -> UploadRequest:
        return UploadRequest(
            model_name=model_name,
            model_source=SecretStr(secret_value(model_source) or ""),
            base_model=base_model,
            description=description,
            hf_token=SecretStr(hf_token_value)
            if (hf_token_value := secret_value(hf_token))
            else None,
            lora_model=lora_model,
        )


class SyncHttpClient(_ClientCore):
    """The synchronous I/O shared by the v1 and v2 clients: one httpx client, the shared retry
    loop. Use as a context manager, or call :meth:`close`."""

    def __init__(
        self,
        api_key: str | SecretStr,
        base_url: str = DEFAULT_BASE_URL,
        *,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            api_key, base_url, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s, retry=retry
        )
        self._http = httpx.Client(transport=transport, **self._client_options())

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: Call) -> httpx.Response:
        attempt = 1
        while True:
            try:
                response = self._http.request(
                    call.method, call.path, json=call.json, params=call.params
                )
            except httpx.TransportError as exc:
                delay = self._after_error(call, attempt, exc)
            else:
                maybe = self._after_response(call, attempt, response)
                if maybe is None:
                    return response
                delay = maybe
            time.sleep(delay)
            attempt += 1

    def send(self, call: Call) -> httpx.Response:
        """Send one request through the retry policy (for the v2 client and tests)."""
        return self._send(call)


class TogetherClient(SyncHttpClient):
    """Synchronous client of Together's v1 endpoints (upload, jobs, models, inference)."""

    def upload_adapter(
        self,
        model_name: str,
        model_source: str | SecretStr,
        base_model: str | None,
        description: str | None = None,
        hf_token: str | SecretStr | None = None,
        lora_model: str | None = None,
    ) -> UploadJob:
        """``POST /v1/models`` with ``model_type="adapter"``; reconciles a duplicate-name answer
        caused by our own earlier (e.g. lost-response) upload of the same source."""
        request = self._build_upload(
            model_name, model_source, base_model, description, hf_token, lora_model
        )
        try:
            return self._parse_upload(self._send(self._upload_call(request)), request)
        except ModelNameTaken:
            return reconcile_upload(self.list_jobs(), request)

    def get_job(self, job_id: str) -> Job:
        return Job.model_validate(self._send(self._job_call(job_id)).json())

    def list_jobs(self) -> list[Job]:
        return self._parse_jobs(self._send(Call("GET", f"{API_V1}/jobs")))

    def list_models(self) -> list[ModelInfo]:
        return self._parse_models(self._send(Call("GET", f"{API_V1}/models")))

    def chat(
        self, model: str, messages: Iterable[Mapping[str, Any] | BaseModel], **params: Any
    ) -> ChatCompletion:
        call = self._inference_call("chat", model, self._chat_payload(messages, params))
        return self._parse_inference(self._send(call), ChatCompletion)

    def complete(self, model: str, prompt: str, **params: Any) -> Completion:
        call = self._inference_call("completion", model, {"prompt": prompt, **params})
        return self._parse_inference(self._send(call), Completion)


class AsyncTogetherClient(_ClientCore):
    """Asynchronous Together client (for concurrent evaluation). Use ``async with``."""

    def __init__(
        self,
        api_key: str | SecretStr,
        base_url: str = DEFAULT_BASE_URL,
        *,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 64,
    ) -> None:
        super().__init__(
            api_key, base_url, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s, retry=retry
        )
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._http = httpx.AsyncClient(transport=transport, limits=limits, **self._client_options())

    async def __aenter__(self) -> AsyncTogetherClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: Call) -> httpx.Response:
        attempt = 1
        while True:
            try:
                response = await self._http.request(
                    call.method, call.path, json=call.json, params=call.params
                )
            except httpx.TransportError as exc:
                delay = self._after_error(call, attempt, exc)
            else:
                maybe = self._after_response(call, attempt, response)
                if maybe is None:
                    return response
                delay = maybe
            await asyncio.sleep(delay)
            attempt += 1

    async def upload_adapter(
        self,
        model_name: str,
        model_source: str | SecretStr,
        base_model: str | None,
        description: str | None = None,
        hf_token: str | SecretStr | None = None,
        lora_model: str | None = None,
    ) -> UploadJob:
        """See :meth:`TogetherClient.upload_adapter`."""
        request = self._build_upload(
            model_name, model_source, base_model, description, hf_token, lora_model
        )
        try:
            return self._parse_upload(await self._send(self._upload_call(request)), request)
        except ModelNameTaken:
            return reconcile_upload(await self.list_jobs(), request)

    async def get_job(self, job_id: str) -> Job:
        return Job.model_validate((await self._send(self._job_call(job_id))).json())

    async def list_jobs(self) -> list[Job]:
        return self._parse_jobs(await self._send(Call("GET", f"{API_V1}/jobs")))

    async def list_models(self) -> list[ModelInfo]:
        return self._parse_models(await self._send(Call("GET", f"{API_V1}/models")))

    async def chat(
        self, model: str, messages: Iterable[Mapping[str, Any] | BaseModel], **params: Any
    ) -> ChatCompletion:
        call = self._inference_call("chat", model, self._chat_payload(messages, params))
        return self._parse_inference(await self._send(call), ChatCompletion)

    async def complete(self, model: str, prompt: str, **params: Any) -> Completion:
        call = self._inference_call("completion", model, {"prompt": prompt, **params})
        return self._parse_inference(await self._send(call), Completion)
