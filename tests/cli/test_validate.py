"""`ragtune validate`: every example config checked offline against its data, and readable refusals."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path, PurePosixPath

from ragtune_cli.estimate import estimate
from shared.domain.config import parse_run_config
from tests.local.serving import ROOT

from .conftest import EXAMPLES, RAGTUNE, ragtune, user_shell

EXAMPLE_CONFIGS = sorted(EXAMPLES.glob("*.json"))


def _data_of(config: Path) -> Path:
    """An example names its data file as it lands in the bucket: s3://<bucket>/data/<name>."""
    source = json.loads(config.read_text(encoding="utf-8"))["dataset"]["source"]
    return EXAMPLES / "data" / PurePosixPath(source).name


def test_the_examples_cover_what_the_issue_lists() -> None:
    configs = {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in EXAMPLE_CONFIGS}
    suffixes = {_data_of(path).suffix for path in EXAMPLE_CONFIGS}

    assert suffixes == {".csv", ".parquet", ".jsonl"}
    assert configs["csv-prompt-answer"]["template"]["user"] == "{prompt}"
    assert configs["validation-and-hyperparameters"]["validation_fraction"] > 0
    assert configs["validation-and-hyperparameters"]["fine_tune"]["hyperparameters"]
    assert [configs[name]["provider"] for name in ("openai", "bedrock", "open")] == ["openai", "bedrock", "open"]


def test_every_example_passes_ragtune_validate() -> None:
    processes = {
        config: subprocess.Popen(
            [str(RAGTUNE), "validate", str(config), "--json"],
            cwd=ROOT,
            env=user_shell(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for config in EXAMPLE_CONFIGS
    }
    results = {config: (*process.communicate(timeout=60), process.returncode) for config, process in processes.items()}

    assert len(results) == 7
    for config, (stdout, stderr, code) in results.items():
        assert code == 0, f"{config.name}: {stderr}"
        checked = json.loads(stdout)
        expected = json.loads(config.read_text(encoding="utf-8"))
        assert checked["valid"] is True
        assert checked["config"]["dataset"]["source"] == expected["dataset"]["source"]
        assert checked["config"]["template"] == {"system": None, **expected["template"]} | expected["template"]


def test_every_example_fits_its_data_file() -> None:
    """What `validate --data` computes, in this process: `datasets` is imported once, not six times."""
    for config_path in EXAMPLE_CONFIGS:
        config = parse_run_config(config_path.read_bytes())
        found = estimate(config, _data_of(config_path))

        counts = found["counts"]
        assert counts["rows_read"] == counts["rows_kept"] > 0, config_path.name
        assert counts["train_examples"] + counts["validation_examples"] == counts["rows_kept"]
        assert found["estimate"]["trained_tokens"] == found["estimate"]["epochs"] * found["tokens"]["billing_tokens"]


def test_validate_with_data_prints_counts_and_the_estimate() -> None:
    config = EXAMPLES / "validation-and-hyperparameters.json"

    result = ragtune("validate", str(config), "--data", str(EXAMPLES / "data" / "faq.csv"), "--json", env=user_shell())

    assert result.code == 0, result.stderr
    checked = result.json()
    assert (checked["counts"]["train_examples"], checked["counts"]["validation_examples"]) == (16, 4)
    tokens = checked["tokens"]["billing_tokens"]
    assert checked["estimate"] == {
        "epochs": 4,
        "trained_tokens": 4 * tokens,
        "cost_usd": round(4 * tokens * 3.0 / 1_000_000, 4),
        "price_per_million_tokens": 3.0,
    }


def test_validate_prints_what_the_run_would_do() -> None:
    result = ragtune("validate", str(EXAMPLES / "bedrock.json"), env=user_shell())

    assert result.code == 0, result.stderr
    rows = {line.split("  ", 1)[0]: line.split("  ", 1)[1].strip() for line in result.stdout.splitlines()[1:]}
    assert result.stdout.splitlines()[0] == f"{EXAMPLES / 'bedrock.json'}: valid"
    assert rows["provider"] == "bedrock"
    assert rows["base model"] == "amazon.nova-lite-v1:0:300k"
    assert rows["columns used"] == "answer, prompt"
    assert rows["filter"] == "rows with a value in prompt, answer"
    assert rows["hyperparameters"] == "n_epochs=2, learning_rate=1e-05, warmup_steps=10"


def test_an_invalid_config_is_refused_with_the_pipelines_sentence(tmp_path: Path) -> None:
    config = tmp_path / "typo.json"
    config.write_text(json.dumps({"dataset": {"source": "allenai/sciq"}, "validaton_fraction": 0.1}))

    result = ragtune("validate", str(config), env=user_shell())
    missing = ragtune("validate", str(tmp_path / "absent.json"), env=user_shell())

    assert (result.code, result.stdout) == (1, "")
    assert result.stderr.strip() == f"{config}: config is invalid: validaton_fraction: unknown key."
    assert missing.code == 2
    assert missing.stderr.strip() == f"Cannot read the config {tmp_path / 'absent.json'}: No such file or directory."


def test_data_the_run_would_refuse_fails_validation_with_the_reason(tmp_path: Path) -> None:
    config = tmp_path / "sciq.json"
    config.write_text(json.dumps({"dataset": {"source": "allenai/sciq"}}))

    result = ragtune("validate", str(config), "--data", str(EXAMPLES / "data" / "faq.csv"), env=user_shell())

    assert result.code == 1
    assert result.stderr.startswith(
        f"{config} with {EXAMPLES / 'data' / 'faq.csv'}: the run would fail: dataset has no column(s) correct_answer, "
        "question, support used by the config's filter/template; it has: answer, prompt."
    )


def test_a_config_naming_no_provider_is_checked_with_the_stacks_default_provider(tmp_path: Path) -> None:
    """learning_rate is Bedrock's: refused under OpenAI's rules (the default), taken with --default-provider bedrock."""
    config = tmp_path / "nova.json"
    config.write_text(
        json.dumps({"dataset": {"source": "allenai/sciq"}, "fine_tune": {"hyperparameters": {"learning_rate": 1e-05}}})
    )

    as_openai = ragtune("validate", str(config), env=user_shell())
    as_bedrock = ragtune("validate", str(config), "--default-provider", "bedrock", "--json", env=user_shell())
    # RAGTUNE_DEFAULT_PROVIDER, which `make local` exports, as `submit` reads it; the option still wins
    from_the_shell = ragtune("validate", str(config), "--json", env=user_shell(RAGTUNE_DEFAULT_PROVIDER="bedrock"))
    overridden = ragtune(
        "validate", str(config), "--default-provider", "openai", env=user_shell(RAGTUNE_DEFAULT_PROVIDER="bedrock")
    )

    assert as_openai.code == 1 and overridden.code == 1
    assert "learning_rate is a hyperparameter of Bedrock fine-tuning only" in as_openai.stderr
    assert as_bedrock.code == 0, as_bedrock.stderr
    assert as_bedrock.json()["config"]["provider"] == "bedrock"
    assert as_bedrock.json()["config"]["fine_tune"]["hyperparameters"]["learning_rate"] == 1e-05
    assert from_the_shell.code == 0 and from_the_shell.json()["config"]["provider"] == "bedrock"


def test_validate_says_an_adopt_config_trains_nothing_and_what_its_data_holds_out(tmp_path: Path) -> None:
    config = tmp_path / "adopt.json"
    config.write_text(
        json.dumps(
            {
                "adopt": {"model": "ft:gpt-4o-mini-2024-07-18:my-org::abc123"},
                "dataset": {"source": "s3://ragtune-data-123456789012-us-east-1/data/faq.csv"},
                "validation_fraction": 0.2,
                "filter": {"non_empty": ["prompt", "answer"]},
                "template": {"user": "{prompt}", "assistant": "{answer}"},
                "evaluation": {"context_column": None, "reference_column": "answer"},
            }
        ),
        encoding="utf-8",
    )

    result = ragtune("validate", str(config), "--data", str(EXAMPLES / "data" / "faq.csv"), env=user_shell())

    assert result.code == 0, result.stderr
    lines = [" ".join(line.split()) for line in result.stdout.splitlines()]
    assert (
        "adopts ft:gpt-4o-mini-2024-07-18:my-org::abc123 (trains nothing; records its answers to the held-out "
        "questions)" in lines
    )
    assert "held out 4 rows, the questions the model is asked" in lines
    assert not [line for line in lines if line.startswith(("base model", "hyperparameters", "estimate", "tokens"))]
