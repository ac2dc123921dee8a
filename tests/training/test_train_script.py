"""The LoRA training script (shared/providers/open/training/train.py), run for real on the CPU.

It runs as SageMaker runs it (a subprocess with SM_* variables) on a tiny Qwen2 model built by the fixtures; its
labelling is checked directly. Run with `make test-train` (the .venv-train environment).
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.training.conftest import RUN_ARGS, SYSTEM, TRAIN_SCRIPT, ChatData, Run, run_train_script

TRAIN_LINE = re.compile(r"^ragtune step=(\d+) epoch=([0-9.]+) train_loss=([0-9.]+)$", re.MULTILINE)
VALID_LINE = re.compile(r"^ragtune step=(\d+) valid_loss=([0-9.]+)$", re.MULTILINE)
TOTAL_LINE = re.compile(r"^ragtune total_steps=(\d+)$", re.MULTILINE)
# What Bedrock Custom Model Import reads, as transformers and the tiny tokenizer write it: nothing else.
MODEL_FILES = {
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
}


def train_losses(stdout: str) -> list[float]:
    return [float(loss) for _step, _epoch, loss in TRAIN_LINE.findall(stdout)]


def metrics_rows(run: Run) -> list[dict[str, str]]:
    with run.metrics_csv.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def chat(user: str, answer: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": user},
        {"role": "assistant", "content": answer},
    ]


def test_training_loss_falls(training_run: Run) -> None:
    losses = train_losses(training_run.stdout)
    assert len(losses) == 10  # 30 steps logged every 3
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.6 * first, losses
    valid = [float(loss) for _step, loss in VALID_LINE.findall(training_run.stdout)]
    assert valid[-1] < valid[0], valid


def test_merged_model_is_all_model_dir_holds_and_generates(training_run: Run, tiny_model_dir: Path) -> None:
    names = {path.name for path in training_run.model_dir.iterdir()}
    assert names == MODEL_FILES
    assert "chat_template" in json.loads((training_run.model_dir / "tokenizer_config.json").read_text())

    model = AutoModelForCausalLM.from_pretrained(training_run.model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(training_run.model_dir)
    assert type(model).__name__ == "Qwen2ForCausalLM" and model.dtype == torch.float32
    assert not any("lora" in name for name, _ in model.named_parameters())
    # The adapter is merged into the base weights: the attention projections moved, the embeddings did not.
    weights, base_weights = model.state_dict(), base.state_dict()
    assert weights.keys() == base_weights.keys()
    q_proj = "model.layers.0.self_attn.q_proj.weight"
    assert (weights[q_proj] - base_weights[q_proj]).abs().max() > 1e-4
    assert torch.equal(weights["model.embed_tokens.weight"], base_weights["model.embed_tokens.weight"])

    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What colour is the kettle?"}], add_generation_prompt=True, return_tensors="pt"
    )
    output = model.generate(prompt, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert output.shape[1] > prompt.shape[1]


def test_metrics_csv_has_one_row_per_logged_step(training_run: Run) -> None:
    assert TOTAL_LINE.findall(training_run.stdout) == ["30"]
    header = training_run.metrics_csv.read_text(encoding="utf-8").splitlines()[0]
    assert header == "step,epoch,train_loss,valid_loss"
    rows = metrics_rows(training_run)
    logged = TRAIN_LINE.findall(training_run.stdout)
    assert [(row["step"], row["epoch"], row["train_loss"]) for row in rows] == logged
    assert [row["step"] for row in rows] == [str(step) for step in range(3, 31, 3)]
    assert rows[-1]["epoch"] == "3.0000"
    assert [(row["step"], row["valid_loss"]) for row in rows] == VALID_LINE.findall(training_run.stdout)


def test_without_validation_the_valid_loss_is_empty(
    tiny_model_dir: Path, chat_data: ChatData, tmp_path: Path, offline: None
) -> None:
    # 40 conversations in batches of 8, two per step: 3 steps (the last one of a single batch), logged every 2.
    args = ["--epochs", "1", "--batch_size", "8", "--gradient_accumulation_steps", "2", "--logging_steps", "2"]
    run = run_train_script(tiny_model_dir, chat_data, tmp_path, [*args, "--max_seq_length", "64"], validation=False)
    assert run.returncode == 0, run.stderr[-4000:]
    assert TOTAL_LINE.findall(run.stdout) == ["3"]
    assert [(row["step"], row["valid_loss"]) for row in metrics_rows(run)] == [("2", ""), ("3", "")]
    assert VALID_LINE.findall(run.stdout) == []


def test_the_merged_model_keeps_the_base_models_dtype(
    tiny_model_dir: Path, chat_data: ChatData, tmp_path: Path, offline: None
) -> None:
    # A bf16 base (as Qwen 2.5 is published) is saved merged in bf16, not in the float32 of the adapter's weights.
    base = tmp_path / "bf16-base"
    AutoModelForCausalLM.from_pretrained(tiny_model_dir, torch_dtype=torch.bfloat16).save_pretrained(base)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(base)
    args = ["--epochs", "1", "--batch_size", "8", "--logging_steps", "5", "--max_seq_length", "64"]
    run = run_train_script(base, chat_data, tmp_path / "out", args, validation=False)
    assert run.returncode == 0, run.stderr[-4000:]
    assert json.loads((run.model_dir / "config.json").read_text())["torch_dtype"] == "bfloat16"
    assert AutoModelForCausalLM.from_pretrained(run.model_dir, torch_dtype="auto").dtype == torch.bfloat16


def test_labels_are_the_assistant_tokens_only(train_module: Any, tiny_model_dir: Path, offline: None) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    encode = train_module.encode_conversation
    ids, labels = encode(tokenizer, chat("Who owns the kettle?", "Ada owns the kettle."), 64)
    assert len(ids) == len(labels)
    labelled = [position for position, label in enumerate(labels) if label != -100]
    assert labels == [token if position in labelled else -100 for position, token in enumerate(ids)]
    # The labelled tokens are exactly the answer and its end-of-turn marker, at the end of the conversation.
    assert labelled == list(range(labelled[0], len(ids)))
    assert tokenizer.decode([ids[p] for p in labelled]) == "Ada owns the kettle.<|im_end|>\n"
    assert "kettle?" in tokenizer.decode(ids[: labelled[0]])

    # Another user word (same token count): other inputs, the very same targets. Another answer word: other targets.
    other_ids, other_labels = encode(tokenizer, chat("Who owns the saddle?", "Ada owns the kettle."), 64)
    assert len(other_ids) == len(ids) and other_ids != ids
    assert other_labels == labels
    _, answer_labels = encode(tokenizer, chat("Who owns the kettle?", "Ben owns the kettle."), 64)
    assert answer_labels != labels

    # Each assistant turn of a longer conversation is labelled; truncation keeps max_seq_length tokens.
    turns = [*chat("Who owns the kettle?", "Ada owns the kettle."), *chat("Is it red?", "Yes.")[1:]]
    ids, labels = encode(tokenizer, turns, 256)
    answers = tokenizer.decode([token for token in labels if token != -100])
    assert answers == "Ada owns the kettle.<|im_end|>\nYes.<|im_end|>\n"
    ids, labels = encode(tokenizer, turns, 12)
    assert len(ids) == len(labels) == 12 and set(labels) == {-100}


def test_same_seed_same_metrics(
    training_run: Run, tiny_model_dir: Path, chat_data: ChatData, tmp_path: Path, offline: None
) -> None:
    again = run_train_script(tiny_model_dir, chat_data, tmp_path, RUN_ARGS)
    assert again.returncode == 0, again.stderr[-4000:]
    assert metrics_rows(again) == metrics_rows(training_run)
    other_seed = run_train_script(tiny_model_dir, chat_data, tmp_path / "seed-8", [*RUN_ARGS, "--seed", "8"])
    assert other_seed.returncode == 0, other_seed.stderr[-4000:]
    assert [row["train_loss"] for row in metrics_rows(other_seed)] != [row["train_loss"] for row in metrics_rows(again)]


def test_help_imports_no_framework() -> None:
    code = (
        "import runpy, sys\n"
        "sys.argv = ['train.py', '--help']\n"
        "try:\n"
        f"    runpy.run_path({str(TRAIN_SCRIPT)!r}, run_name='__main__')\n"
        "except SystemExit:\n"
        "    print(sorted({'torch', 'transformers', 'peft', 'boto3'} & set(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "--model_id" in done.stdout and "--hf_token_secret" in done.stdout
    assert done.stdout.splitlines()[-1] == "[]"


def test_command_line_as_the_toolkit_passes_it(train_module: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train")
    monkeypatch.setenv("SM_CHANNEL_VALIDATION", "/opt/ml/input/data/validation")
    monkeypatch.setenv("SM_MODEL_DIR", "/opt/ml/model")
    args = train_module.parse_args(["--model_id", "Qwen/Qwen2.5-1.5B-Instruct", "--learning_rate", "1e-05"])
    assert vars(args) == {
        "model_id": "Qwen/Qwen2.5-1.5B-Instruct",
        "epochs": 3,
        "learning_rate": 1e-05,
        "lora_r": 16,
        "lora_alpha": 32,
        "lora_dropout": 0.05,
        "max_seq_length": 1024,
        "seed": 42,
        "batch_size": 4,
        "gradient_accumulation_steps": 1,
        "logging_steps": 10,
        "hf_token_secret": None,
        "train_dir": "/opt/ml/input/data/train",
        "validation_dir": "/opt/ml/input/data/validation",
        "model_dir": "/opt/ml/model",
        "metrics_dir": "/opt/ml/checkpoints",
    }
    monkeypatch.delenv("SM_CHANNEL_VALIDATION")
    assert train_module.parse_args(["--model_id", "m", "--train_dir", "t"]).validation_dir is None


def test_validation_runs_at_about_ten_logged_steps_and_the_last(train_module: Any) -> None:
    every = train_module.validation_every
    assert every(30, 3) == 3  # ten logged steps: each is validated
    assert every(1000, 10) == 100  # a hundred logged steps: one in ten
    assert every(7, 10) == 10  # fewer steps than one log: only the last
