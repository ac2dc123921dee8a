"""OpenAI's chat completions from the fake model (`local.fake_model`): a tuned model recalls its training
data, a base model reads the passage it is given."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from local.fake_model import Example, base_model_answer, estimate_tokens, recall_answer

from .dataset import message_text
from .errors import invalid, missing, not_found
from .finetune import BASE_MODELS
from .state import Store

BASE_MODEL_REPLY = "This is the OpenAI emulator's base-model reply."


def chat_completion(body: dict[str, Any], tuned_models: Mapping[str, Sequence[Example]]) -> dict[str, Any]:
    """Validate a chat.completions request and answer it as a ``chat.completion`` object."""
    model, messages = body.get("model"), body.get("messages")
    if not isinstance(model, str) or not model:
        raise invalid("you must provide a model parameter")
    if not isinstance(messages, list) or not messages:
        raise missing("messages")
    if not all(isinstance(m, dict) and m.get("role") for m in messages):
        raise invalid("Invalid 'messages': every message needs a 'role'.", "messages", "invalid_value")
    temperature = body.get("temperature")
    if temperature is not None:
        if not isinstance(temperature, (int, float)) or isinstance(temperature, bool):
            raise invalid("Invalid type for 'temperature': expected a decimal.", "temperature", "invalid_type")
        if not 0 <= temperature <= 2:
            code = "decimal_above_max_value" if temperature > 2 else "decimal_below_min_value"
            raise invalid(
                f"Invalid 'temperature': expected a value between 0 and 2, but got {temperature} instead.",
                "temperature",
                code,
            )
    if body.get("stream"):
        raise invalid("The OpenAI emulator does not support streaming.", "stream", "unsupported_value")
    n = body.get("n") or 1
    if not isinstance(n, int) or not 1 <= n <= 128:
        raise invalid("Invalid 'n': expected an integer between 1 and 128.", "n", "invalid_value")
    question = next((message_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    if model in tuned_models:
        answer = recall_answer(question, tuned_models[model])
    elif model in BASE_MODELS:
        answer = base_model_answer(question, BASE_MODEL_REPLY)
    else:
        raise not_found(
            f"The model `{model}` does not exist or you do not have access to it.", "model", "model_not_found"
        )
    prompt_tokens = sum(estimate_tokens(message_text(m.get("content"))) + 4 for m in messages)
    completion_tokens = estimate_tokens(answer)
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": answer, "refusal": None, "annotations": []},
        "finish_reason": "stop",
        "logprobs": None,
    }
    return {
        "id": Store.new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{**choice, "index": i} for i in range(n)],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens * n,
            "total_tokens": prompt_tokens + completion_tokens * n,
        },
        "service_tier": "default",
        "system_fingerprint": "fp_emulator",
    }
