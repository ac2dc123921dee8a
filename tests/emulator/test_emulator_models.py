"""models.retrieve: shutdown dates (announced, configurable, inherited by fine-tunes); shut-down models go quiet."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI

from local.openai_emulator import OpenAIEmulator

from .conftest import FakeClock, client_for, training_jsonl, upload_training

MESSAGES = [{"role": "user", "content": "What colour is catalogue item number 3?"}]


def _tuned_model(client: OpenAI, base: str = "gpt-4o-mini-2024-07-18") -> str:
    job = client.fine_tuning.jobs.create(model=base, training_file=upload_training(client))
    model = client.fine_tuning.jobs.retrieve(job.id).fine_tuned_model
    assert model
    return model


def test_a_base_model_carries_openais_announced_shutdown_date(client: OpenAI) -> None:
    model = client.models.retrieve("gpt-4o-mini-2024-07-18")
    assert (model.id, model.object, model.owned_by, model.shutdown_date) == (
        "gpt-4o-mini-2024-07-18",
        "model",
        "system",
        "2027-01-14",
    )
    assert client.models.retrieve("gpt-4o-mini").shutdown_date is None  # an alias: no date announced
    assert client.models.retrieve("gpt-3.5-turbo-0125").shutdown_date is None


def test_a_fine_tune_and_its_checkpoints_follow_their_base_models_date(client: OpenAI) -> None:
    tuned = _tuned_model(client)
    described = client.models.retrieve(tuned)
    assert (described.id, described.owned_by, described.shutdown_date) == (tuned, "org-emulator", "2027-01-14")
    [job] = client.fine_tuning.jobs.list().data
    checkpoint = client.fine_tuning.jobs.checkpoints.list(job.id).data[0].fine_tuned_model_checkpoint
    assert client.models.retrieve(checkpoint).shutdown_date == "2027-01-14"


def test_an_unknown_model_is_a_404_model_not_found(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client.models.retrieve("ft:gpt-4o-mini-2024-07-18:someone-else:x:abc123")
    assert isinstance(raised.value.body, dict) and raised.value.body["code"] == "model_not_found"


def test_dates_are_configurable_and_a_shut_down_model_stops_answering(clock: FakeClock) -> None:
    # The fake clock starts on 2025-06-15 (UTC).
    with OpenAIEmulator(phase_seconds=0.0, clock=clock, shutdown_dates={"gpt-4.1-2025-04-14": "2025-06-16"}) as emu:
        client = client_for(emu)
        assert client.models.retrieve("gpt-4o-mini-2024-07-18").shutdown_date is None  # replaced, not merged
        tuned = _tuned_model(client, "gpt-4.1-2025-04-14")
        assert client.models.retrieve(tuned).shutdown_date == "2025-06-16"
        assert client.chat.completions.create(model=tuned, messages=MESSAGES).choices  # type: ignore[arg-type]

        clock.advance(24 * 3600)  # the shutdown day itself: gone
        for model in (tuned, "gpt-4.1-2025-04-14"):
            with pytest.raises(openai.NotFoundError) as raised:
                client.chat.completions.create(model=model, messages=MESSAGES)  # type: ignore[arg-type]
            assert isinstance(raised.value.body, dict) and raised.value.body["code"] == "model_not_found"
        assert client.models.retrieve(tuned).shutdown_date == "2025-06-16"  # still described, date included

        emu.shutdown_dates["gpt-4.1-2025-04-14"] = None  # the attribute is live
        assert client.chat.completions.create(model=tuned, messages=MESSAGES).choices  # type: ignore[arg-type]


def test_a_model_tuned_elsewhere_is_described_answers_from_its_data_and_goes_quiet_once_shut_down(
    clock: FakeClock,
) -> None:
    notebook = "ft:gpt-4o-mini-2024-07-18:notebook-org::sciq0001"
    with OpenAIEmulator(clock=clock) as emulator:  # the clock's day: 2025-06-15, before the announced date
        client = client_for(emulator)
        emulator.add_tuned_model(notebook, training_jsonl())

        assert client.models.retrieve(notebook).shutdown_date == "2027-01-14"
        answer = client.chat.completions.create(model=notebook, messages=MESSAGES)  # type: ignore[arg-type]
        assert answer.choices[0].message.content == "Catalogue item 3 is shade-3."

        emulator.shut_down(notebook)

        assert client.models.retrieve(notebook).shutdown_date == "2025-06-15"  # today, on the emulator's clock
        with pytest.raises(openai.NotFoundError) as raised:
            client.chat.completions.create(model=notebook, messages=MESSAGES)  # type: ignore[arg-type]
        assert isinstance(raised.value.body, dict) and raised.value.body["code"] == "model_not_found"
        with pytest.raises(ValueError, match="is not a fine-tuned model id"):
            emulator.add_tuned_model("gpt-4o-mini", training_jsonl())
