"""The Bedrock emulator's CLI serves until SIGTERM and takes faults from the command line."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_cli_serves_with_faults_and_stops_on_sigterm() -> None:
    command = [
        sys.executable, "-m", "local.bedrock_emulator", "--port", "0", "--phase-seconds", "0",
        "--fault", "Converse:throttling:1", "--fault", "ListModelCustomizationJobs:access_denied",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("bedrock_endpoint_url=http://127.0.0.1:")
        kwargs = {"endpoint_url": line.split("=", 1)[1], "region_name": "us-east-1", "aws_access_key_id": "testing"}
        kwargs["aws_secret_access_key"] = "testing"
        config = Config(retries={"total_max_attempts": 1})
        bedrock, runtime = (boto3.client(name, config=config, **kwargs) for name in ("bedrock", "bedrock-runtime"))
        with pytest.raises(ClientError, match="AccessDeniedException"):
            bedrock.list_model_customization_jobs()
        assert bedrock.list_model_customization_jobs()["modelCustomizationJobSummaries"] == []
        messages = [{"role": "user", "content": [{"text": "hi"}]}]
        deployment = "arn:aws:bedrock:us-east-1:123456789012:custom-model-deployment/abcdefghijkl"
        for expected in ("ThrottlingException", "ResourceNotFoundException"):
            with pytest.raises(ClientError, match=expected):
                runtime.converse(modelId=deployment, messages=messages)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
