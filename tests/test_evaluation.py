"""Evaluation: eval sets, every metric, the paired comparison and its interval, every gate
criterion, resuming without asking twice, and a 429 storm that loses no row."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from prefect_together_lora.client import AsyncTogetherClient
from prefect_together_lora.evaluation.dataset import EvalRow, EvalSetError, load_eval_set
from prefect_together_lora.evaluation.judge import parse_judge_score
from prefect_together_lora.evaluation.metrics import METRICS, get_metric, register_metric
from prefect_together_lora.evaluation.runner import run_eval
from prefect_together_lora.evaluation.stats import bootstrap_mean_ci, percentile
from prefect_together_lora.evaluation.store import LocalAnswerStore, MemoryAnswerStore
from prefect_together_lora.options import EvalOptions
from prefect_together_lora.retry import RETRYABLE_STATUS, RetryPolicy
from tests.helpers import BASE_8B

# v1 suites run as an account that still has serverless LoRA inference (legacy setting)
pytestmark = pytest.mark.together_emulator(dedicated_only=False)

ADAPTER = "devuser/eval-lora"


def row(**kw) -> EvalRow:
    return EvalRow.model_validate({"id": "r", "prompt": "q", "expected": "x", **kw})


# --- eval sets ---------------------------------------------------------------------------------


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows))
    return path


def test_eval_set_forms_and_errors(tmp_path: Path) -> None:
    rows = load_eval_set(
        str(
            write_jsonl(
                tmp_path / "e.jsonl",
                [
                    {"prompt": "a", "expected": "b", "tags": "t"},
                    {
                        "messages": [{"role": "user", "content": "c"}],
                        "expected": ["d", "e"],
                        "id": 7,
                    },
                    "",
                ],
            )
        )
    )
    assert [r.id for r in rows] == ["row-1", "7"] and rows[1].expected == ["d", "e"]
    assert rows[0].tags == ["t"] and rows[1].prompt_text == "c"
    for bad, message in [
        ([{"prompt": "a"}], "line 1: field 'expected'"),
        ([{"prompt": "a", "expected": "b"}, {"expected": "b"}], "line 2: .*prompt.*messages"),
        (["{not json"], "line 1: not valid JSON"),
        ([{"prompt": "a", "messages": [], "expected": "b"}], "exactly one"),
        (
            [{"id": 1, "prompt": "a", "expected": "b"}, {"id": 1, "prompt": "a", "expected": "b"}],
            "duplicate id",
        ),
        ([""], "empty"),
    ]:
        with pytest.raises(EvalSetError, match=message):
            load_eval_set(str(write_jsonl(tmp_path / "bad.jsonl", bad)))
    with pytest.raises(EvalSetError, match="does not exist"):
        load_eval_set(str(tmp_path / "missing.jsonl"))


def test_eval_set_from_s3_and_hub(s3_bucket, local_hub, monkeypatch, tmp_path: Path) -> None:
    content = json.dumps({"prompt": "p", "expected": "e"})
    s3_bucket.client.put_object(Bucket=s3_bucket.bucket, Key="evals/e.jsonl", Body=content.encode())
    assert load_eval_set(f"s3://{s3_bucket.bucket}/evals/e.jsonl")[0].prompt == "p"
    with pytest.raises(EvalSetError, match="NoSuchKey"):
        load_eval_set(f"s3://{s3_bucket.bucket}/evals/none.jsonl")
    dataset = local_hub.root / "datasets" / "acme" / "evals"
    dataset.mkdir(parents=True)
    (dataset / "support.jsonl").write_text(content)
    rows = load_eval_set("hf://datasets/acme/evals/support.jsonl", hf_endpoint=local_hub.endpoint)
    assert rows[0].expected == ["e"]


# --- metrics -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "output", "expected", "score"),
    [
        ("exact_match", "  The Paris! ", ["paris"], 1.0),
        ("exact_match", "Paris, France", ["paris"], 0.0),
        ("contains", "It is Paris, France.", ["paris"], 1.0),
        ("contains", "Lyon", ["paris", "nice"], 0.0),
        ("regex", "order #12345 shipped", [r"#\d{5}\b"], 1.0),
        ("regex", "no order", [r"#\d{5}"], 0.0),
        ("json_valid", '```json\n{"a": 1}\n```', ["-"], 1.0),
        ("json_valid", "{a: 1}", ["-"], 0.0),
        (
            "json_schema",
            '{"name": "x", "n": 2}',
            [
                json.dumps(
                    {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"n": {"type": "integer"}},
                    }
                )
            ],
            1.0,
        ),
        (
            "json_schema",
            '{"n": "two"}',
            [json.dumps({"type": "object", "required": ["name"]})],
            0.0,
        ),
        ("token_f1", "the cat sat", ["cat sat down"], 0.8),
        ("token_f1", "dog", ["cat"], 0.0),
        ("rouge_l", "open settings then security", ["open settings and then security"], 8 / 9),
        ("rouge_l", "", ["x"], 0.0),
    ],
)
def test_metrics(metric, output, expected, score) -> None:
    assert get_metric(metric)(output, expected, row(metric=metric)) == pytest.approx(score)


def test_metric_errors_and_registration() -> None:
    with pytest.raises(ValueError, match="Unknown metric 'bleu'"):
        get_metric("bleu")
    with pytest.raises(ValueError, match="invalid regex"):
        get_metric("regex")("x", ["("], row())
    with pytest.raises(ValueError, match="JSON Schema"):
        get_metric("json_schema")("{}", ["not a schema"], row())

    @register_metric("length_ok")
    def length_ok(output: str, expected: list[str], r: EvalRow) -> float:
        return float(len(output) <= int(expected[0]))

    try:
        assert get_metric("length_ok")("abc", ["5"], row()) == 1.0
    finally:
        del METRICS["length_ok"]


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ("Score: 7", 0.7),
        ("score=9/10", 0.9),
        ("**Rating**: 4 out of 5", 0.8),
        ("8", 0.8),
        ("I'd give it a 10.", 1.0),
        ("Score: 12", None),
        ("no idea", None),
        ("Grade: 3/5", 0.6),
    ],
)
def test_judge_scores_are_parsed_robustly(reply, score) -> None:
    assert parse_judge_score(reply) == (pytest.approx(score) if score is not None else None)


def test_interval_and_percentile() -> None:
    deltas = [1.0] * 30 + [0.0] * 10
    low, high = bootstrap_mean_ci(deltas, seed=3)
    assert low < 0.75 < high and low > 0.5 and high <= 1.0
    assert bootstrap_mean_ci(deltas, seed=3) == (low, high)  # seeded: reproducible
    assert bootstrap_mean_ci([0.5]) == (0.5, 0.5)
    assert percentile([1, 2, 3, 4], 50) == 2.5 and percentile([], 95) is None


# --- runs against the emulator -----------------------------------------------------------------


def rows_and_scripts(admin, n: int, adapter_right: int, base_right: int, tag_every: int = 2):
    rows = []
    for i in range(n):
        prompt, expected = f"Question {i}?", f"answer {i}"
        rows.append(
            EvalRow(
                id=f"q{i}",
                prompt=prompt,
                expected=[expected],
                tags=["even"] if i % tag_every == 0 else ["odd"],
            )
        )
        admin.script(ADAPTER, prompt, expected if i < adapter_right else "wrong")
        admin.script(BASE_8B, prompt, expected if i < base_right else "wrong")
    return rows


def complete_adapter(emulator) -> None:
    with emulator.client() as c:
        up = c.upload_adapter("eval-lora", "acme/r", BASE_8B)
    emulator.admin.set_job_status(up.job_id, "Complete", "Job is Complete")


def run(emulator, rows, options: EvalOptions, store=None, retry: RetryPolicy | None = None):
    async def go():
        async with AsyncTogetherClient(
            emulator.api_key,
            emulator.base_url,
            retry=retry or RetryPolicy(retry_statuses=RETRYABLE_STATUS - {429, 503}),
        ) as c:
            return await run_eval(c, rows, ADAPTER, BASE_8B, options, store=store)

    return asyncio.run(go())


@pytest.mark.together_emulator(job_seconds=60)
def test_paired_comparison_and_per_tag(together_emulator) -> None:
    complete_adapter(together_emulator)
    rows = rows_and_scripts(together_emulator.admin, 10, adapter_right=8, base_right=3)
    report = run(together_emulator, rows, EvalOptions(concurrency=4))
    assert (report.adapter_mean, report.base_mean) == (0.8, 0.3)
    assert (report.wins, report.ties, report.losses) == (5, 5, 0)
    assert report.delta == pytest.approx(0.5)
    assert report.delta_ci_low <= 0.5 <= report.delta_ci_high and report.delta_ci_low > 0
    tags = {t.tag: t for t in report.per_tag}
    assert tags["even"].rows == 5 and tags["even"].adapter_mean == 0.8
    assert report.asked == 20 and report.reused == 0 and report.errors == 0
    assert report.adapter_p95_latency_s is not None and report.verdict == "no gate"


@pytest.mark.together_emulator(job_seconds=60)
@pytest.mark.parametrize(
    ("options", "passes"),
    [
        ({"min_score": 0.8}, True),
        ({"min_score": 0.9}, False),
        ({"min_delta_over_base": 0.5}, True),
        ({"min_delta_over_base": 0.6}, False),
        ({"min_delta_over_base": 0.1, "gate_on_interval": True}, True),
        ({"min_delta_over_base": 0.5, "gate_on_interval": True}, False),
        ({"max_error_rate": 0.0}, True),
        ({"max_p95_latency_s": 30.0}, True),
        ({"max_p95_latency_s": 0.001}, False),
    ],
)
def test_each_gate_criterion(together_emulator, options, passes) -> None:
    complete_adapter(together_emulator)
    together_emulator.admin.configure(latency_ms=5)
    rows = rows_and_scripts(together_emulator.admin, 10, adapter_right=8, base_right=3)
    report = run(together_emulator, rows, EvalOptions(**options))
    assert report.passed is passes, report.criteria
    assert report.criteria[0].value is not None
    if "min_delta_over_base" in options:  # the comparison only counts when the base answered
        assert report.criteria[1].name.startswith("base answered") and report.criteria[1].passed
    else:
        assert len(report.criteria) == 1


@pytest.mark.together_emulator(job_seconds=60)
def test_failed_base_answers_fail_the_comparison(together_emulator) -> None:
    """A broken base arm must fail the gate, never hand the adapter free wins."""
    complete_adapter(together_emulator)
    rows = rows_and_scripts(together_emulator.admin, 4, adapter_right=4, base_right=4)

    def broken_base(options: EvalOptions):
        async def go():
            async with AsyncTogetherClient(
                together_emulator.api_key, together_emulator.base_url
            ) as c:  # the base arm names a model that does not answer (404)
                return await run_eval(c, rows, ADAPTER, "acme-research/gone-ep", options)

        return asyncio.run(go())

    report = broken_base(EvalOptions(min_delta_over_base=0.5))
    assert report.base_error_rate == 1.0 and report.adapter_error_rate == 0.0
    assert report.delta == 1.0 and not report.passed  # "wins" against a base that never answered
    assert [c.passed for c in report.criteria] == [True, False]
    rate = broken_base(EvalOptions(max_error_rate=0.5))
    assert rate.criteria[0].value == 1.0 and not rate.passed


@pytest.mark.together_emulator(job_seconds=60)
def test_error_rate_gate_fails_on_errors(together_emulator) -> None:
    complete_adapter(together_emulator)
    rows = rows_and_scripts(together_emulator.admin, 4, adapter_right=4, base_right=0)
    together_emulator.admin.configure(context_length=64)  # max_tokens 256 overflows: 400
    report = run(together_emulator, rows, EvalOptions(max_error_rate=0.1))
    assert report.adapter_error_rate == 1.0 and not report.passed  # 400s are not retried
    assert report.criteria[0].value == 1.0


@pytest.mark.together_emulator(job_seconds=60)
def test_resume_asks_nothing_twice(together_emulator, tmp_path: Path) -> None:
    complete_adapter(together_emulator)
    rows = rows_and_scripts(together_emulator.admin, 12, adapter_right=12, base_right=6)
    store = LocalAnswerStore(tmp_path / "answers.jsonl")
    first = run(together_emulator, rows[:5], EvalOptions(), store=store)
    assert first.asked == 10
    together_emulator.admin.clear_requests()
    resumed = run(
        together_emulator, rows, EvalOptions(), store=LocalAnswerStore(tmp_path / "answers.jsonl")
    )
    asked = together_emulator.admin.requests(path="/v1/chat/completions")
    assert resumed.reused == 10 and resumed.asked == 14 and len(asked) == 14
    assert resumed.adapter_mean == 1.0 and resumed.base_mean == 0.5


@pytest.mark.together_emulator(job_seconds=60)
@pytest.mark.reliability("evaluation killed mid-run: resumed")
def test_failure_mid_run_then_resume(together_emulator, tmp_path: Path) -> None:
    complete_adapter(together_emulator)
    rows = rows_and_scripts(together_emulator.admin, 8, adapter_right=8, base_right=0)
    path = tmp_path / "answers.jsonl"

    async def crash_after(n: int) -> None:
        answered = 0
        store = LocalAnswerStore(path)

        def on_progress(done: int, total: int) -> None:
            nonlocal answered
            answered = done

        async with AsyncTogetherClient(together_emulator.api_key, together_emulator.base_url) as c:
            task = asyncio.create_task(
                run_eval(
                    c,
                    rows,
                    ADAPTER,
                    BASE_8B,
                    EvalOptions(concurrency=1),
                    store=store,
                    on_progress=on_progress,
                )
            )
            while answered < n:
                await asyncio.sleep(0.005)
            task.cancel()  # the worker dies mid-run
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(crash_after(5))
    recorded = len(path.read_text().splitlines())
    assert 5 <= recorded < 16
    together_emulator.admin.clear_requests()
    report = run(together_emulator, rows, EvalOptions(), store=LocalAnswerStore(path))
    assert report.reused == recorded and report.asked == 16 - recorded
    assert len(together_emulator.admin.requests(path="/v1/chat/completions")) == 16 - recorded


@pytest.mark.together_emulator(job_seconds=60)
@pytest.mark.reliability("429 storm in evaluation: no row lost")
def test_429_storm_loses_no_row(together_emulator) -> None:
    complete_adapter(together_emulator)
    rows = rows_and_scripts(together_emulator.admin, 30, adapter_right=30, base_right=10)
    together_emulator.admin.configure(rate_limit_rps=40, rate_limit_burst=5)
    together_emulator.admin.fault(
        r"/v1/chat/completions", status=429, times=25, headers={"retry-after": "0"}
    )
    report = run(together_emulator, rows, EvalOptions(concurrency=16, retry_deadline_s=60))
    assert report.errors == 0 and report.asked == 60  # every row answered
    assert report.throttled >= 25
    assert report.adapter_mean == 1.0


@pytest.mark.together_emulator(job_seconds=60)
def test_judge_metric_counts_its_calls(together_emulator) -> None:
    complete_adapter(together_emulator)
    judge = "meta-llama/Meta-Llama-3.1-70B-Instruct-Reference"
    rows = [
        EvalRow(id="j", prompt="Explain LoRA", expected=["low-rank adaptation"], metric="judge")
    ]
    together_emulator.admin.script(ADAPTER, "Explain LoRA", "Low-rank adapters.")
    together_emulator.admin.script(BASE_8B, "Explain LoRA", "No idea.")
    with pytest.raises(ValueError, match="judge_model"):
        run(together_emulator, rows, EvalOptions())
    # the judge model's reply depends on the answer it grades (scripted per judge prompt)
    from prefect_together_lora.evaluation.judge import DEFAULT_RUBRIC, judge_messages

    for answer, verdict in (("Low-rank adapters.", "Score: 9/10"), ("No idea.", "Score: 1")):
        prompt = judge_messages(DEFAULT_RUBRIC, "Explain LoRA", ["low-rank adaptation"], answer)[
            -1
        ]["content"]
        together_emulator.admin.script(judge, prompt, verdict)
    report = run(together_emulator, rows, EvalOptions(judge_model=judge))
    assert report.rows[0].adapter.score == pytest.approx(0.9)
    assert report.rows[0].base.score == pytest.approx(0.1)
    assert report.judge_calls == 2 and report.judge_unparsed == 0


def test_memory_store_roundtrip() -> None:
    store = MemoryAnswerStore()
    store.put("k", {"output": "x", "latency_s": 0.1, "error": None})
    assert store.get("k")["output"] == "x" and store.get("nope") is None


@pytest.mark.together_emulator(job_seconds=60, latency_ms=1200)
@pytest.mark.reliability("slow answer: an error, no re-billing")
def test_a_slow_generation_is_an_error_not_a_retry_loop(together_emulator) -> None:
    """Answers slower than the read timeout are recorded as errors after one request each:
    asking again would generate (and bill) them again."""
    complete_adapter(together_emulator)
    rows = rows_and_scripts(together_emulator.admin, 2, adapter_right=2, base_right=0)

    async def go():
        async with AsyncTogetherClient(
            together_emulator.api_key, together_emulator.base_url, timeout_s=0.3
        ) as c:
            return await run_eval(c, rows, ADAPTER, BASE_8B, EvalOptions(max_error_rate=0.0))

    report = asyncio.run(go())
    assert report.adapter_error_rate == 1.0 and not report.passed
    assert "not re-sent" in (report.rows[0].adapter.error or "")
    sent = together_emulator.admin.requests(method="POST", path="/v1/chat/completions")
    assert len(sent) == 4  # 2 rows x 2 arms, each asked once
