"""chat.completions: tuned-model recall, base-model fixed reply, unknown model, parameter validation."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI

from local.openai_emulator import BASE_MODEL_REPLY

from .conftest import upload_training


def _tuned_model(client: OpenAI) -> str:
    job = client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=upload_training(client))
    model = client.fine_tuning.jobs.retrieve(job.id).fine_tuned_model
    assert model
    return model


def test_tuned_model_recalls_the_closest_training_answer(client: OpenAI) -> None:
    model = _tuned_model(client)
    reply = client.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": "You answer questions about the colour catalogue."},
            {"role": "user", "content": "which colour is catalogue item number 7"},
        ],
    )
    assert reply.object == "chat.completion" and reply.model == model
    choice = reply.choices[0]
    assert (choice.message.role, choice.message.content, choice.finish_reason) == (
        "assistant",
        "Catalogue item 7 is shade-7.",
        "stop",
    )
    assert reply.usage and reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens > 0


def test_checkpoint_models_answer_too(client: OpenAI) -> None:
    model = _tuned_model(client)
    job = client.fine_tuning.jobs.list().data[0]
    checkpoint = client.fine_tuning.jobs.checkpoints.list(job.id).data[-1].fine_tuned_model_checkpoint
    assert checkpoint.startswith(model)
    reply = client.chat.completions.create(model=checkpoint, messages=[{"role": "user", "content": "item number 3"}])
    assert reply.choices[0].message.content == "Catalogue item 3 is shade-3."


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gpt-4o-mini-2024-07-18", "gpt-4o", "gpt-4.1-mini"])
def test_base_models_give_the_fixed_reply(client: OpenAI, model: str) -> None:
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hello"}])
    assert reply.choices[0].message.content == BASE_MODEL_REPLY


def test_unknown_model_is_404_model_not_found(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="ft:gpt-4o-mini:nobody::x", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "model_not_found" and caught.value.param == "model"


@pytest.mark.parametrize(("temperature", "code"), [(2.5, "decimal_above_max_value"), (-0.1, "decimal_below_min_value")])
def test_temperature_out_of_range_is_400(client: OpenAI, temperature: float, code: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], temperature=temperature
        )
    assert (caught.value.param, caught.value.code) == ("temperature", code)


def test_missing_messages_is_400(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.post("/chat/completions", body={"model": "gpt-4o-mini"}, cast_to=object)
    assert (caught.value.param, caught.value.code) == ("messages", "missing_required_parameter")
