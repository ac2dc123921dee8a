"""LoRA fine-tuning on chat data: the script an open run's SageMaker training job runs as it is.

AWS's Hugging Face PyTorch training image runs it through the sagemaker-training toolkit
(`python train.py --<hyperparameter> <value> ...`, the data channels and the model folder in SM_* variables).
It trains a LoRA adapter on the assistant turns only, merges it into the base model and saves the merged model
in the layout Bedrock Custom Model Import reads (safetensors, config.json, tokenizer files, nothing else).
Progress goes to stdout as `ragtune ...` lines, which the job's metric definitions parse, and to metrics.csv in
the checkpoint folder, which SageMaker copies to S3 while the job runs. torch, transformers and peft are imported
inside the functions that use them, so `--help` stays cheap.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
from pathlib import Path
from typing import Any, TextIO

IGNORE_INDEX = -100  # the label the loss skips
Example = tuple[list[int], list[int]]  # token ids and their labels


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The hyperparameters as the toolkit passes them, the folders from SageMaker's SM_* variables."""
    parser = argparse.ArgumentParser(description="LoRA fine-tuning of a causal LM on chat JSONL; saves it merged.")
    parser.add_argument("--model_id", required=True, help="Hugging Face model id or local directory")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--learning_rate", type=float, default=2e-4)
    parser.add_argument("--lora_r", type=int, default=16)
    parser.add_argument("--lora_alpha", type=int, default=32)
    parser.add_argument("--lora_dropout", type=float, default=0.05)
    parser.add_argument("--max_seq_length", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1)
    parser.add_argument("--logging_steps", type=int, default=10)
    parser.add_argument("--hf_token_secret", help="Secrets Manager secret id or ARN holding a Hugging Face token")
    parser.add_argument("--train_dir", default=os.environ.get("SM_CHANNEL_TRAIN"), help="default: SM_CHANNEL_TRAIN")
    parser.add_argument(
        "--validation_dir", default=os.environ.get("SM_CHANNEL_VALIDATION"), help="default: SM_CHANNEL_VALIDATION"
    )
    parser.add_argument("--model_dir", default=os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    parser.add_argument("--metrics_dir", default="/opt/ml/checkpoints", help="synced to S3 live by CheckpointConfig")
    args = parser.parse_args(argv)
    if not args.train_dir:
        parser.error("--train_dir (or SM_CHANNEL_TRAIN) is required")
    for name in ("epochs", "lora_r", "lora_alpha", "max_seq_length", "batch_size", "gradient_accumulation_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.logging_steps < 1:
        parser.error("--logging_steps must be at least 1")
    return args


def read_hf_token(secret_id: str) -> str:
    """The Hugging Face token kept in Secrets Manager (region from the ARN when given one, else the job's)."""
    import boto3

    region = secret_id.split(":")[3] if secret_id.startswith("arn:") else os.environ.get("AWS_REGION")
    client = boto3.client("secretsmanager", region_name=region)
    return str(client.get_secret_value(SecretId=secret_id)["SecretString"]).strip()


def read_conversations(folder: str) -> list[list[dict[str, str]]]:
    """The `messages` of every line of every *.jsonl file in the folder, files in name order."""
    files = sorted(Path(folder).glob("*.jsonl"))
    if not files:
        raise SystemExit(f"no *.jsonl file in {folder}")
    return [
        json.loads(line)["messages"]
        for file in files
        for line in file.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def _render(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
    return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt))


def encode_conversation(tokenizer: Any, messages: list[dict[str, str]], max_seq_length: int) -> Example:
    """One conversation's token ids (at most max_seq_length) and labels: the ids on assistant turns, -100 elsewhere.

    An assistant turn spans the characters between the conversation rendered up to the turn's generation prompt
    and the conversation rendered through the turn (its end-of-turn marker included, so the model learns to stop).
    A token is labelled when its characters overlap such a span: this holds for any chat template that renders a
    conversation turn by turn, whatever the tokenizer merges across a boundary.
    """
    text = _render(tokenizer, messages, add_generation_prompt=False)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] == "assistant":
            before = _render(tokenizer, messages[:index], add_generation_prompt=True)
            through = _render(tokenizer, messages[: index + 1], add_generation_prompt=False)
            if not (through.startswith(before) and text.startswith(through)):
                raise ValueError("the chat template does not render a conversation turn by turn")
            spans.append((len(before), len(through)))
    encoding = tokenizer(
        text, add_special_tokens=False, return_offsets_mapping=True, truncation=True, max_length=max_seq_length
    )
    ids = [int(token) for token in encoding["input_ids"]]
    labels = [
        token if any(start < span_end and span_start < end for span_start, span_end in spans) else IGNORE_INDEX
        for token, (start, end) in zip(ids, encoding["offset_mapping"], strict=True)
    ]
    return ids, labels


def encode_folder(tokenizer: Any, folder: str, max_seq_length: int) -> list[Example]:
    """The folder's conversations encoded; those with no assistant token to predict within max_seq_length dropped."""
    encoded = [encode_conversation(tokenizer, messages, max_seq_length) for messages in read_conversations(folder)]
    # The loss predicts token i from those before it: a label at position 0 alone predicts nothing.
    kept = [example for example in encoded if any(label != IGNORE_INDEX for label in example[1][1:])]
    if len(kept) < len(encoded):
        print(f"ragtune dropped {len(encoded) - len(kept)} conversations of {folder}: no assistant token", flush=True)
    if not kept:
        raise SystemExit(f"no conversation of {folder} has an assistant token within {max_seq_length} tokens")
    return kept


def collate(examples: list[Example], pad_id: int, device: Any) -> dict[str, Any]:
    """A right-padded batch: padding is masked from attention and labelled -100."""
    import torch

    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (ids, row_labels) in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(ids)] = torch.tensor(row_labels)
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device), "labels": labels.to(device)}


def validation_loss(model: Any, examples: list[Example], batch_size: int, pad_id: int, device: Any) -> float:
    """The mean loss per predicted assistant token over the validation set."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = collate(examples[start : start + batch_size], pad_id, device)
            tokens = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
            total += float(model(**batch, use_cache=False).loss) * tokens
            count += tokens
    model.train()
    return total / count


VALIDATIONS_PER_JOB = 10


def validation_every(total_steps: int, logging_steps: int) -> int:
    """Validate at about ten logged steps (and the last): every logged step would cost the validation set's size
    times the steps logged, several times the training itself on a large set."""
    logged = math.ceil(total_steps / logging_steps)
    return logging_steps * max(1, math.ceil(logged / VALIDATIONS_PER_JOB))


def log_step(metrics: TextIO, step: int, epoch: float, train_loss: float, valid_loss: float | None) -> None:
    """One logged step: the stdout lines the metric definitions parse and a flushed row of metrics.csv."""
    print(f"ragtune step={step} epoch={epoch:.4f} train_loss={train_loss:.6f}", flush=True)
    if valid_loss is not None:
        print(f"ragtune step={step} valid_loss={valid_loss:.6f}", flush=True)
    valid = "" if valid_loss is None else f"{valid_loss:.6f}"
    csv.writer(metrics).writerow([step, f"{epoch:.4f}", f"{train_loss:.6f}", valid])
    metrics.flush()


def train(args: argparse.Namespace) -> None:
    """Train the adapter, log as it goes, save the merged model and the tokenizer into model_dir."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, get_linear_schedule_with_warmup, set_seed

    set_seed(args.seed)
    token = read_hf_token(args.hf_token_secret) if args.hf_token_secret else None
    tokenizer = AutoTokenizer.from_pretrained(args.model_id, token=token)  # nosec B615  # catalogue id, no code run
    train_set = encode_folder(tokenizer, args.train_dir, args.max_seq_length)
    valid_set = encode_folder(tokenizer, args.validation_dir, args.max_seq_length) if args.validation_dir else []
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # torch_dtype="auto": the base model's own dtype (bf16 for Qwen 2.5), which the merged model is saved in.
    model = AutoModelForCausalLM.from_pretrained(  # nosec B615  # catalogue id, safetensors only
        args.model_id, torch_dtype="auto", use_safetensors=True, token=token
    )
    model.to(device)
    # Recomputing activations in the backward pass is what lets a 7B model train at 1,024 tokens on a 24 GB GPU.
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lora = LoraConfig(
        task_type="CAUSAL_LM",
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules="all-linear",
    )
    model = get_peft_model(model, lora)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.learning_rate)

    micro_batches = math.ceil(len(train_set) / args.batch_size)
    steps_per_epoch = math.ceil(micro_batches / args.gradient_accumulation_steps)
    total_steps = steps_per_epoch * args.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=0, num_training_steps=total_steps)
    print(f"ragtune total_steps={total_steps}", flush=True)

    order_generator = torch.Generator().manual_seed(args.seed)  # the data order depends on the seed alone
    metrics_path = Path(args.metrics_dir) / "metrics.csv"
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    model.train()
    step, losses = 0, list[float]()
    validate_every = validation_every(total_steps, args.logging_steps)
    with metrics_path.open("w", newline="", encoding="utf-8") as metrics:
        csv.writer(metrics).writerow(["step", "epoch", "train_loss", "valid_loss"])
        for _epoch in range(args.epochs):
            order = torch.randperm(len(train_set), generator=order_generator).tolist()
            batches = [order[start : start + args.batch_size] for start in range(0, len(order), args.batch_size)]
            for first in range(0, len(batches), args.gradient_accumulation_steps):
                group = batches[first : first + args.gradient_accumulation_steps]
                for indices in group:
                    loss = model(**collate([train_set[i] for i in indices], pad_id, device), use_cache=False).loss
                    (loss / len(group)).backward()
                    losses.append(float(loss.detach()))
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                step += 1
                if step % args.logging_steps == 0 or step == total_steps:
                    validating = bool(valid_set) and (step % validate_every == 0 or step == total_steps)
                    valid = validation_loss(model, valid_set, args.batch_size, pad_id, device) if validating else None
                    log_step(metrics, step, step / steps_per_epoch, sum(losses) / len(losses), valid)
                    losses = []

    merged = model.merge_and_unload()
    merged.save_pretrained(args.model_dir, safe_serialization=True)
    # The chat template stays in tokenizer_config.json: Bedrock's Converse API reads it from there.
    tokenizer.save_pretrained(args.model_dir, save_jinja_files=False)


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and train."""
    train(parse_args(argv))


if __name__ == "__main__":
    main()
