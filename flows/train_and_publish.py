"""An example training flow that writes a real PEFT-layout LoRA adapter and publishes it with
``publish_adapter`` as a subflow — the shape of a real post-training pipeline.

"Training" here fills the LoRA matrices with small random values (no torch, no GPU): the files,
tensor names, shapes and config are exactly what ``peft``'s ``save_pretrained`` writes for
Llama-3.1-8B, so everything downstream is real.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from prefect import flow, task
from safetensors.numpy import save_file

from prefect_together_lora import TogetherCredentials
from prefect_together_lora.events import emit_training_completed
from prefect_together_lora.flows import publish_adapter
from prefect_together_lora.options import EvalOptions, JobOptions, SmokeOptions
from prefect_together_lora.publish_result import PublishResult
from prefect_together_lora.together.backend import ApiVersion, ServingOptions, TeardownMode
from prefect_together_lora.validation.catalog import default_catalog

BASE_MODEL = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"


@task(name="train-lora")
def train_lora(
    output_dir: str, base_model: str = BASE_MODEL, rank: int = 8, layers: int = 2, seed: int = 0
) -> str:
    """Write adapter_config.json and adapter_model.safetensors (fp16) into ``output_dir``."""
    spec = default_catalog().find(base_model)
    if spec is None:
        raise ValueError(f"unknown base model {base_model}")
    modules = ("q_proj", "k_proj", "v_proj", "o_proj")
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {}
    for layer in range(layers):
        for path in spec.module_paths(layer, modules):
            dims = spec.module_dims(path, layer)
            assert dims is not None
            fan_in, fan_out = dims
            key = f"base_model.model.{spec.tensor_prefix}layers.{layer}.{path}"
            tensors[f"{key}.lora_A.weight"] = (rng.standard_normal((rank, fan_in)) * 0.01).astype(
                np.float16
            )
            tensors[f"{key}.lora_B.weight"] = (rng.standard_normal((fan_out, rank)) * 0.01).astype(
                np.float16
            )
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": rank,
        "lora_alpha": 2 * rank,
        "lora_dropout": 0.05,
        "bias": "none",
        "target_modules": list(modules),
        "modules_to_save": None,
        "use_dora": False,
        "use_rslora": False,
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "rank_pattern": {},
        "alpha_pattern": {},
    }
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return str(out)


@flow(name="train-lora")
def train_lora_flow(
    output_dir: str, model_name: str, base_model: str = BASE_MODEL, announce: bool = False
) -> str:
    """Train only; publishing follows from a deployment trigger (two patterns: this flow's
    completion, or the event it emits with ``announce=True``).

    Args:
        output_dir: Where training writes the adapter folder (read by the publish run).
        model_name: Name of the adapter on Together.
        base_model: Together base model the adapter was trained on.
        announce: Also emit together.lora.training.completed (the event-trigger pattern).
    """
    adapter_dir = train_lora(output_dir, base_model)
    if announce:
        emit_training_completed(adapter_dir, base_model, model_name)
    return adapter_dir


@flow(name="train-and-publish")
def train_and_publish(
    output_dir: str,
    model_name: str,
    base_model: str = BASE_MODEL,
    staging_uri: str | None = None,
    eval_set: str | None = None,
    min_improvement_over_base: float | None = None,
    credentials: TogetherCredentials | None = None,
    api: ApiVersion = "v2",
    serving: ServingOptions = ServingOptions(),
    teardown: TeardownMode = "keep",
) -> PublishResult:
    """Train (here: write) an adapter, then publish it to Together as a subflow.

    Args:
        output_dir: Where training writes the adapter folder.
        model_name: Name of the adapter on Together.
        base_model: Together base model the adapter was trained on.
        staging_uri: s3://bucket/prefix where the adapter folder is staged as a zip.
        eval_set: Optional JSONL eval set run against adapter and base.
        min_improvement_over_base: Optional gate on the adapter's improvement over its base.
        credentials: Together credentials block; default: TOGETHER_API_KEY.
        api: Together API (v2 default, v1 legacy).
        serving: How the adapter is served (v2: deploy, attach or none).
        teardown: After success: keep, scale-to-zero or delete what the publish created.
    """
    adapter_dir = train_lora(output_dir, base_model)
    return publish_adapter(
        source=adapter_dir,
        base_model=base_model,
        model_name=model_name,
        credentials=credentials,
        api=api,
        serving=serving,
        teardown=teardown,
        staging_uri=staging_uri,
        job=JobOptions(poll_initial_s=0.5, poll_max_s=5),
        smoke=SmokeOptions(retry_interval_s=1.0, ready_timeout_s=120),
        evaluation=EvalOptions(
            eval_set=eval_set, min_improvement_over_base=min_improvement_over_base
        ),
    )


if __name__ == "__main__":
    import sys

    print(train_and_publish(output_dir=sys.argv[1], model_name=sys.argv[2]).model_dump_json())
