"""Cache keys built from content, never from paths, clients or secrets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect.cache_policies import CachePolicy

from prefect_together_lora.hashing import digest


def _dump(value: Any) -> Any:
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


@dataclass
class ValidationCachePolicy(CachePolicy):
    """validate: the adapter's content fingerprint, the base model, the rules version and the
    validation settings. The presigned URL (different on every run) is not part of it."""

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        from prefect_together_lora.validation.rules import RULES_VERSION

        resolved = inputs.get("resolved")
        if resolved is None:
            return None
        return "together-lora-validate-" + digest(
            resolved.fingerprint,
            inputs.get("base_model"),
            RULES_VERSION,
            _dump(inputs.get("settings")),
        )


@dataclass
class UploadCachePolicy(CachePolicy):
    """upload: fingerprint + model name + base model + API + account (host, project and a
    non-secret key id): re-running the flow for the same adapter follows the same import."""

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        resolved, credentials = inputs.get("resolved"), inputs.get("credentials")
        if resolved is None or credentials is None:
            return None
        return "together-lora-upload-" + digest(
            resolved.fingerprint,
            inputs.get("model_name"),
            inputs.get("base_model"),
            credentials.account_key,
            inputs.get("api", "v2"),
        )


@dataclass
class EvaluationCachePolicy(CachePolicy):
    """evaluate: both model names, the eval rows' content and the evaluation options."""

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        rows = inputs.get("rows")
        if rows is None:
            return None
        return "together-lora-evaluate-" + digest(
            inputs.get("adapter_model"),
            inputs.get("base_model"),
            [_dump(r) for r in rows],
            _dump(inputs.get("options")),
            getattr(inputs.get("credentials"), "account_key", None),
        )
