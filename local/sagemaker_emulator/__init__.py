"""An Amazon SageMaker emulator: training jobs that "train" the open provider's model, offline.

A real loopback HTTP server speaking botocore's JSON 1.1 protocol (``POST /`` with ``X-Amz-Target:
SageMaker.<Operation>``) for the operations ragtune uses, so ``boto3.client("sagemaker")`` reaches it
unchanged when ``AWS_ENDPOINT_URL_SAGEMAKER`` names its ``endpoint_url``: Create/Describe/Stop/
ListTrainingJobs. moto's SageMaker runs nothing (a job stays as created and writes no model), so this
replaces it for these calls.

Behaviour worth knowing:

* Every request is checked against its input shape in botocore's ``sagemaker`` model (required members,
  enums, lengths, ranges, patterns such as TrainingJobName's ``^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}``), failing
  with SageMaker's ``ValidationException`` wording. A second job of the same name (names are unique
  whatever their case) is ``ResourceInUse``; a job that does not exist is a ``ValidationException``,
  "Requested resource not found." (what SageMaker answers, not the ResourceNotFound its model declares).
  CreateTrainingJob needs an AlgorithmSpecification naming an image or algorithm, a ResourceConfig with an
  instance type and count, and S3Prefix channels with objects under them ("No S3 objects found under S3
  URL ..." otherwise).
* A job is ``InProgress`` for ``phase_seconds``: SecondaryStatus ``Starting``, ``Downloading``, ``Training``,
  ``Uploading`` a quarter each, then ``Completed`` with the model written (`model_folder`): with
  ``OutputDataConfig.CompressionType`` ``NONE`` the folder ``<S3OutputPath>/<name>/output/model/``
  (config.json, generation_config.json, model.safetensors, tokenizer.json, tokenizer_config.json), else
  ``.../output/model.tar.gz`` of the same files. ``<CheckpointConfig.S3Uri>/metrics.csv``
  (``step,epoch,train_loss,valid_loss``) grows while ``Training``, and ``FinalMetricDataList`` reports the
  latest values of the ``MetricDefinitions`` named step, epoch, train_loss, valid_loss and total_steps.
  The rows are those shared/providers/open/training/train.py logs (every ``logging_steps`` and the last,
  ``valid_loss`` on each when there is a ``validation`` channel), from its hyperparameters (JSON values:
  ``model_id`` required, ``epochs``, ``batch_size``, ``gradient_accumulation_steps``, ``logging_steps``).
* Data the training script cannot use (a ``train`` channel of chat JSONL: ``{"messages": [...]}`` lines
  with user and assistant turns) makes the job end ``Failed`` when training starts, with a FailureReason
  starting ``AlgorithmError: `` and naming the file and line (ExitCode 2 for hyperparameters its argument
  parser refuses); ``fail_jobs(reason)`` does the same for jobs created afterwards.
* StopTrainingJob: ``Stopping`` for a quarter of ``phase_seconds``, then ``Stopped``; stopping a job that is
  not ``InProgress`` is a ValidationException ("... is in status Completed.").
* What the model learned travels in its weights: the safetensors header's ``__metadata__`` holds the
  training examples (``RECALL_METADATA_KEY``), which the Bedrock emulator's Custom Model Import reads, so
  the imported model answers with the training data's answers.
* Faults: ``inject_fault(operation, kind, times, message)`` makes the next calls fail with
  ThrottlingException, ValidationException, AccessDeniedException, ResourceLimitExceeded (400 each),
  ServiceUnavailable (503) or InternalFailure (500), or (``lost_answer``) carry them out and drop the
  connection without an answer.
* ``requests`` records every request (operation, target, body, headers, status, response, error_code);
  ``jobs`` exposes the jobs by name (with their ``tags``), advanced to the present.
"""

from .model_folder import RECALL_METADATA_KEY, TRAINING_DATA_METADATA_KEY, TRAINING_JOB_METADATA_KEY
from .server import OPERATIONS, Fault, FaultKind, RecordedRequest, SageMakerEmulator
from .training import METRIC_NAMES, METRICS_HEADER, TrainingJob

__all__ = [
    "METRICS_HEADER",
    "METRIC_NAMES",
    "OPERATIONS",
    "RECALL_METADATA_KEY",
    "TRAINING_DATA_METADATA_KEY",
    "TRAINING_JOB_METADATA_KEY",
    "Fault",
    "FaultKind",
    "RecordedRequest",
    "SageMakerEmulator",
    "TrainingJob",
]
