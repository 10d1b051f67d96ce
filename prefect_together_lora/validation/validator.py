"""One validation core for the ``validate`` task and the ``together-lora validate`` CLI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from prefect_together_lora.errors import ArchiveCorrupt, SourceError
from prefect_together_lora.redaction import redact
from prefect_together_lora.schemas import ValidationReport
from prefect_together_lora.sources.archive import AdapterFiles, ArchiveUncheckable
from prefect_together_lora.sources.base import SourceContext
from prefect_together_lora.sources.hf import HubAccessError
from prefect_together_lora.sources.ranged import UrlRefused
from prefect_together_lora.sources.resolve import (
    FormatMismatch,
    ResolvedSource,
    is_local_host,
    read_adapter_files,
)
from prefect_together_lora.sources.s3 import url_lifetime_s, url_signature_kind
from prefect_together_lora.validation.catalog import Catalog, default_catalog
from prefect_together_lora.validation.rules import (
    RULES_VERSION,
    Findings,
    ValidationOptions,
    check_base_name,
    check_config,
    check_data,
    check_layout,
    check_tensors,
    parse_config,
    summarize,
)

if TYPE_CHECKING:
    import httpx


def check_url(url: str, out: Findings, options: ValidationOptions) -> None:
    """S1 (presigned, https) and S2 (lifetime ≥ 100 min + margin; session tokens)."""
    kind = url_signature_kind(url)
    if kind is None:
        out.error(
            "S3_NOT_PRESIGNED",
            "model_source must be an S3 presigned URL (found no X-Amz-Signature).",
            "Generate one with `aws s3 presign s3://bucket/key "
            "--expires-in 21600`, or pass s3://bucket/key and let the plugin sign it.",
        )
        return
    if not url.startswith("https://"):
        if is_local_host(url):
            out.warning(
                "S3_URL_NOT_PUBLIC",
                "The presigned URL points at a local or private "
                "host Together cannot reach; this only works with a local emulator.",
            )
        else:
            out.error("S3_NOT_PRESIGNED", "The presigned URL must use https.")
    lifetime = url_lifetime_s(url)
    if lifetime is not None and lifetime < options.min_url_lifetime_s:
        out.error(
            "S3_URL_EXPIRES_SOON",
            f"Presigned URL expires in {max(0, int(lifetime // 60))}"
            " min; Together needs >= 100 min.",
            "Re-sign with a longer --expires-in (IAM-user credentials allow up to 7 days).",
        )
    if "x-amz-security-token" in url.lower():
        out.warning(
            "S3_URL_SESSION_TOKEN",
            "The URL was signed with temporary credentials "
            "(X-Amz-Security-Token): it dies with that session, possibly before "
            "X-Amz-Expires.",
            "Sign with credentials that outlive the upload.",
        )


def validate_resolved(
    resolved: ResolvedSource,
    base_model: str,
    *,
    catalog: Catalog | None = None,
    options: ValidationOptions | None = None,
    hf_token: str | SecretStr | None = None,
    hf_endpoint: str | None = None,
    http_client: httpx.Client | None = None,
    s3_client: Any | None = None,
) -> ValidationReport:
    """Check the source, read only metadata, run every rule tier. Never raises for a bad
    adapter: every problem is a coded finding in the report."""
    catalog = catalog or default_catalog()
    options = options or ValidationOptions()
    out = Findings()
    files: AdapterFiles | None = None
    if resolved.url is not None:
        check_url(resolved.url.get_secret_value(), out, options)
    for warning in resolved.warnings:
        out.warning("S3_URL_SESSION_TOKEN", warning)
    spec = catalog.find(base_model)
    if spec is None:
        out.error(
            "BASE_MODEL_UNSUPPORTED",
            f"Base model '{base_model}' is not one Together serves LoRA adapters on.",
            f"Supported: {', '.join(catalog.ids)}. Extend the "
            "catalog (--catalog) if Together added one.",
        )
    elif spec.quantization.upper() not in ("BF16", "F16", "FP16"):
        out.info(
            "BASE_MODEL_QUANTIZED",
            f"{spec.display_name} is served in "
            f"{spec.quantization}; adapters trained on BF16 weights still fit.",
        )
    if not out.has_errors:
        try:
            files = read_adapter_files(
                resolved,
                hf_token=hf_token,
                hf_endpoint=hf_endpoint,
                http_client=http_client,
                s3_client=s3_client,
                sample_bytes=options.sample_bytes if options.check_data else 0,
                deadline_s=options.read_deadline_s,
            )
        except FormatMismatch as exc:
            out.error(
                "ARCHIVE_FORMAT",
                exc.message,
                "Create the archive with `zip -r` or `tar czf` from inside the adapter folder.",
            )
        except HubAccessError as exc:
            out.error("HF_REPO_INACCESSIBLE", exc.message)
        except UrlRefused as exc:
            out.error("SOURCE_URL_REFUSED", exc.message)
        except ArchiveUncheckable as exc:
            out.error(
                "ARCHIVE_UNCHECKABLE",
                exc.message,
                "Archive only the adapter files, e.g. `tar czf adapter.tar.gz -C out "
                "adapter_config.json adapter_model.safetensors`, or upload a .zip "
                "(read by ranges, whatever else it holds).",
            )
        except ArchiveCorrupt as exc:
            out.error(
                "ARCHIVE_CORRUPT",
                f"The archive is not sound: {exc.message}.",
                "Re-create the archive with zip or tar from the adapter folder.",
            )
        except SourceError as exc:
            code = "S3_UNREACHABLE" if resolved.url is not None else "SOURCE_UNREADABLE"
            out.error(code, exc.message)
        except Exception as exc:  # never a crash: a hostile archive becomes a finding
            out.error(
                "ARCHIVE_CORRUPT",
                f"The archive could not be read ({type(exc).__name__}: {redact(str(exc))[:200]}).",
                "Re-create the archive with zip or tar from the adapter folder.",
            )
    config: dict[str, Any] | None = None
    facts: dict[str, Any] = {}
    if files is not None and not out.has_errors:
        check_layout(files, out, hub=resolved.source.is_repository)
        for note in files.notes:
            if "truncated or corrupt" in note:
                out.error(
                    "ARCHIVE_TRUNCATED",
                    f"The archive is {note}.",
                    "Together would fail to unpack it: upload the archive again, whole.",
                )
    if files is not None and not out.has_errors and spec is not None:
        config = parse_config(files, out)
        if config is not None:
            check_config(config, spec, catalog, options, out)
    if files is not None and config is not None and not out.has_errors and spec is not None:
        if files.header_error or files.header is None:
            out.error(
                "SAFETENSORS_CORRUPT",
                f"adapter_model.safetensors header invalid: {files.header_error or 'not read'}.",
                "Re-upload the file; a truncated or corrupted upload is the usual cause.",
            )
        else:
            facts = check_tensors(files.header, config, spec, catalog, options, out)
            if facts and options.check_data:
                check_data(files.header, files.data_sample, out)
            if facts:
                check_base_name(config, spec, catalog, bool(facts.get("shapes_fit")), out)
    size = files.weights_size if files is not None else None
    return ValidationReport(
        source=resolved.source.display,
        base_model=spec.id if spec else base_model,
        findings=out.items,
        adapter=summarize(config, facts, size),
        fingerprint=resolved.fingerprint,
        bytes_read=files.bytes_read if files else 0,
        requests=files.requests if files else 0,
        rules_version=RULES_VERSION,
    )


def unreadable(report: ValidationReport) -> bool:
    """True when the source itself could not be read (CLI exit code 2)."""
    from prefect_together_lora.validation.rules import UNREADABLE_CODES

    return any(f.code in UNREADABLE_CODES for f in report.findings)


def validate_source(
    source: str,
    base_model: str,
    *,
    catalog: Catalog | None = None,
    options: ValidationOptions | None = None,
    hf_token: str | SecretStr | None = None,
    hf_endpoint: str | None = None,
    s3_client: Any | None = None,
) -> ValidationReport:
    """Parse, resolve (presign S3 archives, pin Hub revisions) and validate any source form.
    A source that cannot even be resolved gives a report with one unreadable-class finding."""

    options = options or ValidationOptions()
    with SourceContext(
        s3_client=s3_client,
        hf_token=hf_token,
        hf_endpoint=hf_endpoint,
        deadline_s=options.read_deadline_s,
    ) as ctx:  # one HTTP client (one TLS setup) for resolving and reading
        return _validate_text(source, base_model, catalog, options, ctx)


def _validate_text(
    source: str,
    base_model: str,
    catalog: Catalog | None,
    options: ValidationOptions,
    ctx: SourceContext,
) -> ValidationReport:
    from prefect_together_lora.errors import PresignError
    from prefect_together_lora.sources import AdapterSource
    from prefect_together_lora.sources.ranged import check_fetchable

    findings = Findings()
    try:
        parsed = AdapterSource.parse(source)
        given = parsed.given_url()
        if given is not None:
            # a URL that points somewhere forbidden or fails the presigned-URL checks is
            # refused before any request
            check_fetchable(given.get_secret_value())
            check_url(given.get_secret_value(), findings, options)
            if findings.has_errors:
                return _unresolved(source, base_model, findings)
        resolved = parsed.resolve(ctx)
    except (SourceError, PresignError) as exc:
        if isinstance(exc, HubAccessError):
            code = "HF_REPO_INACCESSIBLE"
        elif isinstance(exc, UrlRefused):
            code = "SOURCE_URL_REFUSED"
        elif source.strip().startswith(("s3://", "https://", "http://")):
            code = "S3_UNREACHABLE"
        else:
            code = "SOURCE_UNREADABLE"
        findings = Findings()
        findings.error(code, exc.message)
        return _unresolved(source, base_model, findings)
    return validate_resolved(
        resolved,
        base_model,
        catalog=catalog,
        options=options,
        hf_token=ctx.hf_token,
        hf_endpoint=ctx.hf_endpoint,
        http_client=ctx.http() if parsed.given_url() or resolved.url else None,
        s3_client=ctx.s3_client,
    )


def _unresolved(source: str, base_model: str, findings: Findings) -> ValidationReport:
    from prefect_together_lora.redaction import strip_query

    return ValidationReport(
        source=strip_query(source.strip()),
        base_model=base_model,
        findings=findings.items,
        fingerprint="",
        rules_version=RULES_VERSION,
    )
