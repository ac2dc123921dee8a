"""Every response the emulator gives, endpoint by endpoint, validated against OpenAI's OpenAPI spec.

The spec is OpenAPI 3.1 but keeps a few 3.0-isms that JSON Schema 2020-12 reads differently, so a copy
is normalised first: ``nullable: true`` widens ``type`` to allow null, and boolean ``exclusiveMinimum``
becomes the 2020-12 numeric form. Unknown keywords (``x-*``, ``discriminator``) are ignored by jsonschema.
One amendment: the spec's own pause example answers ``"status": "paused"`` while the FineTuningJob
status enum omits it, so "paused" is added to that enum.
"""

from __future__ import annotations

import copy
import importlib.util
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from local.openai_emulator import OpenAIEmulator
from local.openai_emulator.server import ROUTES

from .conftest import FakeClock, client_for, training_jsonl, upload_training

# The subset of OpenAI's spec the project uses, vendored with its licence (see openai-spec/README.md).
SPEC_DIR = Path(__file__).resolve().parent / "openai-spec"
SPEC_PATH = SPEC_DIR / "openapi.yaml"
SPEC_URI = "urn:openai-openapi"


def _load_spec() -> dict[str, Any]:
    with SPEC_PATH.open(encoding="utf-8") as handle:
        loaded: dict[str, Any] = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return loaded


def _normalise(node: Any) -> Any:
    if isinstance(node, list):
        return [_normalise(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _normalise(value) for key, value in node.items()}
    if node.get("nullable") is True and isinstance(node.get("type"), str):
        node["type"] = [node["type"], "null"]
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if isinstance(node.get(exclusive), bool) and node.pop(exclusive) and bound in node:
            node[exclusive] = node.pop(bound)
    return node


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    spec = _normalise(copy.deepcopy(_load_spec()))
    spec["components"]["schemas"]["FineTuningJob"]["properties"]["status"]["enum"].append("paused")
    return spec  # type: ignore[no-any-return]


def _exercise_every_endpoint(emu: OpenAIEmulator, clock: FakeClock) -> None:
    client = client_for(emu)
    jobs = client.fine_tuning.jobs
    training = upload_training(client)
    client.files.retrieve(training)
    client.files.list(purpose="fine-tune", order="desc", limit=5)
    client.files.content(training)
    client.files.delete(upload_training(client))
    data = training_jsonl()
    upload = client.uploads.create(bytes=len(data), filename="t.jsonl", mime_type="text/jsonl", purpose="fine-tune")
    part = client.uploads.parts.create(upload.id, data=data)
    client.uploads.complete(upload.id, part_ids=[part.id])

    job = jobs.create(model="gpt-4o-mini", training_file=training, metadata={"run_id": "r"}, suffix="spec")
    jobs.cancel(jobs.create(model="gpt-4o-mini", training_file=training).id)
    jobs.create(model="gpt-4o-mini", training_file=upload_training(client, b"broken"))
    for _ in range(2):
        clock.advance(12)
        jobs.retrieve(job.id)
    jobs.pause(job.id)
    jobs.resume(job.id)
    jobs.list_events(job.id)
    clock.advance(30)
    for listing in (jobs.list(), jobs.list(metadata={"run_id": "r"}), jobs.list_events(job.id, limit=50)):
        assert listing.data
    tuned = jobs.checkpoints.list(job.id).data[0].fine_tuned_model_checkpoint
    for model in (tuned, "gpt-4o-mini"):
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "item 3?"}])
    for model in ("gpt-4o-mini-2024-07-18", "gpt-4o-mini", tuned, jobs.retrieve(job.id).fine_tuned_model or ""):
        client.models.retrieve(model)  # a date, null, and a fine-tune's (its base model's) date

    failures: list[Callable[[], object]] = [
        lambda: client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}]),
        lambda: client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}], temperature=3
        ),
        lambda: jobs.create(model="gpt-4o-mini", training_file="file-missing"),
        lambda: jobs.cancel(job.id),
        lambda: jobs.retrieve("ftjob-missing"),
        lambda: client.files.retrieve("file-missing"),
        lambda: client.models.retrieve("no-such-model"),
        lambda: client.get("/no/such/route", cast_to=object),
    ]
    emu.inject_fault("/chat/completions", status=429)
    failures.insert(0, failures[0])  # the same call twice: the fault answers 429, then the model 404s
    for fail in failures:
        with pytest.raises(openai.APIStatusError):
            fail()
    emu.fine_tuning_access = False
    with pytest.raises(openai.PermissionDeniedError):
        jobs.create(model="gpt-4o-mini", training_file=training)
    httpx2.get(f"{emu.base_url}/fine_tuning/jobs")  # no API key


def test_every_response_matches_the_spec(spec: dict[str, Any], clock: FakeClock) -> None:
    registry: Registry[Any] = Registry().with_resource(SPEC_URI, DRAFT202012.create_resource(spec))

    def validator(ref: str) -> Draft202012Validator:
        return Draft202012Validator({"$ref": SPEC_URI + ref}, registry=registry)

    with OpenAIEmulator(phase_seconds=10.0, clock=clock) as emu:
        _exercise_every_endpoint(emu, clock)
    error_validator = validator("#/components/schemas/ErrorResponse")
    checked: set[tuple[str, str]] = set()
    for record in emu.requests:
        if record.status != 200:
            error_validator.validate(record.response)
            assert set(record.response["error"]) == {"message", "type", "param", "code"}
            continue
        assert record.route is not None
        schema = spec["paths"][record.route][record.method.lower()]["responses"]["200"]["content"]["application/json"]
        if record.response is None:  # file content is raw bytes, not JSON
            assert schema["schema"] == {"type": "string"}
            continue
        ref = schema["schema"]["$ref"]
        validator(ref).validate(record.response)
        declared = spec["components"]["schemas"][ref.rsplit("/", 1)[1]].get("properties", {})
        assert set(record.response) <= set(declared), f"undeclared fields in {record.method} {record.route}"
        checked.add((record.method, record.route))
    assert len(checked) == 17  # every JSON-answering endpoint the emulator serves
    statuses = {r.status for r in emu.requests}
    assert {400, 401, 403, 404, 429} <= statuses


def _cut_subset_module() -> Any:
    loaded = importlib.util.spec_from_file_location("cut_subset", SPEC_DIR / "cut_subset.py")
    assert loaded is not None and loaded.loader is not None
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    return module


def test_the_vendored_spec_covers_every_emulator_route_and_is_closed_under_refs() -> None:
    cut_subset, vendored = _cut_subset_module(), _load_spec()
    served = {(method.lower(), path) for method, path, _ in ROUTES}
    assert served == set(cut_subset.OPERATIONS)
    assert all(method in vendored["paths"][path] for method, path in served)
    # Each handler is named after its operation: createFineTuningJob is served by create_fine_tuning_job.
    for method, path, handler in ROUTES:
        operation_id = vendored["paths"][path][method.lower()]["operationId"]
        assert handler.__name__ == re.sub(r"(?<!^)([A-Z])", r"_\1", operation_id).lower()
    # Cutting the subset again changes nothing: every $ref it holds resolves inside it.
    assert cut_subset.cut(vendored) == vendored
    assert (SPEC_DIR / "LICENSE").read_text(encoding="utf-8").startswith("The MIT License")
    assert "f85dbe2" in (SPEC_DIR / "README.md").read_text(encoding="utf-8")
