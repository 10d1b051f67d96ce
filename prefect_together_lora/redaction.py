"""Keep secrets out of messages, logs and reprs.

A presigned URL is a bearer credential (its query string holds the signature), an API key and an
HF token are secrets too. Every message we build about a source or a request goes through
:func:`redact` so that an exception text, a log line or an artifact can be shown to anyone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr

_SURROGATE = re.compile("[\ud800-\udfff]")
_URL = re.compile(r"https?://[^\s'\"<>]+")
_HF_TOKEN = re.compile(r"\bhf_[A-Za-z0-9]{8,}\b")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\"]+")
_AWS_KEY_ID = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")


def strip_query(url: str) -> str:
    """Return ``url`` without its query string and fragment (where a signature lives)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if not parts.scheme:
        return url.split("?", 1)[0]
    return urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path, "", ""))


def redact(text: str, secrets: Iterable[str | SecretStr | None] = ()) -> str:
    """Mask known secrets, URL query strings, bearer tokens and token-shaped strings in ``text``
    (which also leaves as valid UTF-8: a lone surrogate from hostile input becomes U+FFFD)."""
    text = _SURROGATE.sub("\ufffd", text)
    for secret in secrets:
        value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    text = _URL.sub(lambda m: _redact_url(m.group(0)), text)
    text = _HF_TOKEN.sub("hf_***", text)
    text = _BEARER.sub(r"\1***", text)
    return _AWS_KEY_ID.sub(r"\1***", text)


def _redact_url(url: str) -> str:
    if "?" not in url and "#" not in url:
        return url
    return strip_query(url) + "?<redacted>"


def secret_value(value: str | SecretStr | None) -> str | None:
    """Unwrap a secret at the last moment (the HTTP call); plain strings pass through."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return value
