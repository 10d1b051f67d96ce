"""Parsing every accepted source form, and clear errors for the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefect_together_lora.errors import SourceError
from prefect_together_lora.sources import (
    AdapterSource,
    HubSource,
    LocalArchiveSource,
    LocalFolderSource,
    S3ArchiveSource,
    S3FolderSource,
    UrlSource,
)
from prefect_together_lora.testing.adapters import write_adapter
from tests.helpers import BASE_8B


@pytest.mark.parametrize(
    ("text", "kind", "fields"),
    [
        (
            "s3://bucket-a/runs/7/adapter.zip",
            S3ArchiveSource,
            {"bucket": "bucket-a", "key": "runs/7/adapter.zip"},
        ),
        ("s3://bucket-a/a.tar.gz", S3ArchiveSource, {"key": "a.tar.gz"}),
        ("s3://bucket-a/a.tgz", S3ArchiveSource, {"key": "a.tgz"}),
        ("s3://bucket-a/runs/7/", S3FolderSource, {"prefix": "runs/7/"}),
        ("s3://bucket-a/runs/7", S3FolderSource, {"prefix": "runs/7/"}),
        (
            "hf://acme/support-lora",
            HubSource,
            {"repo_id": "acme/support-lora", "revision": None},
        ),
        ("hf://acme/support-lora@v2", HubSource, {"revision": "v2"}),
        (
            "https://huggingface.co/acme/support-lora",
            HubSource,
            {"repo_id": "acme/support-lora"},
        ),
        (
            "https://huggingface.co/acme/support-lora/tree/abc123",
            HubSource,
            {"revision": "abc123"},
        ),
    ],
)
def test_accepted_forms(text, kind, fields) -> None:
    source = AdapterSource.parse(text)
    assert type(source) is kind
    for name, value in fields.items():
        assert getattr(source, name) == value


def test_presigned_url_is_kept_secret() -> None:
    url = "https://b.s3.amazonaws.com/a.zip?X-Amz-Signature=FAKEsig0123456789&X-Amz-Expires=60"
    source = AdapterSource.parse(url)
    assert isinstance(source, UrlSource) and source.archive_format() == "zip"
    assert "FAKEsig" not in source.display and "FAKEsig" not in repr(source)
    assert "FAKEsig" not in source.model_dump_json()


def test_local_folder_and_archive(tmp_path: Path) -> None:
    (tmp_path / "a.zip").write_bytes(b"PK")
    assert isinstance(AdapterSource.parse(str(tmp_path)), LocalFolderSource)
    assert isinstance(AdapterSource.parse(f"file://{tmp_path}/a.zip"), LocalArchiveSource)
    (tmp_path / "w.safetensors").write_bytes(b"x")
    with pytest.raises(SourceError, match="not an archive"):
        AdapterSource.parse(str(tmp_path / "w.safetensors"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("ftp://host/adapter.zip", "Unrecognised"),
        ("gs://bucket/adapter.zip", "Unrecognised"),
        ("s3://Bad_Bucket/a.zip", "no valid bucket"),
        ("hf://just-a-name", "not a Hub repo"),
        ("https://example.com/adapter.zip", "not a presigned one"),
        ("/definitely/not/here", "does not exist"),
    ],
)
def test_unknown_forms_list_the_accepted_ones(text, message) -> None:
    with pytest.raises(SourceError, match=message) as info:
        AdapterSource.parse(text)
    if message not in ("not an archive",):
        assert "s3://bucket/path/adapter.zip" in str(info.value) or message in (
            "no valid bucket",
            "not a Hub repo",
        )


def test_local_hub_answers_unknown_api_kinds_with_404(local_hub) -> None:
    """An unknown /api/<kind> (huggingface_hub asks e.g. /api/agent-harnesses and caches the
    answer for a day in the user's HF cache) must be a 404, never a listing."""
    import httpx

    write_adapter(local_hub.repo("acme/known"), BASE_8B)
    assert httpx.get(f"{local_hub.endpoint}/api/agent-harnesses").status_code == 404
    assert httpx.get(f"{local_hub.endpoint}/api/agent-harnesses/acme/known").status_code == 404
    listing = httpx.get(f"{local_hub.endpoint}/api/models", params={"author": "acme"})
    assert listing.status_code == 200 and [m["id"] for m in listing.json()] == ["acme/known"]


class _Hostile:
    """A loopback HTTP server whose bodies never end (ignoring Range) or trickle in."""

    def __enter__(self) -> str:
        import http.server
        import threading
        import time

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                try:
                    if self.path.split("?")[0] == "/endless":  # ignores Range, endless
                        self.send_response(200)
                        self.send_header("Connection", "close")
                        self.end_headers()
                        while True:
                            self.wfile.write(b"\0" * 65536)
                    else:  # a proper 206 that drips a byte at a time
                        self.send_response(206)
                        self.send_header("Content-Range", "bytes 0-99/100")
                        self.send_header("Content-Length", "100")
                        self.end_headers()
                        for _ in range(100):
                            self.wfile.write(b"x")
                            self.wfile.flush()
                            time.sleep(0.1)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_endless_or_dripping_sources_neither_fill_memory_nor_hang() -> None:
    import time

    from prefect_together_lora.sources.ranged import HttpRangeReader, ReadBudgetExceeded

    with _Hostile() as base:
        started = time.monotonic()
        with pytest.raises(ReadBudgetExceeded, match="ignores Range"):
            HttpRangeReader(f"{base}/endless?X-Amz-Signature=abc", max_bytes=1 << 20)
        with pytest.raises(SourceError, match="did not finish") as slow:
            HttpRangeReader(f"{base}/drip?X-Amz-Signature=abc", deadline_s=0.5, start_at_head=True)
        assert time.monotonic() - started < 10
        assert "abc" not in str(slow.value)  # the signature stays out of the message
