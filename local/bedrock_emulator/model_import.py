"""Custom Model Import: import jobs, the imported models they make, and InvokeModel on those models.

An import job is ``InProgress`` for ``phase_seconds``, then reads the S3 folder it names through the
emulator's S3 client (as Bedrock copies the model during the job) and ends ``Completed``, with an imported
model, or ``Failed`` with a failureMessage saying what the folder lacks.

What the folder must hold is what AWS lists under "Import a model source from Amazon S3"
(https://docs.aws.amazon.com/bedrock/latest/userguide/model-customization-import-model.html
#model-customization-import-model-source): the weights as ``.safetensors``, ``config.json``,
``tokenizer_config.json``, ``tokenizer.json`` and ``tokenizer.model``. That list names every tokenizer file
a model may have; Qwen2 and Llama 3 ship ``tokenizer.json`` without a ``tokenizer.model`` (and import), so
the emulator asks for ``tokenizer_config.json`` and one of the two. The same page's "Supported
architectures" and its notes give the rest of the checks: the config's ``model_type`` one of
``SUPPORTED_MODEL_TYPES`` (Qwen3 only as Qwen3ForCausalLM or Qwen3MoeForCausalLM), and a context
(``max_position_embeddings``) of at most 128K. Each ``.safetensors`` file must be one (its header read
with ranged GETs: 8-byte little-endian length, then a JSON header whose tensors fill the data exactly).

The imported model: ``modelArchitecture`` is the config's ``model_type``, ``instructSupported`` says whether
tokenizer_config.json holds a ``chat_template`` (invoke-imported-model.html: "To use ChatCompletion
format, the chat template needs to be part of the tokenizer_config.json"), and ``customModelUnits`` is one
copy per started 8 GB of weights, at least 1 (AWS gives Llama 3.1 8B, 16 GB in bf16, 2 units).

What the model answers with comes from the weights' safetensors ``__metadata__``: the SageMaker emulator
stores there the training examples a job learned (``RECALL_METADATA_KEY``); a folder without them (e.g.
written by the real training script) answers like a base model.
"""

from __future__ import annotations

import json
import math
import re
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from local.fake_model import Example, base_model_answer, estimate_tokens, recall_answer

from .customization import ACCOUNT, REGION, ROLE_ARN, TOKEN, _matches, _required, _tags, iso, new_id
from .errors import BedrockError, not_found, validation
from .runtime import BASE_MODEL_REPLY

# The SageMaker emulator's key for the examples a model was trained on (local.sagemaker_emulator.model_folder).
RECALL_METADATA_KEY = "ragtune_emulator.recall"

JOB_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9\+\-\.])*")
MODEL_NAME = re.compile(r"([0-9a-zA-Z][_-]?)+")
S3_URI = re.compile(r"s3://[a-z0-9][-.a-z0-9]{1,61}[a-z0-9](?:/[-!_*'().a-z0-9A-Z]+(?:/[-!_*'().a-z0-9A-Z]+)*)?/?")
SUPPORTED_MODEL_TYPES = (
    "gpt_bigcode",
    "gpt_oss",
    "llama",
    "mistral",
    "mixtral",
    "mllama",
    "qwen2",
    "qwen2_5_vl",
    "qwen2_vl",
    "qwen3",
    "qwen3_moe",
    "t5",
)
QWEN3_ARCHITECTURES = ("Qwen3ForCausalLM", "Qwen3MoeForCausalLM")
MAX_CONTEXT = 128 * 1024
MAX_SAFETENSORS_HEADER = 100_000_000  # the safetensors reference reader's own limit
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2}
DTYPE_BYTES |= {"I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
BYTES_PER_MODEL_UNIT = 8_000_000_000
REQUIRED_FILES = "*.safetensors, config.json, tokenizer_config.json and tokenizer.json or tokenizer.model"

S3Factory = Callable[[], Any]


class ModelFolderError(ValueError):
    """The folder cannot be imported; the message is the job's failureMessage."""


@dataclass
class ImportedModel:
    arn: str
    name: str
    job_arn: str
    job_name: str
    s3_uri: str
    created: float
    architecture: str
    instruct_supported: bool
    model_units: int
    examples: list[Example]
    tags: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {
            "modelArn": self.arn,
            "modelName": self.name,
            "jobName": self.job_name,
            "jobArn": self.job_arn,
            "modelDataSource": {"s3DataSource": {"s3Uri": self.s3_uri}},
            "creationTime": iso(self.created),
            "modelArchitecture": self.architecture,
            "instructSupported": self.instruct_supported,
            "customModelUnits": {"customModelUnitsPerModelCopy": self.model_units, "customModelUnitsVersion": "v1.0"},
        }

    def summary(self) -> dict[str, Any]:
        return {
            "modelArn": self.arn,
            "modelName": self.name,
            "creationTime": iso(self.created),
            "instructSupported": self.instruct_supported,
            "modelArchitecture": self.architecture,
        }


@dataclass
class ImportJob:
    arn: str
    name: str
    model_name: str
    role_arn: str
    s3_uri: str
    client_request_token: str | None
    tags: dict[str, str]
    model_tags: dict[str, str]
    vpc_config: dict[str, Any] | None
    created: float
    last_tick: float
    doomed: str | None  # fail_imports' message, if any
    status: str = "InProgress"
    active_seconds: float = 0.0
    failure_message: str | None = None
    end_time: float | None = None
    last_modified: float | None = None
    model_arn: str | None = None
    folder: list[str] = field(default_factory=list)  # the file names read, for tests

    def to_json(self) -> dict[str, Any]:
        body = {
            "jobArn": self.arn,
            "jobName": self.name,
            "importedModelName": self.model_name,
            "importedModelArn": self.model_arn,
            "roleArn": self.role_arn,
            "modelDataSource": {"s3DataSource": {"s3Uri": self.s3_uri}},
            "status": self.status,
            "failureMessage": self.failure_message,
            "creationTime": iso(self.created),
            "lastModifiedTime": iso(self.last_modified),
            "endTime": iso(self.end_time),
            "vpcConfig": self.vpc_config,
        }
        return {key: value for key, value in body.items() if value is not None}

    def summary(self) -> dict[str, Any]:
        body = {
            "jobArn": self.arn,
            "jobName": self.name,
            "status": self.status,
            "lastModifiedTime": iso(self.last_modified),
            "creationTime": iso(self.created),
            "endTime": iso(self.end_time),
            "importedModelArn": self.model_arn,
            "importedModelName": self.model_name if self.model_arn else None,
        }
        return {key: value for key, value in body.items() if value is not None}


def _page(items: list[Any], query: dict[str, str], key: str) -> dict[str, Any]:
    """Filter by creation time, sort (newest first unless ``sortOrder=Ascending``) and page, as the List calls do."""
    for bound, after in (("creationTimeAfter", True), ("creationTimeBefore", False)):
        if bound in query:
            try:
                moment = datetime.fromisoformat(query[bound].replace("Z", "+00:00")).timestamp()
            except ValueError:
                raise validation(f"{bound} must be an ISO 8601 timestamp.") from None
            items = [i for i in items if (i.created > moment) == after]
    if query.get("sortBy", "CreationTime") != "CreationTime":
        raise validation("sortBy must be CreationTime.")
    order = query.get("sortOrder", "Descending")
    if order not in ("Ascending", "Descending"):
        raise validation("sortOrder must be Ascending or Descending.")
    items = sorted(items, key=lambda i: i.created, reverse=order == "Descending")
    try:
        start, size = int(query.get("nextToken", "0")), int(query.get("maxResults", "100"))
    except ValueError:
        raise validation("maxResults and nextToken must be integers here.") from None
    if not 1 <= size <= 1000:
        raise validation("maxResults must be between 1 and 1000.")
    page: dict[str, Any] = {key: [i.summary() for i in items[start : start + size]]}
    if start + size < len(items):
        page["nextToken"] = str(start + size)
    return page


class ModelImports:
    """Import jobs and imported models; every method runs under the server's lock."""

    def __init__(self, s3: S3Factory, clock: Callable[[], float], phase_seconds: Callable[[], float]) -> None:
        self.s3, self.clock, self.phase_seconds = s3, clock, phase_seconds
        self.jobs: dict[str, ImportJob] = {}
        self.models: dict[str, ImportedModel] = {}
        self.import_failure: str | None = None

    # import jobs -------------------------------------------------------------------------------------

    def create_job(self, body: dict[str, Any]) -> dict[str, Any]:
        token = body.get("clientRequestToken")
        if token is not None:
            _matches(TOKEN, token, "clientRequestToken", 256)
            same = next((j for j in self.jobs.values() if j.client_request_token == token), None)
            if same is not None:
                return {"jobArn": same.arn}
        _required(body, "jobName", "importedModelName", "roleArn", "modelDataSource")
        name = _matches(JOB_NAME, body["jobName"], "jobName")
        model_name = _matches(MODEL_NAME, body["importedModelName"], "importedModelName")
        role_arn = _matches(ROLE_ARN, body["roleArn"], "roleArn", 2048)
        source = body["modelDataSource"]
        s3_source = source.get("s3DataSource") if isinstance(source, dict) else None
        if not isinstance(s3_source, dict) or len(source) != 1:
            raise validation("modelDataSource must hold exactly one member, s3DataSource.")
        _required(s3_source, "s3Uri")
        s3_uri = _matches(S3_URI, s3_source["s3Uri"], "modelDataSource.s3DataSource.s3Uri", 1024)
        self.advance()
        # A job name is taken for good (import jobs cannot be deleted): "The provided job name is currently
        # in use." (aws/sagemaker-python-sdk#6076). The model name clash is the ConflictException botocore
        # declares for this operation (its exact wording unconfirmed).
        if any(j.name == name for j in self.jobs.values()):
            raise validation("The provided job name is currently in use.")
        if any(m.name == model_name for m in self.models.values()) or any(
            j.model_name == model_name and j.status == "InProgress" for j in self.jobs.values()
        ):
            raise BedrockError("ConflictException", f"An imported model named {model_name} already exists.")
        now = self.clock()
        job = ImportJob(
            arn=f"arn:aws:bedrock:{REGION}:{ACCOUNT}:model-import-job/{new_id()}",
            name=name,
            model_name=model_name,
            role_arn=role_arn,
            s3_uri=s3_uri,
            client_request_token=token,
            tags=_tags(body.get("jobTags"), "jobTags"),
            model_tags=_tags(body.get("importedModelTags"), "importedModelTags"),
            vpc_config=body.get("vpcConfig"),
            created=now,
            last_tick=now,
            doomed=self.import_failure,
            last_modified=now,
        )
        self.jobs[job.arn] = job
        return {"jobArn": job.arn}

    def job(self, identifier: str) -> ImportJob:
        self.advance()
        found = self.jobs.get(identifier) or next((j for j in self.jobs.values() if j.name == identifier), None)
        if found is None:
            raise not_found(f"Model import job {identifier} not found.")
        return found

    def list_jobs(self, query: dict[str, str]) -> dict[str, Any]:
        self.advance()
        jobs = list(self.jobs.values())
        if "statusEquals" in query:
            jobs = [j for j in jobs if j.status == query["statusEquals"]]
        if "nameContains" in query:
            jobs = [j for j in jobs if query["nameContains"] in j.name]
        return _page(jobs, query, "modelImportJobSummaries")

    # imported models ---------------------------------------------------------------------------------

    def model(self, identifier: str) -> ImportedModel:
        self.advance()
        found = self.models.get(identifier) or next((m for m in self.models.values() if m.name == identifier), None)
        if found is None:
            raise not_found(f"Imported model {identifier} not found.")
        return found

    def list_models(self, query: dict[str, str]) -> dict[str, Any]:
        self.advance()
        models = list(self.models.values())
        if "nameContains" in query:
            models = [m for m in models if query["nameContains"] in m.name]
        return _page(models, query, "modelSummaries")

    def delete_model(self, identifier: str) -> dict[str, Any]:
        del self.models[self.model(identifier).arn]
        return {}

    # lifecycle ---------------------------------------------------------------------------------------

    def advance(self) -> None:
        now = self.clock()
        for job in self.jobs.values():
            if job.status == "InProgress":
                job.active_seconds += now - job.last_tick
                job.last_tick = now
                if job.active_seconds >= self.phase_seconds():
                    self._finish(job, now)

    def _finish(self, job: ImportJob, now: float) -> None:
        job.end_time = job.last_modified = now
        try:
            if job.doomed is not None:
                raise ModelFolderError(job.doomed)
            model = self._import(job, now)
        except ModelFolderError as error:
            job.status, job.failure_message = "Failed", str(error)
            return
        except Exception as error:  # S3 refusals (no bucket, no access) fail the job
            job.status, job.failure_message = "Failed", f"Unable to read the model files from {job.s3_uri}: {error}"
            return
        self.models[model.arn] = model
        job.status, job.model_arn = "Completed", model.arn

    def _import(self, job: ImportJob, now: float) -> ImportedModel:
        bucket, _, prefix = job.s3_uri.removeprefix("s3://").partition("/")
        prefix = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
        listed = self.s3().list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        files = {o["Key"][len(prefix) :]: o for o in listed if "/" not in o["Key"][len(prefix) :]}
        job.folder = sorted(files)
        if not files:
            raise ModelFolderError(f"No model files were found at {job.s3_uri}.")
        weights = sorted(name for name in files if name.endswith(".safetensors"))
        missing = [
            needed
            for needed, present in (
                ("*.safetensors", bool(weights)),
                ("config.json", "config.json" in files),
                ("tokenizer_config.json", "tokenizer_config.json" in files),
                ("tokenizer.json or tokenizer.model", "tokenizer.json" in files or "tokenizer.model" in files),
            )
            if not present
        ]
        if missing:
            raise ModelFolderError(
                f"The model files at {job.s3_uri} are incomplete: missing {', '.join(missing)}. Custom Model "
                f"Import reads the Hugging Face weights format: {REQUIRED_FILES}."
            )
        config = self._json(bucket, prefix + "config.json", "config.json")
        architecture = self._architecture(config)
        tokenizer_config = self._json(bucket, prefix + "tokenizer_config.json", "tokenizer_config.json")
        examples: list[Example] = []
        total = 0
        for name in weights:
            metadata = self._safetensors_metadata(bucket, prefix + name, name, int(files[name]["Size"]))
            total += int(files[name]["Size"])
            recalled = metadata.get(RECALL_METADATA_KEY)
            if recalled is not None:
                examples += _examples(recalled, name)
        return ImportedModel(
            arn=f"arn:aws:bedrock:{REGION}:{ACCOUNT}:imported-model/{new_id()}",
            name=job.model_name,
            job_arn=job.arn,
            job_name=job.name,
            s3_uri=job.s3_uri,
            created=now,
            architecture=architecture,
            instruct_supported=bool(tokenizer_config.get("chat_template")),
            model_units=max(1, math.ceil(total / BYTES_PER_MODEL_UNIT)),
            examples=examples,
            tags=job.model_tags,
        )

    def _json(self, bucket: str, key: str, name: str) -> dict[str, Any]:
        try:
            value = json.loads(self.s3().get_object(Bucket=bucket, Key=key)["Body"].read())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ModelFolderError(f"{name} is not valid JSON.") from None
        if not isinstance(value, dict):
            raise ModelFolderError(f"{name} must hold a JSON object.")
        return value

    @staticmethod
    def _architecture(config: dict[str, Any]) -> str:
        model_type = config.get("model_type")
        architectures = config.get("architectures")
        if not isinstance(model_type, str) or not isinstance(architectures, list) or not architectures:
            raise ModelFolderError("config.json must name the model's model_type and architectures.")
        if model_type not in SUPPORTED_MODEL_TYPES or (
            model_type.startswith("qwen3") and not set(architectures) <= set(QWEN3_ARCHITECTURES)
        ):
            raise ModelFolderError(
                f"The model architecture {model_type} ({', '.join(map(str, architectures))}) is not supported by "
                f"Custom Model Import. Supported model types: {', '.join(SUPPORTED_MODEL_TYPES)}."
            )
        context = config.get("max_position_embeddings")
        if isinstance(context, int) and context > MAX_CONTEXT:
            raise ModelFolderError(
                f"The model's max_position_embeddings ({context}) exceeds the {MAX_CONTEXT} Custom Model Import "
                "supports."
            )
        return model_type

    def _safetensors_metadata(self, bucket: str, key: str, name: str, size: int) -> dict[str, str]:
        """The header's ``__metadata__``, after checking the file is safetensors; reads only the header."""
        invalid = f"{name} is not a valid safetensors file"
        if size < 8:
            raise ModelFolderError(f"{invalid}: it is {size} bytes long.")
        (length,) = struct.unpack("<Q", self._range(bucket, key, 0, 8))
        if not 2 <= length <= min(MAX_SAFETENSORS_HEADER, size - 8):
            raise ModelFolderError(f"{invalid}: its header length {length} does not fit the file.")
        try:
            header = json.loads(self._range(bucket, key, 8, length))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ModelFolderError(f"{invalid}: its header is not JSON.") from None
        if not isinstance(header, dict):
            raise ModelFolderError(f"{invalid}: its header is not a JSON object.")
        metadata = header.pop("__metadata__", {})
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise ModelFolderError(f"{invalid}: __metadata__ must map strings to strings.")
        spans = []
        for tensor, info in header.items():
            ok = isinstance(info, dict) and info.get("dtype") in DTYPE_BYTES
            shape, offsets = (info.get("shape"), info.get("data_offsets")) if ok else (None, None)
            ok = ok and isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)
            ok = ok and isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
            if not ok or offsets is None or shape is None:
                raise ModelFolderError(f"{invalid}: tensor {tensor} needs a dtype, a shape and data_offsets.")
            if offsets[1] - offsets[0] != math.prod(shape) * DTYPE_BYTES[info["dtype"]]:
                raise ModelFolderError(f"{invalid}: tensor {tensor}'s data_offsets do not match its shape.")
            spans.append((offsets[0], offsets[1]))
        position = 0
        for start, end in sorted(spans):
            if start != position:
                raise ModelFolderError(f"{invalid}: its tensors leave a hole in, or overlap, the data.")
            position = end
        if 8 + length + position != size:
            raise ModelFolderError(f"{invalid}: the data is {size - 8 - length} bytes, the tensors {position}.")
        return metadata

    def _range(self, bucket: str, key: str, start: int, length: int) -> bytes:
        data: bytes = (
            self.s3().get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{start + length - 1}")["Body"].read()
        )
        return data


def _examples(recalled: str, name: str) -> list[Example]:
    try:
        pairs = json.loads(recalled)
    except json.JSONDecodeError:
        raise ModelFolderError(f"{name}: the emulator's {RECALL_METADATA_KEY} metadata is not JSON.") from None
    if not isinstance(pairs, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(t, str) for t in p) for p in pairs
    ):
        raise ModelFolderError(f"{name}: the emulator's {RECALL_METADATA_KEY} metadata must list [user, assistant].")
    return [Example(user, assistant, estimate_tokens(user) + estimate_tokens(assistant)) for user, assistant in pairs]


# InvokeModel ---------------------------------------------------------------------------------------------


def _content_text(content: Any, index: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):  # content parts: the text ones
        return " ".join(str(p["text"]) for p in content if p.get("type") == "text" and "text" in p)
    raise validation(f"messages[{index}].content must be a string or a list of content parts.")


def invoke_imported_model(imports: ModelImports, model_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAIChatCompletion request to an imported model, answered in that format.

    The format, for models imported after 2025-11-11, is AWS's (invoke-imported-model.html, "Enhanced API
    Support: Multiple API Formats", OpenAIChatCompletion): request ``{"messages": [{"role", "content"}],
    "max_tokens", "temperature"}``; response ``{"id": "chatcmpl-<32 hex>", "object": "chat.completion",
    "created", "choices": [{"index", "message": {"role": "assistant", "content"}, "finish_reason"}], "usage":
    {"prompt_tokens", "completion_tokens", "total_tokens"}}`` (AWS's example has no ``model`` member).
    ``finish_reason`` is ``stop``, or ``length`` when ``max_tokens`` cut the answer.
    """
    imports.advance()
    model = imports.models.get(model_id)
    if model is None:
        raise not_found(
            f"The model {model_id} was not found: InvokeModel answers imported models (by ARN) in the emulator."
        )
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise validation(
            "The emulator answers imported models in the OpenAIChatCompletion format only: the body needs a "
            "non-empty 'messages' list of {role, content}."
        )
    texts = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant", "tool"):
            raise validation(f"messages[{index}] needs a role of system, user, assistant or tool.")
        texts.append(_content_text(message.get("content"), index))
    max_tokens, temperature = body.get("max_tokens"), body.get("temperature")
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        raise validation("max_tokens must be an integer of at least 1.")
    if temperature is not None and (
        not isinstance(temperature, int | float) or isinstance(temperature, bool) or not 0 <= temperature <= 2
    ):
        raise validation("temperature must be a number from 0 to 2.")
    if not model.instruct_supported:
        raise validation(
            f"The model {model.name} has no chat template in its tokenizer_config.json, so it cannot answer the "
            "OpenAIChatCompletion format."
        )
    question = next((t for m, t in zip(reversed(messages), reversed(texts), strict=True) if m["role"] == "user"), "")
    answer = (
        recall_answer(question, model.examples) if model.examples else base_model_answer(question, BASE_MODEL_REPLY)
    )
    finish_reason = "stop"
    if max_tokens is not None and estimate_tokens(answer) > max_tokens:
        answer, finish_reason = answer[: max_tokens * 4], "length"
    prompt_tokens = sum(estimate_tokens(text) + 4 for text in texts)  # the chat template's tokens, roughly
    completion_tokens = estimate_tokens(answer)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(imports.clock()),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
