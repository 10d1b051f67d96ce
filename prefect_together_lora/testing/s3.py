"""A real local S3 server (moto in server mode) for tests and the demo."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

TEST_REGION = "us-east-1"
# moto accepts any credentials; these are obviously fake and never real secrets.
TEST_ACCESS_KEY = "testing-access-key"
TEST_SECRET_KEY = "testing-secret-key"


_EXPIRED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Request has expired</Message></Error>"
)
_BAD_METHOD = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SignatureDoesNotMatch'
    b"</Code><Message>The request signature we calculated does not match the signature "
    b"you provided.</Message></Error>"
)


class StrictPresignedUrls:
    """WSGI middleware giving moto the presigned-URL rules real S3 enforces and moto does not:
    a URL presigned for GET refuses HEAD (403, the method is signed) and an expired URL answers
    403 "Request has expired". Code that passes here does not lean on moto's leniency."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        from urllib.parse import parse_qs

        query = {k.lower(): v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        if "x-amz-signature" in query or "signature" in query:
            if environ["REQUEST_METHOD"] == "HEAD":
                start_response("403 Forbidden", [("Content-Type", "application/xml")])
                return [b""]
            if _expired(query):
                start_response(
                    "403 Forbidden",
                    [("Content-Type", "application/xml"), ("Content-Length", str(len(_EXPIRED)))],
                )
                return [_EXPIRED]
        return self.app(environ, start_response)


def _expired(query: dict[str, str]) -> bool:
    import time
    from datetime import datetime, timezone

    if "x-amz-date" in query and "x-amz-expires" in query:
        start = datetime.strptime(query["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(
            tzinfo=timezone.utc
        )
        return time.time() > start.timestamp() + float(query["x-amz-expires"])
    if "expires" in query:
        return time.time() > float(query["expires"])
    return False


@contextlib.contextmanager
def run_s3_server(host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Start moto's S3-compatible server on loopback, with real S3's presigned-URL rules;
    yields its endpoint URL (for ``AWS_ENDPOINT_URL``). Everything lives in memory."""
    import logging
    import threading

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = StrictPresignedUrls(DomainDispatcherApplication(create_backend_app))
    server = make_server(host, port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="local-s3")
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def s3_env(endpoint: str) -> dict[str, str]:
    """Environment that points boto3 at the local server with throwaway credentials."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": TEST_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": TEST_SECRET_KEY,
        "AWS_DEFAULT_REGION": TEST_REGION,
    }


def s3_client(endpoint: str) -> Any:
    import boto3

    env = s3_env(endpoint)
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=TEST_REGION,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


@contextlib.contextmanager
def patched_environ(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def main(argv: list[str] | None = None) -> int:
    """``together-lora local-s3``: serve a local S3 until interrupted (moto needs the ``dev``
    extra: ``pip install 'prefect-together-lora[dev]'``)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="together-lora local-s3",
        description="Serve a local S3 (moto) with real S3's presigned-URL rules (HEAD on a GET "
        "URL and expired URLs answer 403). State lives in memory.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=9000, help="port to listen on")
    parser.add_argument(
        "--bucket", action="append", default=[], help="bucket to create at start (repeatable)"
    )
    args = parser.parse_args(argv)
    with run_s3_server(args.host, args.port) as endpoint:
        client = s3_client(endpoint)
        for bucket in args.bucket:
            client.create_bucket(Bucket=bucket)
        print(f"Local S3 on {endpoint}; point boto3 at it with:", flush=True)
        for key, value in s3_env(endpoint).items():
            print(f"  export {key}={value}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0
