"""Secrets never survive redact(): URL queries, HF tokens, bearer tokens, AWS key ids."""

from __future__ import annotations

from pydantic import SecretStr

from prefect_together_lora.redaction import redact, strip_query


def test_redact_every_kind_of_secret() -> None:
    text = (
        "GET https://b.s3.amazonaws.com/k.zip?X-Amz-Signature=SIGNATURE0&X-Amz-Expires=9 "
        "with Authorization: Bearer sk-live-KEY9 and hf_"
        + "a" * 34
        + " for AKIA"
        + "A" * 16
        + " and https://old.s3.amazonaws.com/k.zip?Signature=V2SIG&Expires=1 "
        "and the key my-api-key-123"
    )
    clean = redact(text, [SecretStr("my-api-key-123")])
    for secret in ("SIGNATURE0", "sk-live-KEY9", "a" * 34, "A" * 16, "V2SIG", "my-api-key-123"):
        assert secret not in clean, secret
    assert "https://b.s3.amazonaws.com/k.zip?<redacted>" in clean
    assert "https://plain.example/no-query" in redact("see https://plain.example/no-query")


def test_strip_query() -> None:
    assert (
        strip_query("https://user:pw@h.example/a/b.zip?sig=1#frag") == "https://h.example/a/b.zip"
    )
    assert strip_query("s3://bucket/key.zip") == "s3://bucket/key.zip"
    assert strip_query("relative/path?x=1") == "relative/path"
