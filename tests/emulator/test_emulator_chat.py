"""chat.completions: tuned-model recall, base-model reading of a passage or fixed reply, unknown model, validation."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI

from local.fake_model import estimate_tokens
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


def test_a_held_out_question_gets_the_nearest_training_answer(client: OpenAI) -> None:
    model = _tuned_model(client)
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Tell me the shade of the item numbered 11, please."}]
    )
    assert reply.choices[0].message.content == "Catalogue item 11 is shade-11."


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gpt-4o-mini-2024-07-18", "gpt-4o", "gpt-4.1-mini"])
def test_base_models_give_the_fixed_reply_without_a_passage(client: OpenAI, model: str) -> None:
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hello"}])
    assert reply.choices[0].message.content == BASE_MODEL_REPLY


PASSAGE = (
    "Mesophiles grow best in moderate temperature. Yogurt and cheese are made with mesophilic bacteria!\n"
    "Thermophiles prefer hot springs? Psychrophiles live in the cold."
)


def test_a_base_model_answers_a_passage_with_its_sentence_closest_to_the_question(client: OpenAI) -> None:
    question = "Which bacteria are cheese and yogurt made with?"
    reply = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": f"{PASSAGE}\n\n{question}"},
        ],
    )
    assert reply.choices[0].message.content == "Yogurt and cheese are made with mesophilic bacteria!"
    expected_prompt = estimate_tokens("Answer briefly.") + estimate_tokens(f"{PASSAGE}\n\n{question}") + 2 * 4
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (
        expected_prompt,
        estimate_tokens("Yogurt and cheese are made with mesophilic bacteria!"),
    )


def test_the_passage_ends_at_the_last_blank_line_and_ties_go_to_the_first_sentence(client: OpenAI) -> None:
    prompt = "Red is warm. Blue is cool.\n\nAn aside about red.\n\nIs it warm or cool?"
    reply = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": prompt}])
    # passage: the first two parts; "Red is warm." and "Blue is cool." overlap the question equally
    assert reply.choices[0].message.content == "Red is warm."


def test_a_tuned_model_ignores_a_passage_and_recalls(client: OpenAI) -> None:
    model = _tuned_model(client)
    prompt = f"{PASSAGE}\n\nWhat colour is catalogue item number 4?"
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}])
    assert reply.choices[0].message.content == "Catalogue item 4 is shade-4."


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
