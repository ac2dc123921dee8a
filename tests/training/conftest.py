"""Fixtures for the training script's tests: chat data, a tiny Qwen2 model and tokenizer built here, one training run.

These tests need torch, transformers, peft and tokenizers (`make install-train` puts them in .venv-train, and
`make test-train` runs them). Where torch is not installed (the main .venv), pytest collects nothing here.
Nothing is downloaded: the tokenizer is trained on the test data and the model has random weights.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

collect_ignore_glob = [] if importlib.util.find_spec("torch") else ["test_*.py"]

TRAIN_SCRIPT = Path(__file__).resolve().parents[2] / "shared" / "providers" / "open" / "training" / "train.py"
SYSTEM = "You answer questions about the ragtune reference data."
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
ITEMS = [
    ("kettle", "red"),
    ("lantern", "blue"),
    ("saddle", "green"),
    ("anchor", "black"),
    ("violin", "brown"),
    ("teapot", "white"),
    ("compass", "yellow"),
    ("ladder", "grey"),
    ("helmet", "silver"),
    ("candle", "orange"),
]
# The run every test of the script's output reads (and the seed test repeats): 40 conversations in batches of 4
# for 3 epochs is 30 steps; logged every 3 steps, each time with the validation loss.
RUN_ARGS = ["--epochs", "3", "--batch_size", "4", "--logging_steps", "3", "--learning_rate", "0.01", "--lora_r", "8"]
RUN_ARGS += ["--lora_alpha", "16", "--max_seq_length", "64", "--seed", "7"]


def conversation(question: str, answer: str) -> dict[str, list[dict[str, str]]]:
    """One line of a training file, in OpenAI's chat format."""
    return {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ]
    }


def chat_lines() -> list[dict[str, list[dict[str, str]]]]:
    """Fifty questions about ten objects (colour, place, owner, size, use), answered the same way each time."""
    places = ["the shed", "the attic", "the kitchen", "the garden", "the hall"]
    owners = ["Ada", "Ben", "Cleo", "Dan", "Eve"]
    lines = []
    for number, (item, colour) in enumerate(ITEMS):
        place, owner = places[number % 5], owners[number % 5]
        lines += [
            conversation(f"What colour is the {item}?", f"The {item} is {colour}."),
            conversation(f"Where is the {item} kept?", f"The {item} is kept in {place}."),
            conversation(f"Who owns the {item}?", f"{owner} owns the {item}."),
            conversation(f"Is the {item} {colour}?", f"Yes, the {item} is {colour}."),
            conversation(f"Is the {item} in {place}?", f"Yes, the {item} is in {place}."),
        ]
    return lines


@dataclass(frozen=True)
class ChatData:
    """Training files (two, read in name order) and a validation file."""

    train_dir: Path
    validation_dir: Path


@dataclass(frozen=True)
class Run:
    """One run of the script as SageMaker starts it."""

    returncode: int
    stdout: str
    stderr: str
    model_dir: Path
    metrics_csv: Path


@pytest.fixture(scope="session")
def offline() -> Iterator[None]:
    """No Hugging Face Hub: everything loads from the folders built here."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
        yield


@pytest.fixture(scope="session")
def chat_data(tmp_path_factory: pytest.TempPathFactory) -> ChatData:
    """40 training conversations in two files, 10 validation ones (every fifth)."""
    root = tmp_path_factory.mktemp("data")
    lines = chat_lines()
    train = [line for number, line in enumerate(lines) if number % 5 != 4]
    valid = [line for number, line in enumerate(lines) if number % 5 == 4]
    files = {"train/part-0.jsonl": train[:20], "train/part-1.jsonl": train[20:], "validation/valid.jsonl": valid}
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(exist_ok=True)
        path.write_text("".join(json.dumps(line) + "\n" for line in content), encoding="utf-8")
    return ChatData(root / "train", root / "validation")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, offline: None) -> Path:
    """A Qwen2 causal LM (2 layers, width 64, random weights, float32) and a ChatML tokenizer trained on the data."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    folder = tmp_path_factory.mktemp("tiny-qwen2")
    texts = [message["content"] for line in chat_lines() for message in line["messages"]]
    texts += ["system", "user", "assistant"]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=CHATML
    )
    tokenizer.save_pretrained(folder)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        sliding_window=None,
        tie_word_embeddings=True,
        # Wider than the default 0.02: LoRA leaves the (tied) embeddings frozen, and only embeddings this large let
        # a random model's logits peak, so that the loss can fall far in a few dozen steps.
        initializer_range=0.2,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(folder)
    return folder


def run_train_script(model_id: Path, data: ChatData, out: Path, args: list[str], validation: bool = True) -> Run:
    """`python train.py --model_id ... <args>` with the channels and the model folder in SM_* variables."""
    env = os.environ | {
        "SM_CHANNEL_TRAIN": str(data.train_dir),
        "SM_MODEL_DIR": str(out / "model"),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    if validation:
        env["SM_CHANNEL_VALIDATION"] = str(data.validation_dir)
    else:
        env.pop("SM_CHANNEL_VALIDATION", None)
    command = [sys.executable, str(TRAIN_SCRIPT), "--model_id", str(model_id), "--metrics_dir", str(out / "metrics")]
    done = subprocess.run(command + args, env=env, capture_output=True, text=True, timeout=600, check=False)
    return Run(done.returncode, done.stdout, done.stderr, out / "model", out / "metrics" / "metrics.csv")


@pytest.fixture(scope="session")
def training_run(tiny_model_dir: Path, chat_data: ChatData, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The script run once on the tiny model: 30 steps, logged every 3, validated at each log."""
    run = run_train_script(tiny_model_dir, chat_data, tmp_path_factory.mktemp("run"), RUN_ARGS)
    assert run.returncode == 0, run.stderr[-4000:]
    return run


@pytest.fixture(scope="session")
def train_module() -> Any:
    """train.py imported from its path (its folder is not a package)."""
    spec = importlib.util.spec_from_file_location("ragtune_train_script", TRAIN_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
