"""bedrock-runtime Converse: a custom model deployment recalls its training data, a Nova foundation model
answers like the fake model's base models (`local.fake_model`: the passage sentence closest to the question,
or a fixed reply).
"""

from __future__ import annotations

import time
from typing import Any

from local.fake_model import base_model_answer

from .customization import NOVA_BASE_MODELS, Customizations
from .errors import BedrockError, not_found, validation
from .training import estimate_tokens, recall_answer

BASE_MODEL_REPLY = "This is the Bedrock emulator's base-model reply."
# On-demand ids of the fine-tunable Nova models (their customization ids without the context-length part),
# directly and through a US cross-region inference profile.
_NOVA_IDS = tuple(model.rsplit(":", 1)[0] for model in NOVA_BASE_MODELS)
NOVA_FOUNDATION_MODELS = frozenset(_NOVA_IDS + tuple(f"us.{model}" for model in _NOVA_IDS))


def _text(blocks: Any, member: str) -> str:
    if not isinstance(blocks, list) or not all(isinstance(b, dict) and len(b) == 1 for b in blocks):
        raise validation(f"{member} must be a list of content blocks, each holding exactly one member.")
    return " ".join(str(b["text"]) for b in blocks if "text" in b)


def converse(customizations: Customizations, model_id: str, body: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise validation("A conversation must start with a user message. Try again with a conversation that starts "
                         "with a user message.")  # fmt: skip
    for index, message in enumerate(messages):
        expected = "user" if index % 2 == 0 else "assistant"
        if not isinstance(message, dict) or message.get("role") != expected:
            raise validation("A conversation must alternate between user and assistant roles, starting with user.")
        _text(message.get("content"), f"messages.{index}.content")
    if messages[-1]["role"] != "user":
        raise validation("A conversation must end with a user message. Try again with a conversation that ends "
                         "with a user message.")  # fmt: skip
    system = _text(body.get("system", []), "system")
    config = body.get("inferenceConfig") or {}
    max_tokens, temperature = config.get("maxTokens"), config.get("temperature")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise validation("inferenceConfig.maxTokens must be an integer of at least 1.")
    if temperature is not None and (not isinstance(temperature, int | float) or not 0 <= temperature <= 1):
        raise validation("inferenceConfig.temperature must be between 0 and 1.")
    question = _text(messages[-1]["content"], "content")
    answer, stop_reason = _answer(customizations, model_id, question), "end_turn"
    if max_tokens is not None and estimate_tokens(answer) > max_tokens:
        answer, stop_reason = answer[: max_tokens * 4], "max_tokens"
    input_tokens = estimate_tokens(system) + sum(estimate_tokens(_text(m["content"], "content")) for m in messages)
    output_tokens = estimate_tokens(answer)
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": answer}]}},
        "stopReason": stop_reason,
        "usage": {
            "inputTokens": input_tokens,
            "outputTokens": output_tokens,
            "totalTokens": input_tokens + output_tokens,
        },
        "metrics": {"latencyMs": max(1, round((time.monotonic() - started) * 1000))},
    }


def _answer(customizations: Customizations, model_id: str, question: str) -> str:
    if model_id in NOVA_FOUNDATION_MODELS:
        return base_model_answer(question, BASE_MODEL_REPLY)
    deployment = customizations.deployments.get(model_id)
    customizations.advance()
    if deployment is None:
        raise not_found(
            f"The model {model_id} was not found: only Nova foundation models and custom model deployments "
            "answer in the emulator."
        )
    if deployment.status == "Creating":
        raise BedrockError("ModelNotReadyException", f"The deployment {model_id} is not ready yet (Creating).")
    if deployment.status != "Active":
        raise validation(f"The deployment {model_id} is {deployment.status}: {deployment.failure_message}")
    return recall_answer(question, customizations.custom_models[deployment.model_arn].examples)
