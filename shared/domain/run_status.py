"""The one vocabulary of run and job statuses: plain Python, so the `ragtune` command reads it without pydantic.

A run's status is ours while the data is prepared and the job started (`preparing`,
`prepared`, `starting`), then its job's, then `tracking_failed` if tracking gave up. Job
statuses are a vocabulary common to every provider: a provider's gateway maps its own
statuses onto `JOB_STATUSES` (OpenAI's are spelled the same; a status it does not know is
recorded as given and tracked on). Two "finished" sets, on purpose:

* `JOB_FINISHED` (succeeded, failed, cancelled): the job has ended, so the run's outcome is
  final. Conditional writes never move a run out of it, one notice goes out, nothing is left to
  cancel. `tracking_failed` is not in it: it is not a job status (the job may still be running),
  so a cancel through the API can still bring such a run up to its job's real end.
* `FINISHED` (`JOB_FINISHED` and `tracking_failed`): the run has stopped moving, nothing tracks
  it any more; what a watcher (the demo, the README's loop) waits for.
"""

from enum import StrEnum


class RunStatus(StrEnum):
    PREPARING = "preparing"
    PREPARED = "prepared"
    STARTING = "starting"
    VALIDATING_FILES = "validating_files"
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    # Trained; the model is being made ready to answer (Bedrock: its on-demand deployment is being created).
    DEPLOYING = "deploying"
    # Trained; the weights are being imported (the open provider: Bedrock Custom Model Import).
    IMPORTING = "importing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TRACKING_FAILED = "tracking_failed"


JOB_FINISHED = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})
# A job worth attaching a run to: still going, or done well. A failed or cancelled one is history.
USABLE = frozenset(
    {RunStatus.VALIDATING_FILES, RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.PAUSED, RunStatus.SUCCEEDED}
)
JOB_STATUSES = USABLE | JOB_FINISHED
FINISHED = JOB_FINISHED | {RunStatus.TRACKING_FAILED}
# Trained, the model being made ready to answer: no job left to cancel, the metrics files are final.
READYING_MODEL = frozenset({RunStatus.DEPLOYING, RunStatus.IMPORTING})
