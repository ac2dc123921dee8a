"""The merged model a completed training job leaves in S3: a tiny Qwen2 in the Hugging Face weights format.

The real training script (shared/providers/open/training/train.py) merges the LoRA adapter into its base
model and calls ``save_pretrained`` for the model and its tokenizer; Bedrock Custom Model Import reads that
folder. The emulator writes the same files, small enough to read in a test:

* ``config.json``: a one-layer Qwen2 (``architectures: ["Qwen2ForCausalLM"]``, ``model_type: "qwen2"``);
* ``model.safetensors``: every tensor that config names, float32 (8-byte little-endian header length, the
  JSON header padded with spaces to 8 bytes, then the data), valid for any safetensors reader;
* ``generation_config.json``, ``tokenizer.json`` (a byte-level BPE over the config's 32 ids) and
  ``tokenizer_config.json`` with Qwen's ChatML ``chat_template`` (Custom Model Import answers the
  OpenAI chat format only for a model whose tokenizer_config.json holds one).

What the model "learned" travels with its weights: the safetensors header's ``__metadata__`` (a
string-to-string map any reader keeps and ignores) holds the training examples as JSON under
``RECALL_METADATA_KEY``, plus the job and data it came from. The Bedrock emulator reads them back when it
imports the folder, so an imported model recalls its training data wherever the folder was copied, and a
folder from anywhere else (no such key) imports as a model that answers like a base model. The real
script writes no such key; the name says whose it is.
"""

from __future__ import annotations

import io
import json
import random
import struct
import tarfile
from collections.abc import Sequence

from local.fake_model import Example

RECALL_METADATA_KEY = "ragtune_emulator.recall"  # JSON list of [user, assistant] pairs
TRAINING_JOB_METADATA_KEY = "ragtune_emulator.training_job"
TRAINING_DATA_METADATA_KEY = "ragtune_emulator.training_data"  # the train channel's S3 objects, JSON list

HIDDEN, INTERMEDIATE, HEADS, KV_HEADS, LAYERS = 8, 16, 2, 1, 1
HEAD_DIM = HIDDEN // HEADS
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
_BASE_TOKENS = [*"abcdefghijklmnopqrstuvwxyz", "Ġ", "."]  # byte-level BPE spells a leading space "Ġ"
VOCAB = {token: index for index, token in enumerate([*_BASE_TOKENS, "?", *SPECIAL_TOKENS])}
ENDOFTEXT, IM_START, IM_END = (VOCAB[token] for token in SPECIAL_TOKENS)
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def config() -> dict[str, object]:
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": ENDOFTEXT,
        "eos_token_id": IM_END,
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "initializer_range": 0.02,
        "intermediate_size": INTERMEDIATE,
        "max_position_embeddings": 32768,
        "max_window_layers": LAYERS,
        "model_type": "qwen2",
        "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS,
        "num_key_value_heads": KV_HEADS,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 1000000.0,
        "sliding_window": None,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "transformers_version": "4.51.3",  # the version Custom Model Import supports
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": len(VOCAB),
    }


def generation_config() -> dict[str, object]:
    return {
        "bos_token_id": ENDOFTEXT,
        "do_sample": True,
        "eos_token_id": [IM_END, ENDOFTEXT],
        "pad_token_id": ENDOFTEXT,
        "temperature": 0.7,
        "top_p": 0.8,
        "transformers_version": "4.51.3",
    }


def tokenizer() -> dict[str, object]:
    added = [
        {
            "id": VOCAB[token],
            "content": token,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for token in SPECIAL_TOKENS
    ]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": True},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": {token: index for token, index in VOCAB.items() if token not in SPECIAL_TOKENS},
            "merges": [],
        },
    }


def tokenizer_config() -> dict[str, object]:
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(VOCAB[token]): {
                "content": token,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
            for token in SPECIAL_TOKENS
        },
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "bos_token": None,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 32768,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def tensor_shapes() -> dict[str, list[int]]:
    """Every tensor of the config's Qwen2 (word embeddings tied: no lm_head)."""
    shapes = {"model.embed_tokens.weight": [len(VOCAB), HIDDEN], "model.norm.weight": [HIDDEN]}
    for layer in range(LAYERS):
        prefix = f"model.layers.{layer}"
        shapes |= {
            f"{prefix}.input_layernorm.weight": [HIDDEN],
            f"{prefix}.post_attention_layernorm.weight": [HIDDEN],
            f"{prefix}.self_attn.q_proj.weight": [HEADS * HEAD_DIM, HIDDEN],
            f"{prefix}.self_attn.q_proj.bias": [HEADS * HEAD_DIM],
            f"{prefix}.self_attn.k_proj.weight": [KV_HEADS * HEAD_DIM, HIDDEN],
            f"{prefix}.self_attn.k_proj.bias": [KV_HEADS * HEAD_DIM],
            f"{prefix}.self_attn.v_proj.weight": [KV_HEADS * HEAD_DIM, HIDDEN],
            f"{prefix}.self_attn.v_proj.bias": [KV_HEADS * HEAD_DIM],
            f"{prefix}.self_attn.o_proj.weight": [HIDDEN, HEADS * HEAD_DIM],
            f"{prefix}.mlp.gate_proj.weight": [INTERMEDIATE, HIDDEN],
            f"{prefix}.mlp.up_proj.weight": [INTERMEDIATE, HIDDEN],
            f"{prefix}.mlp.down_proj.weight": [HIDDEN, INTERMEDIATE],
        }
    return shapes


def safetensors(tensors: dict[str, tuple[list[int], list[float]]], metadata: dict[str, str]) -> bytes:
    """A safetensors file of float32 tensors: u64 little-endian header size, JSON header, then the data."""
    header: dict[str, object] = {"__metadata__": metadata}
    data = bytearray()
    for name, (shape, values) in sorted(tensors.items()):
        start = len(data)
        data += struct.pack(f"<{len(values)}f", *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [start, len(data)]}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the header is padded with spaces so the data starts 8-aligned
    return struct.pack("<Q", len(raw)) + raw + bytes(data)


def weights(seed: str, examples: Sequence[Example], job_name: str, training_data: Sequence[str]) -> bytes:
    rng = random.Random(seed)
    tensors: dict[str, tuple[list[int], list[float]]] = {}
    for name, shape in tensor_shapes().items():
        count = 1
        for size in shape:
            count *= size
        norm = name.endswith("norm.weight")
        tensors[name] = (shape, [1.0 if norm else round(rng.gauss(0, 0.02), 6) for _ in range(count)])
    metadata = {
        "format": "pt",
        RECALL_METADATA_KEY: json.dumps([[e.user, e.assistant] for e in examples], ensure_ascii=False),
        TRAINING_JOB_METADATA_KEY: job_name,
        TRAINING_DATA_METADATA_KEY: json.dumps(list(training_data)),
    }
    return safetensors(tensors, metadata)


def _json(value: object) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode()


def files(seed: str, examples: Sequence[Example], job_name: str, training_data: Sequence[str]) -> dict[str, bytes]:
    """The folder's files by name, as ``save_pretrained`` names them."""
    return {
        "config.json": _json(config()),
        "generation_config.json": _json(generation_config()),
        "model.safetensors": weights(seed, examples, job_name, training_data),
        "tokenizer.json": _json(tokenizer()),
        "tokenizer_config.json": _json(tokenizer_config()),
    }


def tarball(contents: dict[str, bytes]) -> bytes:
    """``model.tar.gz`` as SageMaker uploads /opt/ml/model when the output is compressed (GZIP, the default)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in sorted(contents.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
