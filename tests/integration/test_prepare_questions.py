"""PrepareFunction writes the held-out questions the evaluation asks: `datasets/<run_id>/questions.jsonl`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from functions.prepare.app import lambda_handler
from shared.aws import storage
from shared.pipeline import prepare
from tests.helpers import CONFIG_KEY, Aws, load_event, sciq_row, write_jsonl


def invoke(context: Any, config_key: str = CONFIG_KEY) -> dict[str, Any]:
    event = load_event("prepare-config-created.json")
    event["Records"][0]["s3"]["object"]["key"] = config_key
    result: dict[str, Any] = lambda_handler(event, context)
    return result


def prepared(
    aws_account: Aws,
    context: Any,
    tmp_path: Path,
    rows: list[dict[str, Any]],
    config_key: str = CONFIG_KEY,
    **config: Any,
) -> dict[str, Any]:
    """Rows and a config put where the handler reads them, prepared; returns the run."""
    source = aws_account.put_data(write_jsonl(tmp_path / "rows.jsonl", rows))
    aws_account.put_config(config_key, {"dataset": {"source": source}, **config})
    invoke(context, config_key)
    run = next(run for run in aws_account.runs() if run["config_key"] == config_key)
    assert run["status"] == "prepared", run.get("error")
    return run


def user_texts(body: bytes, provider: str = "openai") -> list[str]:
    """The user turn of each line of a training or validation file."""
    texts = []
    for line in body.splitlines():
        user = json.loads(line)["messages"][-2]["content"]
        texts.append(user[0]["text"] if provider == "bedrock" else user)
    return texts


def question_line(index: int, question: str, reference: str, context: str | None) -> bytes:
    line = {"index": index, "question": question, "reference": reference, "context": context}
    return (json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8")


def accented_row(index: int) -> dict[str, str]:
    """A SciQ row whose text needs care: non-ASCII, quotes, a newline and a tab."""
    return sciq_row(
        index,
        question=f'Question {index}: what does "Coriolis" mean — in Zürich?',
        correct_answer=f"Coriolis effect {index} (日本語)",
        support=f"Line one of {index}\nline two\twith a tab.",
    )


def content_type(aws_account: Aws, key: str) -> str:
    found: str = aws_account.s3.head_object(Bucket=aws_account.bucket, Key=key)["ContentType"]
    return found


def test_held_out_rows_become_the_questions_file_uploaded_before_the_run_is_prepared(
    aws_account: Aws, lambda_context: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 40 SciQ-shaped rows and a config holding a quarter out (evaluation on by default)
    rows = [accented_row(i) for i in range(40)]
    uploads: list[tuple[str, str]] = []
    real_upload = storage.upload

    def recording_upload(source: Path, ref: Any, metadata: dict[str, str], content_type: str) -> None:
        uploads.append((ref.key.rsplit("/", 1)[1], aws_account.runs()[0]["status"]))
        real_upload(source, ref, metadata, content_type)

    monkeypatch.setattr(prepare, "upload", recording_upload)

    # When it is prepared
    run = prepared(aws_account, lambda_context, tmp_path, rows, validation_fraction=0.25, seed=7)

    # Then questions.jsonl holds each validation line's user text, reference and passage, in validation order
    run_id = run["run_id"]
    validation = aws_account.read(f"datasets/{run_id}/validation.jsonl")
    by_question = {row["question"]: row for row in rows}
    expected = b"".join(
        question_line(index, text, by_question[text]["correct_answer"], by_question[text]["support"])
        for index, text in enumerate(user_texts(validation))
    )
    body = aws_account.read(f"datasets/{run_id}/questions.jsonl")
    assert body == expected and len(body.splitlines()) == 10
    assert "Zürich".encode() in body and b"\\u" not in body

    # And it is uploaded with the validation file, before the run is prepared and the training file arrives
    assert uploads == [("validation.jsonl", "preparing"), ("questions.jsonl", "preparing"), ("train.jsonl", "prepared")]
    key = f"datasets/{run_id}/questions.jsonl"
    assert run["files"]["questions"] == {"key": key, "bytes": len(body), "examples": 10}
    assert (run["counts"]["evaluation_questions"], run["counts"]["evaluation_questions_skipped"]) == (10, 0)
    assert run["config"]["evaluation"] == {
        "enabled": True,
        "max_questions": 100,
        "context_column": "support",
        "reference_column": "correct_answer",
        "match": "start",
    }
    assert content_type(aws_account, key) == "application/jsonl"


def test_the_evaluation_leaves_the_training_and_validation_files_byte_for_byte_as_they_were(
    aws_account: Aws, lambda_context: Any, tmp_path: Path
) -> None:
    rows = [accented_row(i) for i in range(30)]
    evaluated = prepared(aws_account, lambda_context, tmp_path, rows, validation_fraction=0.3)
    plain = prepared(
        aws_account,
        lambda_context,
        tmp_path,
        rows,
        config_key="configs/plain.json",
        validation_fraction=0.3,
        evaluation={"enabled": False},
    )

    for name in ("train.jsonl", "validation.jsonl"):
        assert aws_account.read(f"datasets/{evaluated['run_id']}/{name}") == aws_account.read(
            f"datasets/{plain['run_id']}/{name}"
        )
    # Switched off: no questions file, nothing about it on the run
    assert aws_account.keys(f"datasets/{plain['run_id']}/") == [
        f"datasets/{plain['run_id']}/train.jsonl",
        f"datasets/{plain['run_id']}/validation.jsonl",
    ]
    assert "questions" not in plain["files"] and "evaluation_questions" not in plain["counts"]
    assert evaluated["counts"] == plain["counts"] | {
        "evaluation_questions": 9,
        "evaluation_questions_skipped": 0,
        "evaluation_questions_trained": 0,
    }


def test_max_questions_cuts_the_file_and_rows_without_a_reference_are_skipped_and_counted(
    aws_account: Aws, lambda_context: Any, tmp_path: Path
) -> None:
    # Given a reference column outside the filter: empty, blank, null or a number in some rows
    references: list[Any] = ["", "  \n", None, 7, "joules"]
    rows = [dict(sciq_row(i), short_answer=references[i % 5]) for i in range(40)]
    run = prepared(
        aws_account,
        lambda_context,
        tmp_path,
        rows,
        validation_fraction=0.5,
        seed=3,
        template={"user": "Q: {question}", "assistant": "{correct_answer}"},
        evaluation={"max_questions": 4, "reference_column": "short_answer", "context_column": None},
    )

    # Then the questions are the first 4 held-out rows with a reference, the rendered user text as asked
    run_id = run["run_id"]
    by_user_text = {f"Q: {row['question']}": row for row in rows}
    expected: list[bytes] = []
    skipped = 0
    for index, text in enumerate(user_texts(aws_account.read(f"datasets/{run_id}/validation.jsonl"))):
        if len(expected) == 4:
            break
        reference = by_user_text[text]["short_answer"]
        if reference is None or not str(reference).strip():
            skipped += 1
            continue
        expected.append(question_line(index, text, str(reference), None))
    body = aws_account.read(f"datasets/{run_id}/questions.jsonl")
    assert body == b"".join(expected)
    assert skipped > 0 and any(b'"reference": "7"' in line for line in expected)
    assert run["files"]["questions"]["examples"] == 4
    assert (run["counts"]["evaluation_questions"], run["counts"]["evaluation_questions_skipped"]) == (4, skipped)
    assert run["counts"]["validation_examples"] == 20  # the reference never drops a training row


def test_a_held_out_question_that_was_also_trained_is_never_asked(
    aws_account: Aws, lambda_context: Any, tmp_path: Path
) -> None:
    """A source that repeats rows can put one copy in each file: the tuned model would be asked what it learned."""
    rows = [sciq_row(i) for i in range(20)] * 2
    run = prepared(aws_account, lambda_context, tmp_path, rows, validation_fraction=0.25, seed=1)

    run_id = run["run_id"]
    trained = set(user_texts(aws_account.read(f"datasets/{run_id}/train.jsonl")))
    held_out = user_texts(aws_account.read(f"datasets/{run_id}/validation.jsonl"))
    asked = [json.loads(line) for line in aws_account.read(f"datasets/{run_id}/questions.jsonl").splitlines()]

    assert not {question["question"] for question in asked} & trained
    assert len({question["question"] for question in asked}) == len(asked)  # each once
    assert all(held_out[question["index"]] == question["question"] for question in asked)
    fresh = {text for text in held_out if text not in trained}
    assert len(asked) == len(fresh) and run["counts"]["evaluation_questions"] == len(asked)
    assert run["counts"]["evaluation_questions_trained"] == len(held_out) - len(asked) > 0


def test_a_bedrock_run_asks_the_user_text_of_its_nova_records(
    aws_account: Aws, lambda_context: Any, tmp_path: Path
) -> None:
    rows = [accented_row(i) for i in range(20)]
    run = prepared(
        aws_account,
        lambda_context,
        tmp_path,
        rows,
        provider="bedrock",
        validation_fraction=0.2,
        template={"system": None, "user": "Answer briefly. {question}"},
    )

    run_id = run["run_id"]
    validation = aws_account.read(f"datasets/{run_id}/validation.jsonl")
    assert json.loads(validation.splitlines()[0])["schemaVersion"] == "bedrock-conversation-2024"
    by_user_text = {f"Answer briefly. {row['question']}": row for row in rows}
    expected = b"".join(
        question_line(index, text, by_user_text[text]["correct_answer"], by_user_text[text]["support"])
        for index, text in enumerate(user_texts(validation, provider="bedrock"))
    )
    assert aws_account.read(f"datasets/{run_id}/questions.jsonl") == expected
    assert run["provider"] == "bedrock" and run["files"]["questions"]["examples"] == 4
    assert run["counts"]["evaluation_questions"] == 4


def test_a_missing_evaluation_column_fails_the_run_saying_which_setting_to_change(
    aws_account: Aws, lambda_context: Any, tmp_path: Path
) -> None:
    # Given a dataset of its own columns, a template and filter for them, and a validation split
    rows = [{"prompt": f"q{i}", "response": f"a{i}"} for i in range(12)]
    aws_account.put_config(
        CONFIG_KEY,
        {
            "dataset": {"source": aws_account.put_data(write_jsonl(tmp_path / "qa.jsonl", rows))},
            "filter": {"non_empty": ["response"]},
            "template": {"user": "{prompt}", "assistant": "{response}"},
            "validation_fraction": 0.25,
            "evaluation": {"reference_column": "response"},
        },
    )

    result = invoke(lambda_context)

    # Then the run fails on the evaluation's default context column, and nothing is written
    [run] = aws_account.runs()
    assert result == {"runs": [{"run_id": run["run_id"], "status": "failed", "error": run["error"]["message"]}]}
    assert run["error"] == {
        "code": "invalid_dataset",
        "message": (
            "dataset has no column(s) support used by the config's filter/template/evaluation; it has: prompt, "
            "response. The evaluation is on (it is by default when validation_fraction > 0) and reads "
            "evaluation.context_column (support) from the held-out rows: set evaluation.reference_column and "
            "evaluation.context_column (null for no passage) to your columns, or evaluation.enabled to false."
        ),
    }
    assert aws_account.keys("datasets/") == []
