"""``together-lora``: the command line over the same plain functions the Prefect tasks use, so
``together-lora validate`` and the ``validate`` task cannot disagree."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

EXIT_VALID, EXIT_INVALID, EXIT_UNREADABLE, EXIT_TOGETHER = 0, 1, 2, 3
EXIT_CODES = """exit codes: 0 = valid / published; 1 = the adapter is invalid (or failed its
evaluation gate); 2 = the source could not be read, or credentials, network or configuration
are wrong (nothing was sent); 3 = Together refused or failed the import, serving or calls."""


def exit_code_for(error: BaseException) -> int:
    """The documented exit code of a failure class."""
    from prefect_together_lora import errors

    if isinstance(error, (errors.AdapterInvalid, errors.EvalBelowThreshold)):
        return EXIT_INVALID
    if isinstance(
        error,
        (
            errors.TogetherConnectionError,
            errors.AuthenticationError,
            errors.SourceError,
            errors.PresignError,
        ),
    ):
        return EXIT_UNREADABLE
    if isinstance(
        error,
        (
            errors.TogetherError,
            errors.JobFailed,
            errors.JobTimedOut,
            errors.ServingFailed,
            errors.SmokeTestFailed,
        ),
    ):
        return EXIT_TOGETHER
    return EXIT_UNREADABLE  # configuration, AWS/Hub access, anything that stopped us early


def error_json(error: BaseException) -> dict[str, str]:
    from prefect_together_lora.redaction import redact

    return {"type": type(error).__name__, "message": redact(str(error))}


def validate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="together-lora validate",
        description="Validate a LoRA adapter for Together, reading only metadata. Exit 0 = "
        "valid (warnings allowed), 1 = invalid, 2 = the source could not be read.",
        epilog=EXIT_CODES,
    )
    parser.add_argument(
        "source",
        help="local folder/archive, s3://..., hf://org/repo[@rev], a Hub URL or a presigned URL",
    )
    parser.add_argument(
        "--base-model", required=True, help="base model the adapter was trained for"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--max-rank", type=int, default=None, help="maximum LoRA rank (64)")
    parser.add_argument(
        "--check-data",
        action="store_true",
        help="also sample lora_B values (all-zero / NaN); reads up to 1 MiB",
    )
    parser.add_argument(
        "--catalog", default=None, help="JSON file extending the base-model catalog"
    )
    parser.add_argument(
        "--replace-catalog",
        action="store_true",
        help="use --catalog instead of the built-in catalog, not on top of it",
    )
    return parser


def _validate(argv: list[str]) -> int:
    args = validate_parser().parse_args(argv)

    from prefect_together_lora.validation.catalog import load_catalog
    from prefect_together_lora.validation.rules import ValidationOptions
    from prefect_together_lora.validation.validator import unreadable, validate_source

    try:
        catalog = load_catalog(args.catalog, replace=args.replace_catalog)
    except (OSError, ValueError) as exc:
        print(f"together-lora: cannot load catalog {args.catalog}: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    hf_token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    try:
        report = validate_source(
            args.source,
            args.base_model,
            catalog=catalog,
            options=ValidationOptions(max_rank=args.max_rank, check_data=args.check_data),
            hf_token=hf_token,
        )
    except Exception as exc:  # credentials, network, a source that cannot be read
        error = error_json(exc)
        print(f"together-lora: cannot read {args.source}: {error['message']}", file=sys.stderr)
        if args.json:
            print(
                json.dumps(
                    {
                        "valid": False,
                        "source": args.source,
                        "base_model": args.base_model,
                        "findings": [],
                        "adapter": None,
                        "bytes_read": 0,
                        "requests": 0,
                        "fingerprint": None,
                        "error": error,
                    }
                )
            )
        return EXIT_UNREADABLE
    code = EXIT_UNREADABLE if unreadable(report) else (EXIT_VALID if report.valid else EXIT_INVALID)
    if code == EXIT_UNREADABLE:
        for finding in report.errors:
            print(f"together-lora: {finding.code}: {finding.message}", file=sys.stderr)
    if args.json:
        print(json.dumps(validation_json(report)))
    else:
        print(human_report(report))
    return code


def validation_json(report: Any) -> dict[str, Any]:
    """The CLI's JSON contract (exactly these keys)."""
    adapter = report.adapter
    return {
        "valid": report.valid,
        "source": report.source,
        "base_model": report.base_model,
        "findings": [
            {"code": f.code, "severity": f.severity, "message": f.message, "hint": f.hint}
            for f in report.findings
        ],
        "adapter": {
            "rank": adapter.rank,
            "alpha": adapter.alpha,
            "target_modules": adapter.target_modules,
            "layers": adapter.layers,
            "dtype": adapter.dtype,
            "parameters": adapter.parameters,
            "size_bytes": adapter.size_bytes,
        },
        "bytes_read": report.bytes_read,
        "requests": report.requests,
        "fingerprint": report.fingerprint,
    }


def human_report(report: Any) -> str:
    adapter = report.adapter
    lines = [f"{'VALID' if report.valid else 'INVALID'}: {report.source} on {report.base_model}"]
    if adapter.rank is not None:
        lines.append(
            f"  rank {adapter.rank}, alpha {adapter.alpha}, "
            f"{', '.join(adapter.target_modules)}, {adapter.layers} layers, "
            f"{adapter.dtype}, {adapter.parameters or 0:,} parameters"
        )
    for f in report.findings:
        lines.append(f"  {f.severity.upper():7} {f.code}: {f.message}")
        if f.hint:
            lines.append(f"          hint: {f.hint}")
    lines.append(
        f"  read {report.bytes_read:,} bytes in {report.requests} request(s); "
        f"fingerprint {report.fingerprint or '-'}"
    )
    return "\n".join(lines)


def publish_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="together-lora publish",
        description="Run the publish_adapter flow: validate, import, serve, smoke-test, "
        "evaluate, tear down. Credentials: TOGETHER_API_KEY (TOGETHER_BASE_URL, "
        "TOGETHER_PROJECT_ID optional), AWS credentials for S3 sources.",
        epilog=EXIT_CODES,
    )
    parser.add_argument("source", help="local folder/archive, s3://..., hf://org/repo[@rev], URL")
    parser.add_argument("--base-model", required=True, help="base model (name, or v2 ml_ id)")
    parser.add_argument(
        "--model-name", "--name", dest="name", required=True, help="model name on Together"
    )
    parser.add_argument(
        "--api", choices=["v2", "v1"], default="v2", help="Together API (default: v2)"
    )
    parser.add_argument(
        "--serving",
        choices=["deploy", "attach", "none"],
        default="deploy",
        help="deploy: new endpoint + deployment from the base's LoRA profile; attach: onto "
        "--endpoint; none: stop once Together validated the upload",
    )
    parser.add_argument("--endpoint", default=None, help="attach: endpoint id or name")
    parser.add_argument("--deployment", default=None, help="attach: deployment id or name")
    parser.add_argument(
        "--merge", action="store_true", help="deploy: merge the adapter into its own deployment"
    )
    parser.add_argument(
        "--force", action="store_true", help="attach: evict the oldest adapter at capacity"
    )
    parser.add_argument(
        "--teardown",
        choices=["keep", "scale-to-zero", "delete"],
        default="keep",
        help="after success: keep, scale-to-zero or delete what the run created (on failure "
        "it is always deleted)",
    )
    parser.add_argument(
        "--eval-set",
        "--eval",
        dest="eval",
        default=None,
        help="JSONL eval set (path, s3://, hf://)",
    )
    parser.add_argument(
        "--min-score", type=float, default=None, help="gate: adapter mean score at least this"
    )
    parser.add_argument(
        "--min-delta-over-base",
        "--min-improvement",
        dest="min_improvement",
        type=float,
        default=None,
        help="gate: adapter mean minus base mean at least this",
    )
    parser.add_argument(
        "--staging-uri",
        default=None,
        help="s3://bucket/prefix for local adapters (default: TOGETHER_LORA_STAGING_URI)",
    )
    parser.add_argument(
        "--name-suffix",
        choices=["none", "auto"],
        default="none",
        help="auto: append a short content hash to --name (one name per adapter content)",
    )
    parser.add_argument("--description", default=None, help="description stored on Together")
    parser.add_argument("--no-smoke", action="store_true", help="skip the smoke test")
    parser.add_argument(
        "--max-wait-s",
        "--max-wait",
        dest="max_wait",
        type=float,
        default=3600.0,
        help="seconds to wait for Together's import",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object: the result, or the error and what exists on Together",
    )
    return parser


def _publish(argv: list[str]) -> int:
    args = publish_parser().parse_args(argv)
    if not os.environ.get("PREFECT_API_URL"):
        # the embedded server starts with this command: give it the time a loaded machine needs
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

    from prefect_together_lora.flows import publish_adapter
    from prefect_together_lora.options import EvalOptions, JobOptions, SmokeOptions
    from prefect_together_lora.together.backend import ServingOptions

    state = publish_adapter(
        source=args.source,
        base_model=args.base_model,
        model_name=args.name,
        api=args.api,
        serving=ServingOptions(
            mode=args.serving,
            endpoint=args.endpoint,
            deployment=args.deployment,
            merge=args.merge,
            force=args.force,
        ),
        teardown=args.teardown,
        name_suffix=args.name_suffix,
        description=args.description,
        staging_uri=args.staging_uri,
        job=JobOptions(max_wait_s=args.max_wait),
        smoke=SmokeOptions(enabled=not args.no_smoke),
        evaluation=EvalOptions(
            eval_set=args.eval,
            min_score=args.min_score,
            min_improvement_over_base=args.min_improvement,
        ),
        return_state=True,
    )
    run_url = _run_url(state)
    if state.is_completed():
        result = state.result()
        if args.json:
            print(
                json.dumps(
                    {"exit_code": EXIT_VALID, "run_url": run_url, **result.model_dump(mode="json")}
                )
            )
        else:
            call = (
                f"; call '{result.inference_model}' at {result.serving.inference_url}"
                if result.inference_model and result.serving
                else ""
            )
            print(f"{result.verdict}: {result.model_name} ({result.api} {result.job_id}){call}")
            for r in result.billing:
                print(f"  billing: {r.kind} {r.name} ({r.id})")
        return EXIT_VALID
    error = state.result(raise_on_failure=False)
    if not isinstance(error, BaseException):
        error = RuntimeError(state.message or "the publish flow failed")
    code = exit_code_for(error)
    partial = getattr(error, "publish_result", None)
    if args.json:
        body: dict[str, Any] = {
            "verdict": "failed",
            "exit_code": code,
            "run_url": run_url,
            "error": error_json(error),
        }
        if partial is not None:
            body.update(partial.model_dump(mode="json"))
            body["error"] = error_json(error)
        print(json.dumps(body))
    print(f"together-lora: publish failed: {error_json(error)['message']}", file=sys.stderr)
    if partial is not None and partial.model_name:
        live = ", ".join(f"{r.kind} {r.name or r.id}" for r in partial.billing) or "nothing"
        print(
            f"together-lora: on Together: model {partial.model_name} "
            f"({partial.model_id or partial.job_id}); billing: {live}",
            file=sys.stderr,
        )
    return code


def _run_url(state: Any) -> str | None:
    """The run's page in the Prefect UI, when a UI is configured (not the embedded server)."""
    from prefect.settings import PREFECT_UI_URL

    ui = PREFECT_UI_URL.value()
    run_id = getattr(state.state_details, "flow_run_id", None)
    return f"{ui.rstrip('/')}/runs/flow-run/{run_id}" if ui and run_id else None


def _emulator(argv: list[str]) -> int:
    from prefect_together_lora.testing.emulator.server import main as serve

    return serve(argv)


def _local_s3(argv: list[str]) -> int:
    from prefect_together_lora.testing.s3 import main as serve

    return serve(argv)


COMMANDS = {
    "validate": _validate,
    "publish": _publish,
    "emulator": _emulator,
    "local-s3": _local_s3,
}
USAGE = (
    """usage: together-lora <command> [options]

commands:
  validate   check an adapter for Together, reading only metadata (exit 0/1/2)
  publish    run the publish_adapter flow (validate, upload, wait, smoke, evaluate)
  emulator   serve a local Together API emulator (v1, v2, inference; for offline tests)
  local-s3   serve a local S3 (moto) with real presigned-URL rules (for offline tests)

options: -h/--help, -V/--version; `together-lora <command> --help` for each command.
"""
    + EXIT_CODES
    + "\n"
)


class _WithoutHttpxCommandLine:
    """httpx imports its own command-line client (and with it rich and click) whenever they
    are installed, as they are beside Prefect: ~50 ms of every ``together-lora`` start for a
    module this process never uses. Refused here, in the CLI's own process only."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "httpx._main":
            raise ImportError("httpx's command line is not used by together-lora")


def main(argv: list[str] | None = None) -> int:
    if "httpx" not in sys.modules:
        sys.meta_path.insert(0, _WithoutHttpxCommandLine())
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if args and args[0] in ("-V", "--version"):
        from prefect_together_lora._version import __version__

        print(f"together-lora {__version__}")
        return 0
    if not args or args[0] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        return 2
    return COMMANDS[args[0]](args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
