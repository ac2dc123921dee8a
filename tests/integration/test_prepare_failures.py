"""Every way a user's input can be wrong ends as a failed run that says why, with nothing written."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import datasets
import pytest

from functions.prepare.app import lambda_handler
from local.openai_emulator import OpenAIEmulator
from shared.aws.runs import RunsRepository
from shared.domain import dataset_source
from shared.domain.run_ids import derive_run_id
from shared.settings import settings
from tests.helpers import Aws, hub_folder_whose_card_names, load_event, sciq_row, write_jsonl

CONFIG_KEY = "configs/sciq-sample.json"


def invoke_and_get_failed_run(aws_account: Aws, context: Any) -> dict[str, Any]:
    result = lambda_handler(load_event("prepare-config-created.json"), context)  # must not raise
    runs = aws_account.runs()
    assert len(runs) == 1
    run = runs[0]
    assert run["status"] == "failed"
    assert result == {"runs": [{"run_id": run["run_id"], "status": "failed", "error": run["error"]["message"]}]}
    assert aws_account.keys("datasets/") == []  # nothing that could reach OpenAI
    return run


@pytest.mark.parametrize(
    ("body", "code", "expected"),
    [
        (b"{not json", "invalid_config", "config is not valid JSON: Expecting property name"),
        (b"", "invalid_config", "config is not valid JSON: Expecting value at line 1 column 1"),
        (b"[1, 2]", "invalid_config", "config must be a JSON object"),
        (b"{}", "invalid_config", "dataset: Field required"),
        (
            json.dumps({"dataset": {"source": "allenai/sciq"}, "epochs": 3}).encode(),
            "invalid_config",
            "epochs: unknown key",
        ),
        (
            json.dumps({"dataset": {"source": "allenai/sciq", "spilt": "train"}}).encode(),
            "invalid_config",
            "dataset.spilt: unknown key",
        ),
        (
            json.dumps({"dataset": {"source": "allenai/sciq"}, "validation_fraction": 2}).encode(),
            "invalid_config",
            "validation_fraction must be 0 (no validation split) or a number from 0.0001 to 0.5",
        ),
        (
            json.dumps({"dataset": {"source": "allenai/sciq"}, "max_examples": 3}).encode(),
            "invalid_config",
            "max_examples must be an integer from 10 to 1,000,000,000 (or left out for every row)",
        ),
        # Numbers the schema took and DynamoDB could not hold: the run stayed `preparing` and Lambda retried.
        (
            b'{"dataset": {"source": "allenai/sciq"}, "max_examples": ' + b"9" * 45 + b"}",
            "invalid_config",
            "max_examples must be an integer from 10 to 1,000,000,000 (or left out for every row)",
        ),
        (
            b'{"dataset": {"source": "allenai/sciq"}, "validation_fraction": 1e-300}',
            "invalid_config",
            "validation_fraction must be 0 (no validation split) or a number from 0.0001 to 0.5",
        ),
        (
            b'{"dataset": {"source": "allenai/sciq"}, "fine_tune": {"hyperparameters": '
            b'{"learning_rate_multiplier": 1e-300}}}',
            "invalid_config",
            'fine_tune.hyperparameters.learning_rate_multiplier must be "auto" or a number from 0.001 to 10',
        ),
        (
            b'{"dataset": {"source": "allenai/sciq"}, "validation_fraction": NaN}',
            "invalid_config",
            "validation_fraction must be 0 (no validation split) or a number from 0.0001 to 0.5",
        ),
        (
            b'{"dataset": {"source": "allenai/sciq"}, "validation_fraction": true}',
            "invalid_config",
            "validation_fraction must be 0 (no validation split) or a number from 0.0001 to 0.5",
        ),
        (
            b'{"dataset": {"source": "s3://another-bucket/data/x.csv"}, "dataset": {"source": "allenai/sciq"}}',
            "invalid_config",
            'config is not valid: the key "dataset" appears twice in one object; write it once',
        ),
        (
            json.dumps(
                {"dataset": {"source": "allenai/sciq"}, "fine_tune": {"hyperparameters": {"n_epochs": 0}}}
            ).encode(),
            "invalid_config",
            "fine_tune.hyperparameters.n_epochs",
        ),
        (
            json.dumps({"dataset": {"source": "allenai/sciq"}, "fine_tune": {"suffix": "x" * 65}}).encode(),
            "invalid_config",
            "fine_tune.suffix: String should have at most 64 characters",
        ),
        (
            json.dumps({"dataset": {"source": "allenai/sciq"}, "template": {"user": "{question!r}"}}).encode(),
            "invalid_config",
            "template.user: placeholder {question!r} is not a plain column name",
        ),
        (
            b'{"a":' * 5000 + b"1" + b"}" * 5000,
            "invalid_config",
            "config is nested more than 32 levels deep; the limit is 32",
        ),
        (
            b'{"dataset": {"source": "allenai/sciq"}, "seed": ' + b"[" * 60_000,
            "invalid_config",
            "config is nested more than 32 levels deep",
        ),
        (b'\xff\xfe{"dataset": {"source": "allenai/sciq"}}', "invalid_config", "config is not UTF-8 text"),
        (b'{"dataset": {"source": "allenai/sciq\xe9"}}', "invalid_config", "config is not UTF-8 text"),
        (
            b'{"dataset": {"source": "allenai/sciq"}, "template": {"system": "\\udc80"}}',
            "invalid_config",
            "config is not valid Unicode text",
        ),
        (
            json.dumps(
                {"dataset": {"source": "allenai/sciq"}, "fine_tune": {"hyperparameters": {"batch_size": 1000}}}
            ).encode(),
            "invalid_config",
            'config is invalid: fine_tune.hyperparameters.batch_size must be "auto" or an integer from 1 to 256',
        ),
    ],
    ids=[
        "not-json",
        "empty",
        "not-object",
        "no-dataset",
        "unknown-key",
        "unknown-nested-key",
        "fraction",
        "max-examples",
        "max-examples-45-digits",
        "fraction-1e-300",
        "multiplier-1e-300",
        "fraction-nan",
        "fraction-true",
        "duplicate-key",
        "epochs",
        "suffix",
        "placeholder",
        "deep",
        "deep-unclosed",
        "not-utf8",
        "latin1",
        "lone-surrogate",
        "union-sentence",
    ],
)
def test_broken_config(aws_account: Aws, lambda_context: Any, body: bytes, code: str, expected: str) -> None:
    aws_account.put_config(CONFIG_KEY, body)

    run = invoke_and_get_failed_run(aws_account, lambda_context)

    assert run["error"]["code"] == code
    assert expected in run["error"]["message"]


def test_a_local_dataset_path_is_refused_whether_or_not_it_exists(
    aws_account: Aws, lambda_context: Any, tmp_path: Path
) -> None:
    aws_account.put_config(CONFIG_KEY, {"dataset": {"source": str(tmp_path / "nope.jsonl")}})

    run = invoke_and_get_failed_run(aws_account, lambda_context)

    assert run["error"] == {
        "code": "invalid_config",
        "message": (
            'config is invalid: dataset.source must be a Hugging Face Hub dataset id ("owner/name", like '
            '"allenai/sciq") or s3://<data bucket>/data/<file> ending in .json, .jsonl, .csv or .parquet, not a local '
            "path (the function never reads its own files: upload yours under data/ in the data bucket and use its "
            "s3:// URI)"
        ),
    }


def test_dataset_on_the_hub_that_cannot_be_loaded(aws_account: Aws, lambda_context: Any) -> None:
    aws_account.put_config(CONFIG_KEY, {"dataset": {"source": "allenai/sciq"}})

    run = invoke_and_get_failed_run(aws_account, lambda_context)

    assert run["error"]["message"].startswith("dataset 'allenai/sciq' (split 'train') could not be read: ")


def test_missing_s3_dataset(aws_account: Aws, lambda_context: Any) -> None:
    aws_account.put_config(CONFIG_KEY, {"dataset": {"source": f"s3://{aws_account.bucket}/data/missing.csv"}})

    run = invoke_and_get_failed_run(aws_account, lambda_context)

    assert f"dataset s3://{aws_account.bucket}/data/missing.csv cannot be read" in run["error"]["message"]


def test_a_jsonl_dataset_that_is_not_utf8_is_invalid_dataset_naming_the_line(
    aws_account: Aws, lambda_context: Any, tmp_path: Path
) -> None:
    rows = b"".join(json.dumps(sciq_row(i)).encode() + b"\n" for i in range(12))
    latin1 = (
        json.dumps(sciq_row(12, question="Un caf\u00e9 ?")).encode("latin-1", "strict").replace(b"\\u00e9", b"\xe9")
    )
    source = aws_account.put_data(rows + latin1 + b"\n", name="latin1.jsonl")
    aws_account.put_config(CONFIG_KEY, {"dataset": {"source": source}})

    run = invoke_and_get_failed_run(aws_account, lambda_context)

    assert run["error"] == {
        "code": "invalid_dataset",
        "message": f"dataset {source!r} is not UTF-8 text: line 13 holds the byte 0xe9, which UTF-8 does not allow; "
        "save the file as UTF-8",
    }


def test_malformed_dataset(aws_account: Aws, lambda_context: Any, tmp_path: Path) -> None:
    data = tmp_path / "broken.jsonl"
    data.write_text(json.dumps(sciq_row(0)) + "\n{this is not json\n", encoding="utf-8")
    aws_account.put_config(CONFIG_KEY, {"dataset": {"source": aws_account.put_data(data)}})

    run = invoke_and_get_failed_run(aws_account, lambda_context)

    assert "could not be read" in run["error"]["message"] and "JSON" in run["error"]["message"]


def test_template_placeholder_that_is_not_a_column(aws_account: Aws, lambda_context: Any, sciq_file: Path) -> None:
    aws_account.put_config(
        CONFIG_KEY,
        {
            "dataset": {"source": aws_account.put_data(sciq_file)},
            "template": {"assistant": "{answer} because {support}"},
        },
    )

    run = invoke_and_get_failed_run(aws_account, lambda_context)

    assert run["error"]["code"] == "invalid_dataset"
    assert run["error"]["message"].startswith("dataset has no column(s) answer used by the config's")
    assert "it has: correct_answer, distractor1" in run["error"]["message"]


def test_fewer_than_ten_examples_after_filtering(aws_account: Aws, lambda_context: Any, tmp_path: Path) -> None:
    rows = [sciq_row(i) for i in range(9)] + [sciq_row(i, support="") for i in range(9, 20)]
    aws_account.put_config(
        CONFIG_KEY, {"dataset": {"source": aws_account.put_data(write_jsonl(tmp_path / "r.jsonl", rows))}}
    )

    run = invoke_and_get_failed_run(aws_account, lambda_context)

    assert run["error"] == {
        "code": "data_gate_failed",
        "message": "training file failed the data gate: 9 examples; at least 10 are required",
    }
    assert run["counts"]["rows_read"] == 20 and run["counts"]["dropped_reasons"] == {"empty support": 11}


def test_data_gate_refuses_empty_content_and_oversized_examples(
    aws_account: Aws, lambda_context: Any, tmp_path: Path
) -> None:
    rows = [sciq_row(i) for i in range(12)]
    rows[3]["question"] = "   "
    rows[5]["support"] = "atom " * 70_000
    aws_account.put_config(
        CONFIG_KEY, {"dataset": {"source": aws_account.put_data(write_jsonl(tmp_path / "r.jsonl", rows))}}
    )

    run = invoke_and_get_failed_run(aws_account, lambda_context)

    message = run["error"]["message"]
    assert message.startswith("training file failed the data gate: format errors (missing_content x1; line 4: ")
    assert "1 examples exceed 65,536 tokens" in message


def test_a_failed_run_is_not_redone_by_a_duplicate_event_but_is_by_a_new_upload(
    aws_account: Aws, lambda_context: Any, sciq_file: Path
) -> None:
    config = {"dataset": {"source": aws_account.put_data(sciq_file)}, "template": {"user": "{nope}"}}
    aws_account.put_config(CONFIG_KEY, config)
    event = load_event("prepare-config-created.json")
    first = lambda_handler(event, lambda_context)
    assert lambda_handler(event, lambda_context) == first
    assert len(aws_account.runs()) == 1

    # The user fixes the dataset (here: adds the column) and uploads the same config again
    rows = [dict(sciq_row(i), nope=f"n{i}") for i in range(12)]
    aws_account.put_data(write_jsonl(sciq_file, rows))
    aws_account.put_config(CONFIG_KEY, config)
    lambda_handler(event, lambda_context)

    [run] = aws_account.runs()
    assert run["status"] == "prepared"
    assert "error" not in run


@pytest.fixture
def nothing_read(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records any attempt to load or download a dataset (and lets none happen)."""
    attempts: list[str] = []

    def refuse_load(path: str, *args: Any, **kwargs: Any) -> Any:
        attempts.append(f"load_dataset_builder {path} {kwargs}")
        raise AssertionError("a refused source must never be loaded")

    def refuse_download(ref: Any, destination: Path) -> None:
        attempts.append(f"download {ref}")
        raise AssertionError("a refused source must never be downloaded")

    monkeypatch.setattr(datasets, "load_dataset_builder", refuse_load)
    monkeypatch.setattr(dataset_source, "download", refuse_download)
    return attempts


@pytest.mark.parametrize(
    "where",
    [
        "absolute-file",
        "relative-file",
        "dot-dot",
        "directory",
        "file-uri",
        "file-colon",
        "https",
        "other-bucket",
        "data-bucket-outside-data",
        "data-bucket-dot-dot",
    ],
)
def test_a_source_outside_the_hub_and_the_data_bucket_fails_and_reads_nothing(
    aws_account: Aws,
    emulator: OpenAIEmulator,
    lambda_context: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    nothing_read: list[str],
    where: str,
) -> None:
    # Given files on the function's own filesystem (and in another bucket) that would make a valid run
    secret = write_jsonl(tmp_path / "x" / "secret.jsonl", [sciq_row(i, support=f"SECRET {i}") for i in range(12)])
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "notes.txt").write_text("SECRET notes\n" * 20, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    aws_account.s3.create_bucket(Bucket="someone-elses-bucket")
    aws_account.s3.put_object(Bucket="someone-elses-bucket", Key="data/secret.jsonl", Body=secret.read_bytes())
    aws_account.s3.put_object(Bucket=aws_account.bucket, Key="private/secret.jsonl", Body=secret.read_bytes())
    source = {
        "absolute-file": str(secret),
        "relative-file": "x/secret.jsonl",
        "dot-dot": "x/../x/secret.jsonl",
        "directory": "dir",
        "file-uri": f"file://{secret}",
        "file-colon": f"file:{secret}",
        "https": "https://example.com/secret.jsonl",
        "other-bucket": "s3://someone-elses-bucket/data/secret.jsonl",
        "data-bucket-outside-data": f"s3://{aws_account.bucket}/private/secret.jsonl",
        "data-bucket-dot-dot": f"s3://{aws_account.bucket}/data/../private/secret.jsonl",
    }[where]
    aws_account.put_config(CONFIG_KEY, {"dataset": {"source": source}})

    run = invoke_and_get_failed_run(aws_account, lambda_context)

    assert run["error"]["code"] == "invalid_config"
    message = run["error"]["message"]
    assert "dataset.source must be" in message, message
    assert "s3://<data bucket>/data/" in message or f"s3://{aws_account.bucket}/data/" in message
    assert "SECRET" not in message and str(tmp_path) not in message
    assert nothing_read == []
    assert emulator.requests == []


def test_a_hub_id_is_loaded_from_the_hub_only_with_its_pinned_revision(
    aws_account: Aws, lambda_context: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a local directory that happens to be named like the Hub id
    write_jsonl(tmp_path / "allenai" / "sciq" / "train.jsonl", [sciq_row(i) for i in range(12)])
    monkeypatch.chdir(tmp_path)
    calls: list[tuple[str, dict[str, Any]]] = []

    def hub_only(path: str, **kwargs: Any) -> Any:
        calls.append((path, kwargs))
        raise ConnectionError("Couldn't reach 'allenai/sciq' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset_builder", hub_only)
    aws_account.put_config(CONFIG_KEY, {"dataset": {"source": "allenai/sciq", "revision": "v1.0"}})

    run = invoke_and_get_failed_run(aws_account, lambda_context)

    assert calls == [("hf://datasets/allenai/sciq", {"revision": "v1.0"})]
    assert run["error"] == {
        "code": "invalid_dataset",
        "message": "dataset 'allenai/sciq' (split 'train') could "
        "not be read: Couldn't reach 'allenai/sciq' on the Hub (OfflineModeIsEnabled)",
    }


OTHER_TEAMS_MODEL = "ft:gpt-4o-mini-2024-07-18:acme:other-team:Abc123"


def test_a_tuned_model_this_deployment_did_not_train_is_refused_before_anything_is_read(
    aws_account: Aws, lambda_context: Any, nothing_read: list[str]
) -> None:
    uri = f"s3://{aws_account.bucket}/data/rows.jsonl"
    aws_account.put_config(CONFIG_KEY, {"dataset": {"source": uri}, "fine_tune": {"model": OTHER_TEAMS_MODEL}})

    run = invoke_and_get_failed_run(aws_account, lambda_context)

    assert run["error"] == {
        "code": "invalid_config",
        "message": f"fine_tune.model {OTHER_TEAMS_MODEL!r} is a tuned model this deployment did not train: name a "
        "base model, or the fine_tuned_model of one of this deployment's succeeded runs",
    }
    assert nothing_read == []


def test_a_tuned_model_of_this_deployments_succeeded_run_may_be_trained_on(
    aws_account: Aws, lambda_context: Any, tmp_path: Path
) -> None:
    runs = RunsRepository(aws_account.runs_table)
    assert runs.claim_for_preparation("earlier-000000000000", {"config_key": "configs/earlier.json"})
    runs.record_prepared("earlier-000000000000", {"provider": "openai"})
    assert runs.claim_start("earlier-000000000000", owner="test")
    runs.record_job("earlier-000000000000", "succeeded", {"fine_tuned_model": OTHER_TEAMS_MODEL}, time.time_ns())
    uri = aws_account.put_data(write_jsonl(tmp_path / "rows.jsonl", [sciq_row(i) for i in range(12)]))
    aws_account.put_config(CONFIG_KEY, {"dataset": {"source": uri}, "fine_tune": {"model": OTHER_TEAMS_MODEL}})

    [outcome] = lambda_handler(load_event("prepare-config-created.json"), lambda_context)["runs"]

    assert outcome["status"] == "prepared"
    [prepared] = [run for run in aws_account.runs() if run["run_id"] == outcome["run_id"]]
    assert prepared["config"]["fine_tune"]["model"] == OTHER_TEAMS_MODEL


def test_a_hub_dataset_whose_card_names_the_functions_own_files_fails_the_run_and_reads_none(
    aws_account: Aws, lambda_context: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a public dataset whose card points its train split at a file on the function's disk
    secret = tmp_path / "task" / "settings.csv"
    secret.parent.mkdir()
    secret.write_text("AWS_SECRET_ACCESS_KEY=not-a-real-secret,b\n1,2\n", encoding="utf-8")
    repository = hub_folder_whose_card_names(tmp_path / "hub" / "owner" / "name", secret)
    load_dataset_builder = datasets.load_dataset_builder
    monkeypatch.setattr(
        datasets, "load_dataset_builder", lambda path, **kwargs: load_dataset_builder(str(repository), **kwargs)
    )
    aws_account.put_config(CONFIG_KEY, {"dataset": {"source": "owner/name"}})

    run = invoke_and_get_failed_run(aws_account, lambda_context)

    assert run["error"] == {
        "code": "invalid_dataset",
        "message": "dataset 'owner/name' lists data files outside its own Hub repository (its card's data_files "
        "or data_dir); only a dataset's own files are read",
    }
    assert "AWS_SECRET_ACCESS_KEY" not in json.dumps(run, default=str)


def test_read_errors_never_show_the_functions_own_paths(
    aws_account: Aws, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def leaky(path: str, **kwargs: Any) -> Any:
        local = next(iter(kwargs.get("data_files", {}).values()), "")
        raise FileNotFoundError(
            f"Couldn't find any data file at {os.getcwd()}/file:/etc/passwd. Unable to find "
            f"'{local}' in {settings().scratch_dir} (HF_HOME={os.environ['HF_HOME']}), "
            "see /var/task/shared/domain/dataset_source.py and /tmp/other"
        )

    monkeypatch.setattr(datasets, "load_dataset_builder", leaky)
    uri = aws_account.put_data(b"question\nq\n", "rows.csv")  # CSV: read through `datasets`
    aws_account.put_config(CONFIG_KEY, {"dataset": {"source": uri}})

    run = invoke_and_get_failed_run(aws_account, lambda_context)

    message = run["error"]["message"]
    assert message.startswith(f"dataset '{uri}' (split 'train') could not be read: Couldn't find any data file at ")
    for internal in (os.getcwd(), str(settings().scratch_dir), os.environ["HF_HOME"], "/var/task", "/tmp"):
        assert internal not in message, message
    assert f"Unable to find '{uri}'" in message  # the user's own name for the file


@pytest.mark.parametrize("shape", ["dict", "list"])
def test_a_template_column_holding_structures_drops_its_rows_and_names_the_column(
    aws_account: Aws, lambda_context: Any, shape: str
) -> None:
    rows: list[dict[str, Any]] = [sciq_row(i) for i in range(14)]
    for i in range(3, 14):
        rows[i]["support"] = {"text": f"Energy {i}", "lang": "en"} if shape == "dict" else [f"Energy {i}", "en"]
    rows[2]["support"] = None
    uri = aws_account.put_data(b"".join(json.dumps(row).encode() + b"\n" for row in rows), "rows.jsonl")
    aws_account.put_config(CONFIG_KEY, {"dataset": {"source": uri}})

    run = invoke_and_get_failed_run(aws_account, lambda_context)

    assert run["error"] == {
        "code": "data_gate_failed",
        "message": "training file failed the data gate: 2 examples; at least 10 are required",
    }
    assert run["counts"]["dropped_reasons"] == {"non-text support": 11, "missing support": 1}
    assert run["counts"]["rows_kept"] == 2


def test_a_config_too_large_is_judged_by_its_real_size_and_named_by_its_whole_content(
    aws_account: Aws, lambda_context: Any
) -> None:
    head = b'{"dataset": {"source": "allenai/sciq"}, "template": {"system": "' + b"x" * 69_000
    first, second = head + b'a"}}', head + b'b"}}'  # identical over their first 65,537 bytes
    for body in (first, second):
        aws_account.put_config(CONFIG_KEY, body)
        lambda_handler(load_event("prepare-config-created.json"), lambda_context)

    runs = {run["run_id"]: run for run in aws_account.runs()}
    assert set(runs) == {derive_run_id(CONFIG_KEY, first), derive_run_id(CONFIG_KEY, second)}
    for run in runs.values():
        assert run["status"] == "failed"
        assert run["error"] == {
            "code": "invalid_config",
            "message": f"config is {len(first)} bytes; the limit is 65536",
        }
    assert aws_account.keys("datasets/") == []


def test_missing_columns_of_the_default_filter_say_how_to_set_the_filter(aws_account: Aws, lambda_context: Any) -> None:
    rows = [{"prompt": f"q{i}", "response": f"a{i}"} for i in range(12)]
    uri = aws_account.put_data(b"".join(json.dumps(row).encode() + b"\n" for row in rows), "qa.jsonl")
    aws_account.put_config(
        CONFIG_KEY, {"dataset": {"source": uri}, "template": {"user": "{prompt}", "assistant": "{response}"}}
    )

    run = invoke_and_get_failed_run(aws_account, lambda_context)

    assert run["error"] == {
        "code": "invalid_dataset",
        "message": (
            "dataset has no column(s) correct_answer, support used by the config's filter/template; it has: prompt, "
            "response. The filter is the default one (the notebook's SciQ columns support, correct_answer): set "
            '"filter": {"non_empty": ["prompt", "response"]} to the columns that must not be empty, or '
            '"filter": {"non_empty": []} to keep every row.'
        ),
    }


def test_missing_columns_of_a_filter_the_user_wrote_do_not_blame_the_default(
    aws_account: Aws, lambda_context: Any
) -> None:
    rows = [{"prompt": f"q{i}", "response": f"a{i}"} for i in range(12)]
    uri = aws_account.put_data(b"".join(json.dumps(row).encode() + b"\n" for row in rows), "qa.jsonl")
    aws_account.put_config(
        CONFIG_KEY,
        {
            "dataset": {"source": uri},
            "filter": {"non_empty": ["answer"]},
            "template": {"user": "{prompt}", "assistant": "{response}"},
        },
    )

    run = invoke_and_get_failed_run(aws_account, lambda_context)

    assert run["error"]["message"] == (
        "dataset has no column(s) answer used by the config's filter/template; it has: prompt, response"
    )
