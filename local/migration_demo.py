"""`make demo-migration`: keep an OpenAI fine-tune's measure past its shutdown, offline on the emulators.

The path README's "Before 2027-01-14" section describes, driven the way a user drives AWS:
1. adopt a fine-tune the original notebook made (the OpenAI emulator knows it: it was "trained" on every
   row of the SciQ sample, as the notebook trained on all of SciQ's train split): its answers to the
   held-out questions are recorded;
2. train its successor on Amazon Bedrock (Nova, emulated) on the same data with
   `evaluation.questions_from` the adopted run: it never trains on those questions and is asked exactly them;
3. compare the successor with the old model (POST /runs/{id}/evaluation {"compare_with": [old]});
4. the emulator shuts the old model down (chat completions answer 404 model_not_found) and the comparison
   runs again: the old arm now comes from its recording, with the same figures.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from local.demo import (
    NOTEBOOK_TEST_QUESTION,
    SAMPLE_DATA,
    SAMPLE_DIR,
    DemoApi,
    DemoFailed,
    evaluation_table,
    wait_for_evaluation,
    wait_for_run,
)
from local.stack import MotoStack
from shared.domain.config import NOTEBOOK_SYSTEM_PROMPT

NOTEBOOK_MODEL = "ft:gpt-4o-mini-2024-07-18:notebook-org::sciq0001"
ADOPT_CONFIG = SAMPLE_DIR / "notebook-model.json"  # adopts NOTEBOOK_MODEL
SUCCESSOR_CONFIG = SAMPLE_DIR / "successor-bedrock.json"  # its questions_from is set to the adopted run's id
ADOPT_CONFIG_KEY = "configs/notebook-model.json"
SUCCESSOR_CONFIG_KEY = "configs/successor.json"
# What the comparison must keep identical once the old model is gone (timing and labels aside).
COMPARED_FIGURES = ("model", "accuracy", "ci95", "questions", "correct", "prompt_tokens_mean", "cost_per_1k_usd")


def notebook_training_file(rows: list[dict[str, Any]] | None = None) -> bytes:
    """The notebook's training JSONL for SciQ rows (default: the sample's): its system prompt and templates,
    every row."""
    if rows is None:
        rows = [json.loads(line) for line in SAMPLE_DATA.read_text(encoding="utf-8").splitlines()]
    lines = []
    for row in rows:
        messages = [
            {"role": "system", "content": NOTEBOOK_SYSTEM_PROMPT},
            {"role": "user", "content": row["question"]},
            {"role": "assistant", "content": f"{row['correct_answer']} Explanation: {row['support']}"},
        ]
        lines.append(json.dumps({"messages": messages}))
    return ("\n".join(lines) + "\n").encode()


def migration_stack(poll_interval_seconds: int = 1) -> MotoStack:
    """The local stack as an operator deploys it for the migration: the notebook's model is adoptable."""
    return MotoStack(
        poll_interval_seconds=poll_interval_seconds,
        emulator_phase_seconds=1.5,
        log_level="ERROR",  # the refusal of the shut-down model is expected here: a warning would be noise
        parameters={"AdoptableModels": NOTEBOOK_MODEL},
    )


def add_notebook_model(stack: MotoStack) -> None:
    """The OpenAI emulator knows the notebook's fine-tune, as OpenAI knows a user's."""
    if stack.emulator is None or stack.bedrock_emulator is None:
        raise DemoFailed(
            "the migration demo runs on the emulators: unset OPENAI_API_KEY, OPENAI_BASE_URL and the Bedrock "
            "endpoint variables"
        )
    stack.emulator.add_tuned_model(NOTEBOOK_MODEL, notebook_training_file())


def _put_config(stack: MotoStack, key: str, config: dict[str, Any], out: Callable[[str], None]) -> None:
    out(f"dropping {json.dumps(config)} into s3://{stack.bucket}/{key}")
    stack.client("s3").put_object(Bucket=stack.bucket, Key=key, Body=json.dumps(config).encode())


def _succeeded(api: DemoApi, out: Callable[[str], None], key: str, timeout_seconds: float) -> dict[str, Any]:
    run = wait_for_run(api, out, timeout_seconds, config_key=key)
    if run["status"] != "succeeded":
        raise DemoFailed(f"the run of {key} ended {run['status']}: {(run.get('error') or {}).get('message')}")
    return run


def _evaluated(api: DemoApi, run_id: str, out: Callable[[str], None], timeout_seconds: float) -> dict[str, Any]:
    evaluation = wait_for_evaluation(api, run_id, timeout_seconds)
    if evaluation["status"] != "succeeded":
        raise DemoFailed(f"the evaluation of {run_id} failed: {(evaluation.get('error') or {}).get('message')}")
    for line in evaluation_table(evaluation):
        out(line)
    return evaluation


def _compare(
    api: DemoApi, new_id: str, old_id: str, out: Callable[[str], None], timeout_seconds: float
) -> dict[str, Any]:
    out(f'POST /runs/{new_id}/evaluation {{"compare_with": ["{old_id}"]}}')
    api.call("POST", f"/runs/{new_id}/evaluation", json={"compare_with": [old_id]})
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:  # the POST's claim is pending, then running, then finished
        evaluation: dict[str, Any] = api.call("GET", f"/runs/{new_id}/evaluation")
        if evaluation["status"] in {"succeeded", "failed"} and any(a["name"] == old_id for a in evaluation["arms"]):
            break
        time.sleep(0.2)
    return _evaluated(api, new_id, out, timeout_seconds)


def _old_arm(evaluation: dict[str, Any], old_id: str) -> dict[str, Any]:
    arm: dict[str, Any] | None = next((arm for arm in evaluation["arms"] if arm["name"] == old_id), None)
    if arm is None or arm.get("error"):
        raise DemoFailed(f"the comparison has no usable arm for {old_id}: {arm}")
    return arm


def run_migration_demo(
    stack: MotoStack, out: Callable[[str], None] = print, timeout_seconds: float = 300
) -> dict[str, dict[str, Any]]:
    """The two comparisons, before and after the old model's shutdown; DemoFailed if any step fails or the
    old arm's figures differ."""
    add_notebook_model(stack)
    emulator = stack.emulator
    assert emulator is not None
    out(f"the OpenAI emulator knows {NOTEBOOK_MODEL}, the notebook's fine-tune (trained on every sample row)")
    stack.client("s3").upload_file(str(SAMPLE_DATA), stack.bucket, f"data/{SAMPLE_DATA.name}")
    api = DemoApi(stack)

    out("1. adopt the old model: its answers to the held-out questions are recorded")
    _put_config(stack, ADOPT_CONFIG_KEY, json.loads(ADOPT_CONFIG.read_text(encoding="utf-8")), out)
    old = _succeeded(api, out, ADOPT_CONFIG_KEY, timeout_seconds)
    _evaluated(api, old["run_id"], out, timeout_seconds)

    out("2. train the successor on Amazon Bedrock, holding the old run's questions out of its training")
    successor = json.loads(SUCCESSOR_CONFIG.read_text(encoding="utf-8"))
    successor["evaluation"]["questions_from"] = old["run_id"]
    _put_config(stack, SUCCESSOR_CONFIG_KEY, successor, out)
    new = _succeeded(api, out, SUCCESSOR_CONFIG_KEY, timeout_seconds)
    _evaluated(api, new["run_id"], out, timeout_seconds)

    out("3. compare the successor with the old model while it still answers")
    before = _old_arm(_compare(api, new["run_id"], old["run_id"], out, timeout_seconds), old["run_id"])

    out(f"4. the emulator shuts {NOTEBOOK_MODEL} down: OpenAI answers 404 model_not_found from now on")
    emulator.shut_down(NOTEBOOK_MODEL)
    response = api.response("POST", "/ask", json={"question": NOTEBOOK_TEST_QUESTION, "run_id": old["run_id"]})
    out(f"POST /ask on the old run: {response.status_code} {response.json().get('code')}")
    after = _old_arm(_compare(api, new["run_id"], old["run_id"], out, timeout_seconds), old["run_id"])
    if not after.get("recorded"):
        raise DemoFailed(f"the old arm after the shutdown is not built from its recording: {after}")
    changed = [name for name in COMPARED_FIGURES if before.get(name) != after.get(name)]
    if changed:
        raise DemoFailed(f"the old arm's {', '.join(changed)} changed after the shutdown: {before} vs {after}")
    out(f"the old arm is the same after the shutdown ({', '.join(COMPARED_FIGURES)}), now from its recording")
    return {"before": before, "after": after}
