"""Publishing a finished run's training curve: `reports/<run_id>/metrics.csv` and `loss.png` in the data
bucket, their keys recorded on the run. The same keys every time, so publishing again only refreshes them."""

from __future__ import annotations

from typing import Any

from shared.aws.runs import RunsRepository
from shared.aws.storage import REPORTS_PREFIX, ObjectRef, put_bytes
from shared.domain.run_record import Run
from shared.domain.run_status import JOB_FINISHED, READYING_MODEL
from shared.domain.training_curve import loss_png, metrics_csv
from shared.providers.base import provider_for
from shared.settings import settings

# The job has ended (a Bedrock run is `deploying` once its job has completed): its metrics files are final.
JOB_ENDED = JOB_FINISHED | READYING_MODEL


def report_keys(run_id: str) -> dict[str, str]:
    prefix = f"{REPORTS_PREFIX}{run_id}/"
    return {"metrics_csv": f"{prefix}metrics.csv", "loss_png": f"{prefix}loss.png"}


def curve_title(run: Run) -> str:
    """Which run, which base model, how many epochs (as configured: "auto" when the provider chose)."""
    fine_tune = (run.config or {}).get("fine_tune") or {}
    epochs = (fine_tune.get("hyperparameters") or {}).get("n_epochs", "auto")
    return f"{run.run_id} | {fine_tune.get('model', 'unknown model')} | epochs: {epochs}"


def publish_training_curve(run_id: str) -> dict[str, Any]:
    """Write the run's metrics.csv and loss.png and record their keys on the run; `{"run_id", "rows", "keys"}`.

    A run whose job has not ended (or that never had one) is skipped, `{"run_id", "skipped": reason}`: its
    metrics are not final. A job that left no metrics still gets both files: the CSV's header and a picture
    that says so, so a reader always finds them once the job has ended.
    """
    runs = RunsRepository(settings().runs_table)
    run = runs.get(run_id)
    if run is None:
        return {"run_id": run_id, "skipped": "no such run"}
    if not run.job_id:
        return {"run_id": run_id, "skipped": f"the run has no job (status {run.status})"}
    if run.status not in JOB_ENDED:
        return {"run_id": run_id, "skipped": f"its job has not finished (status {run.status})"}
    rows = provider_for(run).step_metrics(run)
    keys = report_keys(run_id)
    bucket = settings().data_bucket
    put_bytes(ObjectRef(bucket, keys["metrics_csv"]), metrics_csv(rows), "text/csv")
    put_bytes(ObjectRef(bucket, keys["loss_png"]), loss_png(rows, curve_title(run)), "image/png")
    runs.record_reports(run_id, keys)
    return {"run_id": run_id, "rows": len(rows), "keys": keys}
