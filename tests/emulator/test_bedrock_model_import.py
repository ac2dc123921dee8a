"""The Bedrock emulator's Custom Model Import and InvokeModel, driven by real boto3 clients over moto's S3.

Model folders are written as the SageMaker emulator writes them (`local.sagemaker_emulator.model_folder`),
then broken one way at a time; one test trains a model with the SageMaker emulator and imports its output.
Each import phase lasts 10 fake seconds unless a test says otherwise.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws

from local import sagemaker_emulator
from local.bedrock_emulator import BASE_MODEL_REPLY, RECALL_METADATA_KEY, ROUTES, BedrockEmulator, FaultKind
from local.fake_model import Example, estimate_tokens
from local.sagemaker_emulator import SageMakerEmulator, model_folder

from .conftest import FakeClock
from .test_bedrock_emulator_conformance import problems, request_problems, service_model

BUCKET = "ragtune-import-test"
FOLDER = "models/run-1/ragtune-run-1/output/model/"
ROLE = "arn:aws:iam::123456789012:role/ragtune-open-import"
NO_RETRIES = Config(retries={"total_max_attempts": 1})
EXAMPLES = [
    Example(f"What colour is catalogue item number {i}?", f"Catalogue item {i} is shade-{i}.", 10) for i in range(10)
]
PASSAGE = "Mesophiles grow best in moderate temperature. Yogurt and cheese are made with mesophilic bacteria."


def write_folder(s3: Any, prefix: str = FOLDER, changes: dict[str, bytes | None] | None = None) -> str:
    """A model folder as the SageMaker emulator writes it, each of ``changes`` replacing (None: removing) a file."""
    files: dict[str, bytes | None] = {**model_folder.files("seed", EXAMPLES, "ragtune-run-1", []), **(changes or {})}
    for name, data in files.items():
        if data is not None:
            s3.put_object(Bucket=BUCKET, Key=prefix + name, Body=data)
    return f"s3://{BUCKET}/{prefix}"


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emu(s3: Any, clock: FakeClock) -> Iterator[BedrockEmulator]:
    with BedrockEmulator(phase_seconds=10.0, clock=clock) as emulator:
        yield emulator


def clients(emu: BedrockEmulator, config: Config = NO_RETRIES) -> tuple[Any, Any]:
    kwargs: dict[str, Any] = {"endpoint_url": emu.endpoint_url, "region_name": "us-east-1", "config": config}
    return boto3.client("bedrock", **kwargs), boto3.client("bedrock-runtime", **kwargs)


def import_request(name: str = "run-1", uri: str = f"s3://{BUCKET}/{FOLDER}", **overrides: Any) -> dict[str, Any]:
    """What the open provider's gateway sends (shared/providers/open/gateway.py)."""
    request: dict[str, Any] = {
        "jobName": f"ragtune-{name}-import",
        "importedModelName": f"ragtune-{name}",
        "roleArn": ROLE,
        "modelDataSource": {"s3DataSource": {"s3Uri": uri}},
        "jobTags": [{"key": "ragtune_run_id", "value": name}],
        "importedModelTags": [{"key": "ragtune_run_id", "value": name}, {"key": "ragtune_deployment", "value": "d"}],
        "clientRequestToken": f"token-{name}",
    }
    return request | overrides


def code(error: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response: Any = error.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def imported(
    emu: BedrockEmulator, clock: FakeClock, s3: Any, name: str = "run-1", changes: dict[str, bytes | None] | None = None
) -> str:
    """An imported model of a folder written for ``name``; its ARN."""
    bedrock, _ = clients(emu)
    uri = write_folder(s3, f"models/{name}/", changes)
    arn = bedrock.create_model_import_job(**import_request(name, uri))["jobArn"]
    clock.advance(10)
    job = bedrock.get_model_import_job(jobIdentifier=arn)
    assert job["status"] == "Completed", job.get("failureMessage")
    return str(job["importedModelArn"])


def invoke(runtime: Any, model: str, body: dict[str, Any]) -> dict[str, Any]:
    response = runtime.invoke_model(
        modelId=model, body=json.dumps(body), contentType="application/json", accept="application/json"
    )
    assert response["contentType"] == "application/json"
    answer: dict[str, Any] = json.loads(response["body"].read())
    return answer


def chat(question: str, system: str | None = "Be brief.", **options: Any) -> dict[str, Any]:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    return {"messages": messages, "max_tokens": 512, "temperature": 0.0} | options


# import jobs ----------------------------------------------------------------------------------------


def test_an_import_runs_then_completes_with_an_imported_model(emu: BedrockEmulator, clock: FakeClock, s3: Any) -> None:
    bedrock, _ = clients(emu)
    uri = write_folder(s3)
    arn = bedrock.create_model_import_job(**import_request())["jobArn"]
    assert arn.startswith("arn:aws:bedrock:us-east-1:123456789012:model-import-job/") and len(arn.rsplit("/")[-1]) == 12
    job = bedrock.get_model_import_job(jobIdentifier=arn)
    assert job["status"] == "InProgress" and "importedModelArn" not in job and "endTime" not in job
    assert job["modelDataSource"] == {"s3DataSource": {"s3Uri": uri}} and job["roleArn"] == ROLE
    clock.advance(9)
    assert bedrock.get_model_import_job(jobIdentifier=arn)["status"] == "InProgress"
    assert not emu.imported_models
    clock.advance(1)
    job = bedrock.get_model_import_job(jobIdentifier="ragtune-run-1-import")  # by name as well as by ARN
    assert job["status"] == "Completed" and job["endTime"] >= job["creationTime"]
    model_arn = job["importedModelArn"]
    assert model_arn.startswith("arn:aws:bedrock:us-east-1:123456789012:imported-model/")
    assert job["importedModelName"] == "ragtune-run-1"
    model = bedrock.get_imported_model(modelIdentifier=model_arn)
    model.pop("ResponseMetadata")
    assert model == {
        "modelArn": model_arn,
        "modelName": "ragtune-run-1",
        "jobName": "ragtune-run-1-import",
        "jobArn": arn,
        "modelDataSource": {"s3DataSource": {"s3Uri": uri}},
        "creationTime": model["creationTime"],
        "modelArchitecture": "qwen2",
        "instructSupported": True,
        "customModelUnits": {"customModelUnitsPerModelCopy": 1, "customModelUnitsVersion": "v1.0"},
    }
    assert bedrock.get_imported_model(modelIdentifier="ragtune-run-1")["modelArn"] == model_arn  # by name
    assert emu.import_jobs[arn].tags == {"ragtune_run_id": "run-1"}
    assert emu.imported_models[model_arn].tags == {"ragtune_run_id": "run-1", "ragtune_deployment": "d"}
    assert emu.import_jobs[arn].folder == sorted(model_folder.files("s", [], "j", []))


def test_the_same_client_request_token_makes_one_job_even_concurrently(emu: BedrockEmulator, s3: Any) -> None:
    bedrock, _ = clients(emu)
    write_folder(s3)
    arns: list[str] = []

    def create() -> None:
        arns.append(bedrock.create_model_import_job(**import_request())["jobArn"])

    threads = [threading.Thread(target=create) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(arns) == 20 and len(set(arns)) == 1 and list(emu.import_jobs) == arns[:1]


def test_job_names_are_taken_for_good_and_model_names_while_their_model_exists(
    emu: BedrockEmulator, clock: FakeClock, s3: Any
) -> None:
    bedrock, _ = clients(emu)
    write_folder(s3)
    bedrock.create_model_import_job(**import_request())
    with pytest.raises(ClientError) as same_model:  # the first import of that model name is still running
        bedrock.create_model_import_job(**import_request(clientRequestToken="t2", jobName="another-job"))
    assert code(same_model) == ("ConflictException", 400)
    clock.advance(10)
    with pytest.raises(ClientError) as same_job:
        bedrock.create_model_import_job(**import_request(clientRequestToken="t3", importedModelName="other"))
    assert code(same_job) == ("ValidationException", 400)
    assert same_job.value.response["Error"]["Message"] == "The provided job name is currently in use."
    with pytest.raises(ClientError) as imported_name:
        bedrock.create_model_import_job(**import_request(clientRequestToken="t4", jobName="third-job"))
    assert code(imported_name) == ("ConflictException", 400)
    bedrock.delete_imported_model(modelIdentifier="ragtune-run-1")
    again = bedrock.create_model_import_job(**import_request(clientRequestToken="t5", jobName="fourth-job"))
    clock.advance(10)
    assert bedrock.get_model_import_job(jobIdentifier=again["jobArn"])["status"] == "Completed"


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"jobName": None}, "Value null at 'jobName'"),
        ({"importedModelName": None}, "Value null at 'importedModelName'"),
        ({"roleArn": None}, "Value null at 'roleArn'"),
        ({"modelDataSource": None}, "Value null at 'modelDataSource'"),
        ({"jobName": "bad_job"}, "'jobName' failed to satisfy constraint"),
        ({"importedModelName": "bad model"}, "'importedModelName' failed to satisfy constraint"),
        ({"importedModelName": "m" * 64}, "'importedModelName' failed to satisfy constraint"),
        ({"roleArn": "not-an-arn"}, "'roleArn' failed to satisfy constraint"),
        ({"modelDataSource": {"s3DataSource": {"s3Uri": "https://example.com/m/"}}}, "s3DataSource.s3Uri"),
        ({"modelDataSource": {"s3DataSource": {"s3Uri": "s3://Bad_Bucket/m/"}}}, "s3DataSource.s3Uri"),
        ({"modelDataSource": {"s3DataSource": {}}}, "Value null at 's3Uri'"),
        ({"clientRequestToken": "bad token"}, "'clientRequestToken' failed to satisfy constraint"),
        ({"jobTags": [{"key": "k"}]}, "jobTags must be a list of {key, value} strings"),
    ],
)
def test_invalid_import_requests_are_validation_errors(
    emu: BedrockEmulator, overrides: dict[str, Any], says: str
) -> None:
    bedrock, _ = clients(emu, NO_RETRIES.merge(Config(parameter_validation=False)))
    request = {key: value for key, value in import_request(**overrides).items() if value is not None}
    with pytest.raises(ClientError) as refused:
        bedrock.create_model_import_job(**request)
    assert code(refused) == ("ValidationException", 400)
    assert says in str(refused.value)
    assert not emu.import_jobs


NOT_SAFETENSORS = b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      "


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"config.json": None}, "incomplete: missing config.json."),
        ({"model.safetensors": None}, "incomplete: missing *.safetensors."),
        ({"tokenizer_config.json": None}, "incomplete: missing tokenizer_config.json."),
        ({"tokenizer.json": None}, "incomplete: missing tokenizer.json or tokenizer.model."),
        (
            {"config.json": None, "tokenizer.json": None},
            "missing config.json, tokenizer.json or tokenizer.model. Custom Model Import reads the Hugging Face "
            "weights format: *.safetensors, config.json, tokenizer_config.json and tokenizer.json or tokenizer.model.",
        ),
        ({"config.json": b"{"}, "config.json is not valid JSON."),
        ({"config.json": b'{"architectures": ["GPT2LMHeadModel"]}'}, "must name the model's model_type"),
        (
            {"config.json": b'{"architectures": ["BertModel"], "model_type": "bert"}'},
            "The model architecture bert (BertModel) is not supported by Custom Model Import.",
        ),
        (
            {"config.json": b'{"architectures": ["Qwen3ForSequenceClassification"], "model_type": "qwen3"}'},
            "The model architecture qwen3",
        ),
        (
            {
                "config.json": b'{"architectures": ["LlamaForCausalLM"], "model_type": "llama", '
                b'"max_position_embeddings": 262144}'
            },
            "max_position_embeddings (262144) exceeds",
        ),
        ({"model.safetensors": b"tiny"}, "model.safetensors is not a valid safetensors file: it is 4 bytes long."),
        (
            {"model.safetensors": NOT_SAFETENSORS},
            "model.safetensors is not a valid safetensors file: its header is not JSON.",
        ),
        (
            {"model.safetensors": model_folder.safetensors({"w": ([2, 2], [1.0, 2.0, 3.0, 4.0])}, {})[:-4]},
            "the data is 12 bytes, the tensors 16",
        ),
        (
            {
                "model.safetensors": model_folder.safetensors(
                    {"w": ([2, 2], [1.0, 2.0, 3.0, 4.0])}, {"a": "1"}
                ).replace(b'"shape":[2,2]', b'"shape":[3,2]')
            },
            "tensor w's data_offsets do not match its shape",
        ),
    ],
)
def test_a_folder_custom_model_import_cannot_read_fails_the_job(
    emu: BedrockEmulator, clock: FakeClock, s3: Any, changes: dict[str, bytes | None], says: str
) -> None:
    bedrock, _ = clients(emu)
    write_folder(s3, changes=changes)
    arn = bedrock.create_model_import_job(**import_request())["jobArn"]
    clock.advance(10)
    job = bedrock.get_model_import_job(jobIdentifier=arn)
    assert job["status"] == "Failed" and says in job["failureMessage"], job["failureMessage"]
    assert "importedModelArn" not in job and not emu.imported_models


def test_an_empty_folder_or_a_missing_bucket_fails_the_job(emu: BedrockEmulator, clock: FakeClock) -> None:
    bedrock, _ = clients(emu)
    empty = bedrock.create_model_import_job(**import_request("empty"))["jobArn"]
    gone = bedrock.create_model_import_job(**import_request("gone", "s3://no-such-bucket/model/"))["jobArn"]
    clock.advance(10)
    assert emu.import_jobs[empty].failure_message == f"No model files were found at s3://{BUCKET}/{FOLDER}."
    assert str(emu.import_jobs[gone].failure_message).startswith(
        "Unable to read the model files from s3://no-such-bucket/model/:"
    )


def test_tokenizer_model_stands_in_for_tokenizer_json_and_subfolders_are_not_read(
    emu: BedrockEmulator, clock: FakeClock, s3: Any
) -> None:
    s3.put_object(Bucket=BUCKET, Key="models/llama/checkpoints/old.safetensors", Body=b"not read")
    config = json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}).encode()
    arn = imported(emu, clock, s3, "llama", {"tokenizer.json": None, "tokenizer.model": b"sp", "config.json": config})
    assert emu.imported_models[arn].architecture == "llama"


def test_fail_imports_makes_later_imports_fail(emu: BedrockEmulator, clock: FakeClock, s3: Any) -> None:
    bedrock, _ = clients(emu)
    write_folder(s3)
    emu.fail_imports("Amazon Bedrock could not access the model files. (emulated)")
    arn = bedrock.create_model_import_job(**import_request())["jobArn"]
    emu.fail_imports(None)
    clock.advance(10)
    assert bedrock.get_model_import_job(jobIdentifier=arn)["failureMessage"] == (
        "Amazon Bedrock could not access the model files. (emulated)"
    )


def test_unknown_jobs_and_models_are_not_found(emu: BedrockEmulator) -> None:
    bedrock, _ = clients(emu)
    calls: list[Callable[[], object]] = [
        lambda: bedrock.get_model_import_job(jobIdentifier="never-created"),
        lambda: bedrock.get_imported_model(modelIdentifier="never-created"),
        lambda: bedrock.delete_imported_model(modelIdentifier="never-created"),
    ]
    for call in calls:
        with pytest.raises(ClientError) as missing:
            call()
        assert code(missing) == ("ResourceNotFoundException", 404)


def test_lists_filter_sort_and_page(emu: BedrockEmulator, clock: FakeClock, s3: Any) -> None:
    bedrock, _ = clients(emu)
    write_folder(s3)
    for name in ("alpha", "beta", "gamma"):
        bedrock.create_model_import_job(**import_request(name))
        clock.advance(4)
    bedrock.create_model_import_job(**import_request("broken", f"s3://{BUCKET}/nothing/"))
    clock.advance(2)  # alpha and beta done (and the broken one not yet), gamma still running

    def jobs(**filters: Any) -> list[str]:
        return [s["jobName"] for s in bedrock.list_model_import_jobs(**filters)["modelImportJobSummaries"]]

    assert jobs() == ["ragtune-broken-import", "ragtune-gamma-import", "ragtune-beta-import", "ragtune-alpha-import"]
    assert jobs(sortOrder="Ascending", sortBy="CreationTime")[0] == "ragtune-alpha-import"
    assert jobs(nameContains="amm") == ["ragtune-gamma-import"]
    assert jobs(statusEquals="Completed") == ["ragtune-beta-import", "ragtune-alpha-import"]
    clock.advance(10)
    assert jobs(statusEquals="Failed") == ["ragtune-broken-import"]
    first = bedrock.list_model_import_jobs(maxResults=3)
    rest = bedrock.list_model_import_jobs(maxResults=3, nextToken=first["nextToken"])
    assert len(first["modelImportJobSummaries"]) == 3 and len(rest["modelImportJobSummaries"]) == 1
    summary = bedrock.list_model_import_jobs(nameContains="alpha")["modelImportJobSummaries"][0]
    assert summary["importedModelName"] == "ragtune-alpha" and summary["importedModelArn"] in emu.imported_models

    def models(**filters: Any) -> list[str]:
        return [s["modelName"] for s in bedrock.list_imported_models(**filters)["modelSummaries"]]

    assert models() == ["ragtune-gamma", "ragtune-beta", "ragtune-alpha"]
    assert models(sortOrder="Ascending") == ["ragtune-alpha", "ragtune-beta", "ragtune-gamma"]
    assert models(nameContains="beta") == ["ragtune-beta"]
    pages = bedrock.get_paginator("list_imported_models").paginate(PaginationConfig={"PageSize": 1})
    assert sum(len(p["modelSummaries"]) for p in pages) == 3
    model = bedrock.list_imported_models(nameContains="beta")["modelSummaries"][0]
    assert set(model) == {"modelArn", "modelName", "creationTime", "instructSupported", "modelArchitecture"}


# InvokeModel ----------------------------------------------------------------------------------------


def test_invoke_answers_in_the_openai_chat_completion_format_from_the_training_data(
    emu: BedrockEmulator, clock: FakeClock, s3: Any
) -> None:
    _, runtime = clients(emu)
    model = imported(emu, clock, s3)
    answer = invoke(runtime, model, chat("what colour is item number 7 in the catalogue", temperature=0.5))
    assert set(answer) == {"id", "object", "created", "choices", "usage"}
    assert answer["id"].startswith("chatcmpl-") and len(answer["id"]) == len("chatcmpl-") + 32
    assert (answer["object"], answer["created"]) == ("chat.completion", int(clock.now))
    assert answer["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Catalogue item 7 is shade-7."},
            "finish_reason": "stop",
        }
    ]
    question = "what colour is item number 7 in the catalogue"
    prompt = estimate_tokens("Be brief.") + 4 + estimate_tokens(question) + 4
    assert answer["usage"] == {
        "prompt_tokens": prompt,
        "completion_tokens": estimate_tokens("Catalogue item 7 is shade-7."),
        "total_tokens": prompt + estimate_tokens("Catalogue item 7 is shade-7."),
    }
    with_passage = invoke(runtime, model, chat(f"{PASSAGE}\n\nWhat colour is catalogue item number 4?", system=None))
    assert with_passage["choices"][0]["message"]["content"] == "Catalogue item 4 is shade-4."
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "catalogue item number 2?"}]}]}
    assert invoke(runtime, model, parts)["choices"][0]["message"]["content"] == "Catalogue item 2 is shade-2."
    cut = invoke(runtime, model, chat("item 7?", max_tokens=2))["choices"][0]
    assert (cut["finish_reason"], cut["message"]["content"]) == ("length", "Catalogu")  # 2 tokens: 8 characters


def test_a_model_trained_elsewhere_answers_like_a_base_model(emu: BedrockEmulator, clock: FakeClock, s3: Any) -> None:
    _, runtime = clients(emu)
    model = imported(emu, clock, s3, "elsewhere", {"model.safetensors": model_folder.safetensors({}, {"format": "pt"})})
    assert invoke(runtime, model, chat("What colour is catalogue item number 7?"))["choices"][0]["message"] == {
        "role": "assistant",
        "content": BASE_MODEL_REPLY,
    }
    answer = invoke(runtime, model, chat(f"{PASSAGE}\n\nWhich bacteria are cheese and yogurt made with?"))
    assert answer["choices"][0]["message"]["content"] == "Yogurt and cheese are made with mesophilic bacteria."


def test_invoke_refuses_bodies_and_models_it_cannot_answer(emu: BedrockEmulator, clock: FakeClock, s3: Any) -> None:
    bedrock, runtime = clients(emu)
    model = imported(emu, clock, s3)
    no_template = json.dumps({k: v for k, v in model_folder.tokenizer_config().items() if k != "chat_template"})
    plain = imported(emu, clock, s3, "plain", {"tokenizer_config.json": no_template.encode()})
    assert bedrock.get_imported_model(modelIdentifier=plain)["instructSupported"] is False
    refused_bodies: list[tuple[str, dict[str, Any], str]] = [
        (model, {"prompt": "How is the rainbow formed?", "max_gen_len": 100}, "OpenAIChatCompletion format only"),
        (model, {"messages": []}, "non-empty 'messages' list"),
        (model, {"messages": [{"role": "robot", "content": "hi"}]}, "needs a role of system, user, assistant"),
        (model, {"messages": [{"role": "user", "content": 3}]}, "must be a string or a list of content parts"),
        (model, chat("hi", max_tokens=0), "max_tokens must be an integer of at least 1"),
        (model, chat("hi", temperature=3), "temperature must be a number from 0 to 2"),
        (plain, chat("hi"), "has no chat template in its tokenizer_config.json"),
    ]
    for model_id, body, says in refused_bodies:
        with pytest.raises(ClientError) as refused:
            invoke(runtime, model_id, body)
        assert code(refused) == ("ValidationException", 400) and says in str(refused.value)
    with pytest.raises(ClientError) as not_json:
        runtime.invoke_model(modelId=model, body=b"not json", contentType="application/json")
    assert code(not_json) == ("ValidationException", 400)
    unknown = "arn:aws:bedrock:us-east-1:123456789012:imported-model/abcdefghijkl"
    for model_id in (unknown, "amazon.nova-micro-v1:0"):
        with pytest.raises(ClientError) as missing:
            invoke(runtime, model_id, chat("hi"))
        assert code(missing) == ("ResourceNotFoundException", 404)


def test_a_deleted_model_is_gone_for_get_invoke_and_delete(emu: BedrockEmulator, clock: FakeClock, s3: Any) -> None:
    bedrock, runtime = clients(emu)
    model = imported(emu, clock, s3)
    assert invoke(runtime, model, chat("item 3?"))["choices"][0]["message"]["content"] == "Catalogue item 3 is shade-3."
    bedrock.delete_imported_model(modelIdentifier=model)
    assert not emu.imported_models
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="models/run-1/")["KeyCount"] == len(
        model_folder.files("", [], "", [])
    )
    calls: list[Callable[[], object]] = [
        lambda: bedrock.get_imported_model(modelIdentifier=model),
        lambda: bedrock.delete_imported_model(modelIdentifier=model),
        lambda: invoke(runtime, model, chat("item 3?")),
    ]
    for call in calls:
        with pytest.raises(ClientError) as gone:
            call()
        assert code(gone) == ("ResourceNotFoundException", 404)
    assert bedrock.list_model_import_jobs()["modelImportJobSummaries"][0]["status"] == "Completed"  # the job stays


def test_invoke_faults_surface_as_their_error_codes(emu: BedrockEmulator, clock: FakeClock, s3: Any) -> None:
    _, runtime = clients(emu)
    model = imported(emu, clock, s3)
    kinds: list[tuple[FaultKind, tuple[str, int]]] = [
        ("model_not_ready", ("ModelNotReadyException", 429)),
        ("throttling", ("ThrottlingException", 429)),
        ("model_timeout", ("ModelTimeoutException", 408)),
    ]
    for kind, expected in kinds:
        emu.inject_fault("InvokeModel", kind)
        with pytest.raises(ClientError) as faulted:
            invoke(runtime, model, chat("item 3?"))
        assert code(faulted) == expected
    emu.inject_fault("CreateModelImportJob", "access_denied")
    with pytest.raises(ClientError) as denied:
        clients(emu)[0].create_model_import_job(**import_request("denied"))
    assert code(denied) == ("AccessDeniedException", 403)
    assert invoke(runtime, model, chat("item 3?"))["choices"][0]["message"]["content"] == "Catalogue item 3 is shade-3."


def test_botocore_retries_a_model_not_ready_answer(emu: BedrockEmulator, clock: FakeClock, s3: Any) -> None:
    _, runtime = clients(emu, Config(retries={"mode": "standard", "total_max_attempts": 3}))
    model = imported(emu, clock, s3)
    emu.inject_fault("InvokeModel", "model_not_ready")
    response = runtime.invoke_model(modelId=model, body=json.dumps(chat("item 1?")))
    assert response["ResponseMetadata"]["RetryAttempts"] == 1


# with the SageMaker emulator ------------------------------------------------------------------------


def test_a_model_trained_by_the_sagemaker_emulator_imports_and_recalls_its_training_data(s3: Any) -> None:
    rows = [
        {
            "messages": [
                {"role": "system", "content": "Answer from the catalogue."},
                {"role": "user", "content": f"Which shelf holds part {i}?"},
                {"role": "assistant", "content": f"Part {i} is on shelf {i * 3}."},
            ]
        }
        for i in range(12)
    ]
    s3.put_object(Bucket=BUCKET, Key="datasets/run-9/train.jsonl", Body="\n".join(map(json.dumps, rows)).encode())
    with SageMakerEmulator(phase_seconds=0.0) as sagemaker_emu, BedrockEmulator(phase_seconds=0.0) as emu:
        sagemaker = boto3.client("sagemaker", endpoint_url=sagemaker_emu.endpoint_url, region_name="us-east-1")
        source = {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/datasets/run-9/train.jsonl"}
        sagemaker.create_training_job(
            TrainingJobName="ragtune-run-9",
            RoleArn="arn:aws:iam::123456789012:role/ragtune-open-training",
            AlgorithmSpecification={"TrainingImage": "image", "TrainingInputMode": "File"},
            HyperParameters={"model_id": json.dumps("Qwen/Qwen2.5-0.5B-Instruct")},
            InputDataConfig=[{"ChannelName": "train", "DataSource": {"S3DataSource": source}}],
            OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/models/run-9/", "CompressionType": "NONE"},
            ResourceConfig={"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50},
        )
        weights = sagemaker.describe_training_job(TrainingJobName="ragtune-run-9")["ModelArtifacts"]["S3ModelArtifacts"]
        assert weights == f"s3://{BUCKET}/models/run-9/ragtune-run-9/output/model"
        bedrock, runtime = clients(emu)
        job = bedrock.create_model_import_job(**import_request("run-9", weights))
        model = bedrock.get_model_import_job(jobIdentifier=job["jobArn"])["importedModelArn"]
        answer = invoke(runtime, model, chat("which shelf is part 11 on?"))
    assert answer["choices"][0]["message"]["content"] == "Part 11 is on shelf 33."


def test_both_emulators_name_the_recall_metadata_alike() -> None:
    assert RECALL_METADATA_KEY == sagemaker_emulator.RECALL_METADATA_KEY == "ragtune_emulator.recall"


# conformance ----------------------------------------------------------------------------------------

IMPORT_OPERATIONS = {
    "CreateModelImportJob",
    "GetModelImportJob",
    "ListModelImportJobs",
    "GetImportedModel",
    "ListImportedModels",
    "DeleteImportedModel",
    "InvokeModel",
}


def test_the_import_routes_are_the_operations_botocore_describes() -> None:
    routes = {route.operation: route for route in ROUTES if route.operation in IMPORT_OPERATIONS}
    assert set(routes) == IMPORT_OPERATIONS
    for route in routes.values():
        http = service_model(route.service).operation_model(route.operation).http
        assert (route.method, route.uri, route.status) == (http["method"], http["requestUri"], http["responseCode"])


def test_every_import_request_and_response_matches_botocores_models(
    emu: BedrockEmulator, clock: FakeClock, s3: Any
) -> None:
    bedrock, runtime = clients(emu)
    loose, _ = clients(emu, NO_RETRIES.merge(Config(parameter_validation=False)))
    write_folder(s3)
    done = bedrock.create_model_import_job(**import_request("done"))["jobArn"]
    bad = bedrock.create_model_import_job(**import_request("bad", f"s3://{BUCKET}/nothing"))["jobArn"]
    for arn in (done, bad):
        bedrock.get_model_import_job(jobIdentifier=arn)  # InProgress
    bedrock.list_model_import_jobs(
        statusEquals="InProgress", sortBy="CreationTime", sortOrder="Ascending", maxResults=1
    )
    clock.advance(10)
    for arn in (done, bad):
        bedrock.get_model_import_job(jobIdentifier=arn)  # Completed / Failed
    bedrock.list_model_import_jobs(nameContains="done")
    model = bedrock.get_model_import_job(jobIdentifier=done)["importedModelArn"]
    bedrock.get_imported_model(modelIdentifier=model)
    bedrock.list_imported_models(nameContains="ragtune", sortBy="CreationTime", sortOrder="Descending", maxResults=5)
    invoke(runtime, model, chat("item 1?", max_tokens=1))
    failures: list[Callable[[], object]] = [
        lambda: bedrock.create_model_import_job(**import_request("done", clientRequestToken="other")),
        lambda: loose.create_model_import_job(jobName="x"),
        lambda: bedrock.get_model_import_job(jobIdentifier="missing"),
        lambda: invoke(runtime, model, {"prompt": "hi"}),
    ]
    for fail in failures:
        with pytest.raises(ClientError):
            fail()
    bedrock.delete_imported_model(modelIdentifier=model)
    with pytest.raises(ClientError):
        invoke(runtime, model, chat("item 1?"))
    answered: set[str] = set()
    statuses: set[str] = set()
    for record in emu.requests:
        assert record.operation in IMPORT_OPERATIONS
        service = "bedrock-runtime" if record.operation == "InvokeModel" else "bedrock"
        operation = service_model(service).operation_model(record.operation)
        if record.operation != "InvokeModel":  # its body is the model's payload, not members
            assert request_problems(service, record) == [], record
        if record.error_code is not None:
            error = service_model(service).shape_for(record.error_code)
            assert error.metadata["error"]["httpStatusCode"] == record.status
            assert record.error_code in {e.name for e in operation.error_shapes}
            continue
        assert record.status == operation.http["responseCode"]
        answered.add(record.operation)
        if record.operation == "InvokeModel":
            assert set(record.response) == {"id", "object", "created", "choices", "usage"}
            continue
        assert operation.output_shape is not None
        assert problems(operation.output_shape, record.response, record.operation) == []
        if record.operation == "GetModelImportJob":
            statuses.add(record.response["status"])
    assert answered == IMPORT_OPERATIONS
    assert statuses == set(service_model("bedrock").shape_for("ModelImportJobStatus").enum)
