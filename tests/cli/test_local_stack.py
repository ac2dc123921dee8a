"""Every command that talks to a deployment, run as a user runs it, against the local stack in serve mode."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from shared.domain.run_ids import derive_run_id

from .conftest import EXAMPLES, RAGTUNE, LocalStack, installed_ragtune, ragtune, user_shell

FAQ = EXAMPLES / "data" / "faq.csv"
WATCH = ("--interval", "0.2", "--timeout", "60")


def test_make_install_put_the_command_beside_the_venvs_python() -> None:
    result = installed_ragtune("--help", env=user_shell())

    assert RAGTUNE.is_file()
    assert result.code == 0
    for command in ("validate", "submit", "watch", "runs", "show", "ask", "cancel", "delete-model", "eval", "curve"):
        assert f"  {command} " in result.stdout


def test_submit_uploads_data_and_config_and_prints_the_run_id_the_pipeline_derives(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    submitted = installed_ragtune(  # the script itself, once, on the way a user starts
        "submit", str(EXAMPLES / "csv-prompt-answer.json"), "--data", str(FAQ), "--json", env=local_stack.env
    )

    assert submitted.code == 0, submitted.stderr
    bucket = local_stack.exported["RAGTUNE_BUCKET"]
    answer = submitted.json()
    s3 = local_stack.client("s3")
    data_object = s3.head_object(Bucket=bucket, Key="data/faq.csv")
    assert answer == {
        "run_id": answer["run_id"],
        "bucket": bucket,
        "config_key": "configs/csv-prompt-answer.json",
        "data_key": "data/faq.csv",
        "data_version_id": data_object["VersionId"],
        "data_etag": hashlib.md5(FAQ.read_bytes(), usedforsecurity=False).hexdigest(),
    }
    uploaded = s3.get_object(Bucket=bucket, Key="configs/csv-prompt-answer.json")["Body"].read()
    assert json.loads(uploaded)["dataset"]["source"] == f"s3://{bucket}/data/faq.csv"
    assert s3.get_object(Bucket=bucket, Key="data/faq.csv")["Body"].read() == FAQ.read_bytes()
    assert answer["run_id"] == derive_run_id("configs/csv-prompt-answer.json", uploaded)
    [listed] = [r for r in local_stack.api("/runs")["runs"] if r["config_key"] == "configs/csv-prompt-answer.json"]
    assert listed["run_id"] == answer["run_id"]

    # watch: one JSON line per change, steps of the total and losses read from the job's events, exit 0
    watched = ragtune("watch", answer["run_id"], *WATCH, "--json", env=local_stack.env)
    assert watched.code == 0, watched.stderr
    snapshots = watched.json_lines()
    assert snapshots[-1]["status"] == "succeeded" and snapshots[-1]["finished"] is True
    assert snapshots[-1]["step"] == snapshots[-1]["total_steps"] > 0
    assert snapshots[-1]["fine_tuned_model"].startswith("ft:gpt-4o-mini-2024-07-18:emulator:thermostat-faq:")
    assert all(s["train_loss"] > 0 for s in snapshots if s["status"] == "running" and s["step"])
    assert all(s["elapsed_seconds"] > 0 for s in snapshots)

    # the same run in plain text: the final line names the model
    lines = ragtune("watch", answer["run_id"], *WATCH, env=local_stack.env).stdout.splitlines()
    assert lines[-2].startswith(f"succeeded  step {snapshots[-1]['total_steps']}/{snapshots[-1]['total_steps']}")
    assert lines[-1] == f"run {answer['run_id']} succeeded: model {snapshots[-1]['fine_tuned_model']}"

    run_id, model = answer["run_id"], snapshots[-1]["fine_tuned_model"]

    # curve, straight after watch: it waits for the PNG the deployment draws just after the job ends
    curve = ragtune("curve", run_id, "-o", str(tmp_path / "loss.png"), env=local_stack.env)
    assert curve.code == 0, curve.stderr
    assert (tmp_path / "loss.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert curve.stdout.startswith(f"saved the loss curve of run {run_id} to {tmp_path / 'loss.png'} (")

    # runs and show: the API's bodies as JSON, tables otherwise
    runs = ragtune("runs", "--json", env=local_stack.env)
    assert runs.code == 0 and run_id in [r["run_id"] for r in runs.json()["runs"]]
    [row] = [line for line in ragtune("runs", env=local_stack.env).stdout.splitlines() if run_id in line]
    assert row.split()[:3] == [run_id, "succeeded", "openai"] and model in row
    shown = ragtune("show", run_id, "--json", env=local_stack.env)
    detail = local_stack.api(f"/runs/{run_id}")
    assert shown.code == 0, shown.stderr
    # report_urls are presigned anew on every GET: the same reports, other signatures
    assert shown.json().pop("report_urls").keys() == detail.pop("report_urls").keys()
    assert shown.json() | {"report_urls": None} == detail | {"report_urls": None}
    table = {
        line.split("  ", 1)[0]: line.split("  ", 1)[1].strip()
        for line in ragtune("show", run_id, env=local_stack.env).stdout.splitlines()[1:]
    }
    estimate = detail["estimate"]
    assert table["status"] == "succeeded" and table["provider"] == "openai" and table["tuned model"] == model
    assert table["rows"] == "20 read, 20 kept, 0 dropped"
    assert (
        table["estimate"]
        == f"{estimate['epochs']} epochs, {estimate['trained_tokens']:,} trained tokens, ${estimate['cost_usd']:,.4f}"
    )

    # ask: the answer, the model and the run, the latest succeeded run's unless --run names one
    asked = ragtune("ask", "How do I lock the keypad?", "--run", run_id, "--json", env=local_stack.env)
    assert asked.code == 0, asked.stderr
    assert asked.json()["answer"].startswith("Hold the lock button for three seconds")
    assert (asked.json()["model"], asked.json()["run_id"]) == (model, run_id)
    latest = ragtune("ask", "Which batteries does the thermostat take?", env=local_stack.env).stdout.splitlines()
    assert latest[0].startswith("Two AAA alkaline batteries")
    assert latest[1:] == [f"model: {model}", f"run: {run_id} (the latest succeeded run; pass --run RUN_ID to choose)"]


def test_submit_refuses_what_would_start_nothing_and_uploads_nothing(local_stack: LocalStack, tmp_path: Path) -> None:
    """A name the pipeline does not read, and a config whose run exists (it would only replace that run's data)."""
    text_config = tmp_path / "faq.txt"
    text_config.write_bytes((EXAMPLES / "csv-prompt-answer.json").read_bytes())
    config = tmp_path / "refused-twice.json"
    config.write_bytes((EXAMPLES / "csv-prompt-answer.json").read_bytes())
    first = ragtune("submit", str(config), "--data", str(FAQ), "--json", env=local_stack.env)
    assert first.code == 0, first.stderr
    run_id = first.json()["run_id"]
    ragtune("watch", run_id, *WATCH, env=local_stack.env)

    as_text = ragtune("submit", str(text_config), "--data", str(FAQ), env=local_stack.env)
    again = ragtune("submit", str(config), "--data", str(FAQ), env=local_stack.env)

    assert as_text.code == 2
    assert as_text.stderr.startswith(f"{text_config}: the pipeline starts a run only for configs/*.json")
    assert again.code == 2
    assert again.stderr.startswith(f"Run {run_id} exists already (succeeded): the same config name and content")
    keys = [
        o["Key"]
        for o in local_stack.client("s3").list_objects_v2(Bucket=local_stack.exported["RAGTUNE_BUCKET"])["Contents"]
    ]
    assert "configs/faq.txt" not in keys
    versions = local_stack.client("s3").list_object_versions(
        Bucket=local_stack.exported["RAGTUNE_BUCKET"], Prefix="configs/refused-twice.json"
    )["Versions"]
    assert len(versions) == 1  # uploaded once


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def test_submit_data_points_a_local_source_at_the_upload_and_never_silently_replaces_a_file(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    """A config written for --data names the local file; two files of one name would share data/<name>."""
    bucket, key = local_stack.exported["RAGTUNE_BUCKET"], "data/shared-name.csv"
    s3 = local_stack.client("s3")
    mine, theirs = tmp_path / "mine" / "shared-name.csv", tmp_path / "theirs" / "shared-name.csv"
    mine.parent.mkdir()
    theirs.parent.mkdir()
    mine.write_bytes(FAQ.read_bytes())
    theirs.write_bytes(FAQ.read_bytes() + b"Is there a night mode?,Yes: hold the light button for two seconds.\n")
    configs = {}
    for name, source in (("first", "./shared-name.csv"), ("second", "shared-name.csv"), ("third", "data/x.csv")):
        configs[name] = tmp_path / f"shared-name-{name}.json"
        example = json.loads((EXAMPLES / "csv-prompt-answer.json").read_text(encoding="utf-8"))
        configs[name].write_text(json.dumps({**example, "dataset": {"source": source}}), encoding="utf-8")

    first = ragtune("submit", str(configs["first"]), "--data", str(mine), env=local_stack.env)
    stored = s3.head_object(Bucket=bucket, Key=key)
    refused = ragtune("submit", str(configs["second"]), "--data", str(theirs), env=local_stack.env)
    refused_keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="configs/shared-name-")["Contents"]]
    same = ragtune("submit", str(configs["second"]), "--data", str(mine), "--json", env=local_stack.env)
    forced = ragtune("submit", str(configs["third"]), "--data", str(theirs), "--force", "--json", env=local_stack.env)

    assert first.code == 0, first.stderr
    version = stored["VersionId"]
    uploaded = s3.get_object(Bucket=bucket, Key="configs/shared-name-first.json")["Body"].read()
    assert json.loads(uploaded)["dataset"]["source"] == f"s3://{bucket}/{key}"
    run_id = derive_run_id("configs/shared-name-first.json", uploaded)
    assert first.stdout.splitlines() == [
        f"uploaded {mine} to s3://{bucket}/{key} (version {version}, ETag {_md5(mine)})",
        f"uploaded {configs['first']} to s3://{bucket}/configs/shared-name-first.json",
        f"run {run_id}",
        f"follow it with: ragtune watch {run_id}",
    ]
    assert (refused.code, refused.stdout) == (2, "")
    assert refused.stderr == (
        f"s3://{bucket}/{key} already holds another file ({len(mine.read_bytes()):,} bytes, uploaded "
        f"{stored['LastModified']:%Y-%m-%d %H:%M:%S} UTC, version {version}, ETag {_md5(mine)}): rename yours, or "
        "pass --force to replace it.\n"
    )
    assert refused_keys == ["configs/shared-name-first.json"]  # nothing of the refused submit was uploaded
    assert same.code == 0, same.stderr
    assert (same.json()["data_version_id"], same.json()["data_etag"]) == (version, _md5(mine))
    assert forced.code == 0, forced.stderr
    versions = s3.list_object_versions(Bucket=bucket, Prefix=key)["Versions"]
    assert len(versions) == 2  # the same file was not uploaded again; --force replaced it once
    [latest] = [v for v in versions if v["IsLatest"]]
    assert (forced.json()["data_version_id"], forced.json()["data_etag"]) == (latest["VersionId"], _md5(theirs))
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == theirs.read_bytes()


def test_eval_shows_the_evaluation_the_runs_tracking_made(local_stack: LocalStack) -> None:
    """A config with a validation split: once the run succeeds, its held-out questions are asked of each arm."""
    config = EXAMPLES / "validation-and-hyperparameters.json"
    submitted = ragtune("submit", str(config), "--data", str(FAQ), "--json", env=local_stack.env)
    run_id = submitted.json()["run_id"]

    watched = ragtune("watch", run_id, *WATCH, "--json", env=local_stack.env)
    evaluated = ragtune("eval", run_id, "--interval", "0.2", "--timeout", "60", "--json", env=local_stack.env)
    table = ragtune("eval", run_id, env=local_stack.env)

    assert watched.code == 0, watched.stderr
    assert evaluated.code == 0, evaluated.stderr
    evaluation = evaluated.json()
    assert evaluation["status"] == "succeeded" and evaluation["questions"] == 4
    assert [arm["name"] for arm in evaluation["arms"]] == ["tuned", "base"]  # context_column null: no RAG arm
    assert evaluation == local_stack.api(f"/runs/{run_id}/evaluation")
    assert table.stdout.splitlines()[0] == "evaluation: succeeded, 4 questions"
    [tuned] = [line.split() for line in table.stdout.splitlines() if line.split()[:1] == ["tuned"]]
    assert tuned[1] == evaluation["arms"][0]["model"]


def test_watch_exits_1_with_the_error_of_a_failed_run(local_stack: LocalStack, tmp_path: Path) -> None:
    config = tmp_path / "wrong-columns.json"
    config.write_text(json.dumps({"dataset": {"source": "placeholder/any"}, "filter": {"non_empty": []}}))

    submitted = ragtune("submit", str(config), "--data", str(FAQ), "--json", env=local_stack.env)
    watched = ragtune("watch", submitted.json()["run_id"], *WATCH, env=local_stack.env)

    assert submitted.code == 0, submitted.stderr
    no_questions = ragtune("eval", submitted.json()["run_id"], env=local_stack.env)
    assert no_questions.code == 2
    assert no_questions.stderr.startswith(f"Run {submitted.json()['run_id']} has no held-out questions to evaluate")
    assert watched.code == 1
    assert watched.stderr.startswith(
        f"Run {submitted.json()['run_id']} ended failed: dataset has no column(s) correct_answer, question, support "
        "used by the config's filter/template; it has: answer, prompt."
    )


def test_cancel_stops_a_running_job_and_watch_then_exits_1(local_stack: LocalStack) -> None:
    submitted = ragtune(
        "submit",
        str(EXAMPLES / "jsonl-other-columns.json"),
        "--data",
        str(EXAMPLES / "data" / "manual.jsonl"),
        "--json",
        env=local_stack.env,
    )
    run_id = submitted.json()["run_id"]

    cancelled = ragtune("cancel", run_id, "--json", env=local_stack.env)
    watched = ragtune("watch", run_id, *WATCH, env=local_stack.env)
    again = ragtune("cancel", run_id, env=local_stack.env)

    assert cancelled.code == 0, cancelled.stderr
    assert cancelled.json() == {"run_id": run_id, "status": "cancelled"}
    assert watched.code == 1
    assert watched.stderr.startswith(f"Run {run_id} ended cancelled:")
    assert (again.code, again.stderr) == (2, f"Run {run_id} is already cancelled: there is nothing to cancel.\n")


def test_errors_are_sentences_with_the_next_step(local_stack: LocalStack) -> None:
    wrong_key = ragtune("runs", env={**local_stack.env, "RAGTUNE_API_KEY": "not-the-key"})
    unknown_run = ragtune("show", "no-such-run", env=local_stack.env)
    nowhere = ragtune("runs", env=user_shell())
    half = ragtune("watch", "x", env=user_shell(RAGTUNE_API_URL=local_stack.exported["RAGTUNE_API_URL"]))
    other_bucket = ragtune(
        "submit", str(EXAMPLES / "openai.json"), env={**local_stack.env, "RAGTUNE_BUCKET": "elsewhere"}
    )

    assert (wrong_key.code, wrong_key.stdout) == (2, "")
    assert wrong_key.stderr.startswith("The API refused the API key (403 Forbidden): check RAGTUNE_API_KEY")
    assert unknown_run.code == 2
    assert unknown_run.stderr.strip() == "No run with id 'no-such-run'. List the runs with `ragtune runs`."
    assert nowhere.code == 2
    assert nowhere.stderr.startswith("No deployment to talk to: pass --stack NAME")
    assert half.code == 2
    assert half.stderr.startswith("RAGTUNE_API_KEY, RAGTUNE_BUCKET are not set")
    assert other_bucket.code == 2
    assert other_bucket.stderr.startswith(
        f"{EXAMPLES / 'openai.json'}: dataset.source is in bucket ragtune-data-123456789012-us-east-1, but this "
        "deployment reads only s3://elsewhere/data/: pass --data FILE"
    )
    for result in (wrong_key, unknown_run, nowhere, half, other_bucket):
        assert "Traceback" not in result.stderr


def test_stack_reads_the_outputs_and_the_api_key_of_a_deployed_stack(local_stack: LocalStack) -> None:
    """A stack in moto's CloudFormation whose outputs name the local stack, its key value held by API Gateway."""
    key = local_stack.client("apigateway").create_api_key(name="ragtune", value=local_stack.exported["RAGTUNE_API_KEY"])
    outputs = {
        "DataBucketName": local_stack.exported["RAGTUNE_BUCKET"],
        "ApiUrl": local_stack.exported["RAGTUNE_API_URL"],
        "ApiKeyId": key["id"],
    }
    template = {
        "Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {name: {"Value": value} for name, value in outputs.items()},
    }
    local_stack.client("cloudformation").create_stack(StackName="ragtune-cli-test", TemplateBody=json.dumps(template))
    aws = {
        "AWS_ENDPOINT_URL": local_stack.exported["RAGTUNE_S3_ENDPOINT"],
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
    }

    found = ragtune("runs", "--stack", "ragtune-cli-test", "--region", "us-east-1", "--json", env=user_shell(**aws))
    missing = ragtune("runs", "--stack", "no-such-stack", "--region", "us-east-1", env=user_shell(**aws))
    no_credentials = ragtune("runs", "--stack", "ragtune-cli-test", "--region", "us-east-1", env=user_shell())

    assert found.code == 0, found.stderr
    # The same listing (the module's other runs may still be moving between the two calls: their ids, in order)
    assert [run["run_id"] for run in found.json()["runs"]] == [
        run["run_id"] for run in local_stack.api("/runs")["runs"]
    ]
    assert missing.code == 2
    assert missing.stderr.startswith(
        "Stack 'no-such-stack' was not found in us-east-1: check its name (`aws cloudformation list-stacks`)"
    )
    assert no_credentials.code == 2
    assert no_credentials.stderr.startswith(
        "No AWS credentials found while reading the outputs of stack 'ragtune-cli-test' in us-east-1: "
        "run `aws configure`"
    )
