"""S3: clients, presigned GET URLs with Together's lifetime rule, and object listing.

Any S3-compatible endpoint works through ``AWS_ENDPOINT_URL`` (boto3 reads it itself); the
credentials come from boto3's usual chain or from a Prefect AWS credentials block.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import BaseModel, Field, SecretStr

from prefect_together_lora.errors import PresignError, SourceError

MIN_LIFETIME_S = 100 * 60  # Together: the URL must live at least 100 minutes
MAX_SIGV4_LIFETIME_S = 7 * 24 * 3600
DEFAULT_LIFETIME_S = 6 * 3600
SESSION_MARGIN_S = 5 * 60


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def split_s3_uri(
    uri: str, what: str = "The S3 location", form: str = "s3://bucket/path"
) -> tuple[str, str]:
    """(bucket, key or prefix) of ``s3://bucket/key``; a malformed one raises SourceError."""
    if not uri.startswith("s3://"):
        raise SourceError(f"{what} must look like {form} (got {uri!r}).")
    bucket, _, key = uri[5:].partition("/")
    if not _BUCKET.fullmatch(bucket):
        raise SourceError(f"{what} {uri!r} has no valid bucket name.")
    return bucket, unquote(key)


def make_s3_client(session: Any | None = None, **client_kwargs: Any) -> Any:
    """An S3 client that signs with SigV4 (SigV2 URLs are refused by newer regions)."""
    import boto3
    from botocore.config import Config

    config = Config(signature_version="s3v4", retries={"max_attempts": 5, "mode": "standard"})
    factory = session or boto3.session.Session()
    return factory.client("s3", config=config, **client_kwargs)


class PresignedUrl(BaseModel):
    """A presigned GET URL: the URL is a secret; the rest is safe to log and persist."""

    url: SecretStr
    bucket: str
    key: str
    expires_at: datetime
    lifetime_s: int
    warnings: list[str] = Field(default_factory=list)


def presign_get(
    bucket: str,
    key: str,
    *,
    expires_s: int = DEFAULT_LIFETIME_S,
    client: Any | None = None,
    min_lifetime_s: int = MIN_LIFETIME_S,
    now: float | None = None,
) -> PresignedUrl:
    """A SigV4 presigned GET, refusing lifetimes Together would reject and warning when the
    signing credentials are temporary and would die before the URL does."""
    if expires_s < min_lifetime_s:
        raise PresignError(
            f"A presigned URL valid for {expires_s // 60} min is too short: Together needs at "
            f"least {min_lifetime_s // 60} min. Use expires_s >= {min_lifetime_s} "
            f"(default {DEFAULT_LIFETIME_S})."
        )
    if expires_s > MAX_SIGV4_LIFETIME_S:
        raise PresignError(
            f"SigV4 presigned URLs live at most 7 days ({MAX_SIGV4_LIFETIME_S}s); "
            f"expires_s={expires_s} is too long."
        )
    client = client or make_s3_client()
    warnings = _session_warnings(client, expires_s, now)
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_s
    )
    signed = {k.lower() for k in parse_qs(urlsplit(url).query)}
    if "x-amz-signature" not in signed:
        raise PresignError(
            "boto3 produced a URL without a SigV4 signature; check the client's "
            "signature_version (must be s3v4)."
        )
    issued = time.time() if now is None else now
    return PresignedUrl(
        url=SecretStr(url),
        bucket=bucket,
        key=key,
        expires_at=datetime.fromtimestamp(issued + expires_s, timezone.utc),
        lifetime_s=expires_s,
        warnings=warnings,
    )


def _session_warnings(client: Any, expires_s: int, now: float | None) -> list[str]:
    signer = getattr(client, "_request_signer", None)
    credentials = getattr(signer, "_credentials", None)  # the credentials that will sign
    if credentials is None:
        raise PresignError(
            "No AWS credentials found to sign the URL. Set AWS_ACCESS_KEY_ID/"
            "AWS_SECRET_ACCESS_KEY, a profile, or pass an AWS credentials block."
        )
    frozen = credentials.get_frozen_credentials()
    if not frozen.token:
        return []
    expiry = getattr(credentials, "_expiry_time", None)
    url_end = datetime.fromtimestamp(
        (time.time() if now is None else now) + expires_s, timezone.utc
    )
    if expiry is not None and expiry - timedelta(seconds=SESSION_MARGIN_S) < url_end:
        return [
            f"The signing credentials are temporary (session token) and expire at "
            f"{expiry:%Y-%m-%d %H:%M} UTC, before the URL's {url_end:%H:%M} UTC: the URL "
            "will stop working then. Sign with longer-lived credentials."
        ]
    return [
        "The signing credentials carry a session token: the URL dies when that session "
        "ends, possibly before its X-Amz-Expires. Prefer IAM-user or role credentials that "
        "outlive the upload."
    ]


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    version_id: str | None

    @property
    def fingerprint(self) -> str:
        return f"s3-etag:{self.etag.strip(chr(34))}-{self.size}"


def head_object(client: Any, bucket: str, key: str) -> ObjectInfo:
    from botocore.exceptions import ClientError

    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchKey", "NotFound"):
            raise SourceError(
                f"s3://{bucket}/{key} does not exist. Check the bucket and key."
            ) from None
        if code in ("403", "AccessDenied"):
            raise SourceError(
                f"Access denied to s3://{bucket}/{key}: the credentials need s3:GetObject on it."
            ) from None
        raise SourceError(f"Cannot read s3://{bucket}/{key}: {code or exc}") from None
    return ObjectInfo(key, int(head["ContentLength"]), head.get("ETag", ""), head.get("VersionId"))


def list_objects(client: Any, bucket: str, prefix: str) -> list[ObjectInfo]:
    """Every object under ``prefix`` (all pages)."""
    from botocore.exceptions import ClientError

    objects: list[ObjectInfo] = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                objects.append(
                    ObjectInfo(item["Key"], int(item["Size"]), item.get("ETag", ""), None)
                )
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise SourceError(f"Cannot list s3://{bucket}/{prefix}: {code or exc}") from None
    return objects


def url_lifetime_s(url: str, now: float | None = None) -> float | None:
    """Seconds a SigV4/SigV2 presigned URL has left (None when it is not presigned)."""
    query = {k.lower(): v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    current = time.time() if now is None else now
    if "x-amz-date" in query and "x-amz-expires" in query:
        try:
            start = datetime.strptime(query["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(
                tzinfo=timezone.utc
            )
            return start.timestamp() + float(query["x-amz-expires"]) - current
        except ValueError:
            return None
    if "expires" in query and "signature" in query:
        try:
            return float(query["expires"]) - current
        except ValueError:
            return None
    return None


def url_signature_kind(url: str) -> str | None:
    """``sigv4``, ``sigv2`` or None."""
    query = {k.lower() for k in parse_qs(urlsplit(url).query)}
    if "x-amz-signature" in query:
        return "sigv4"
    if "signature" in query and "expires" in query:
        return "sigv2"
    return None
