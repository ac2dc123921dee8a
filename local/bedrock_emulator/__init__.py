"""An Amazon Bedrock emulator: model customization, custom model deployments, Custom Model Import, Converse and
InvokeModel, offline.

A real loopback HTTP server speaking botocore's REST-JSON for the operations ragtune uses, so
``boto3.client("bedrock")`` and ``boto3.client("bedrock-runtime")`` reach it unchanged when
``AWS_ENDPOINT_URL_BEDROCK`` and ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` name its ``endpoint_url``:

* bedrock: Create/Get/List/StopModelCustomizationJob, Create/Get/DeleteCustomModelDeployment,
  Create/Get/ListModelImportJob(s), Get/List/DeleteImportedModel(s);
* bedrock-runtime: Converse, with ``modelId`` a deployment ARN or a Nova foundation model id; InvokeModel,
  with ``modelId`` an imported model's ARN and the OpenAIChatCompletion body.

It replaces moto's bedrock backend for these calls rather than extending it: moto keeps jobs
``InProgress`` forever, keys them by name, and has no deployments, no model import and no Converse.

Behaviour worth knowing:

* CreateModelCustomizationJob is idempotent on ``clientRequestToken`` (same token: same ``jobArn``, no
  new job); a second job with the same ``jobName`` is a ConflictException (the error botocore's model
  lists for this operation; it has no ResourceInUseException here). Base models: the Nova models of
  ``NOVA_BASE_MODELS`` (id or foundation-model ARN); anything else is a ValidationException, as are
  hyperparameters outside Nova's ranges (``epochCount`` 1-5, ``learningRate`` 1e-6-1e-4,
  ``learningRateWarmupSteps`` 0-100, all strings).
* The training (and validation) data is read from S3 at creation; a file that is not
  ``bedrock-conversation-2024``, holds a reserved string, or has a record count outside
  ``min_training_records``..``max_training_records`` (8..20,000, unconfirmed) makes the job end
  ``Failed`` with a failureMessage naming the line, as does an unreadable S3 object.
* A job is ``InProgress`` for ``phase_seconds`` of time, then ``Completed``: a custom model exists,
  ``outputModelArn`` and ``trainingMetrics.trainingLoss`` are set, and
  ``<output prefix>/model-customization-job-<job id>/training_artifacts/step_wise_training_metrics.csv``
  (and, with validators, ``validation_artifacts/post_fine_tuning_validation/validation_metrics.csv``)
  are written. Stop: ``Stopping`` for a phase, then ``Stopped``; stopping a finished job is a ConflictException.
* A deployment is ``Creating`` for ``phase_seconds``, then ``Active`` (or ``Failed``). Converse on a
  ``Creating`` deployment is a ModelNotReadyException, on an unknown one ResourceNotFoundException;
  an ``Active`` one answers with the assistant text of the training record whose user text best
  overlaps the question (the fake model's recall, `local.fake_model`).
* Converse on a Nova foundation model (``NOVA_FOUNDATION_MODELS``: ``amazon.nova-micro-v1:0``,
  ``amazon.nova-lite-v1:0``, ``amazon.nova-2-lite-v1:0``, ``amazon.nova-pro-v1:0``, each also with the
  ``us.`` inference-profile prefix) follows the fake model's base-model rule: a last user message
  holding "passage, blank line, question" gets the passage sentence of highest word overlap with the
  question, any other ``BASE_MODEL_REPLY``. The customization ids (``...:128k``) are not invocable: 404.
* Custom Model Import (`model_import`): CreateModelImportJob is idempotent on ``clientRequestToken``; a
  job name is taken for good (ValidationException "The provided job name is currently in use."), an
  imported model name while its model or an import of it exists (ConflictException). A job is
  ``InProgress`` for ``phase_seconds``, then reads its S3 folder and ends ``Completed`` (an imported model
  ``arn:aws:bedrock:us-east-1:123456789012:imported-model/<id>``) or ``Failed`` when the folder is not the
  Hugging Face weights format Custom Model Import reads (``*.safetensors``, ``config.json``,
  ``tokenizer_config.json`` and ``tokenizer.json`` or ``tokenizer.model``; a supported ``model_type``).
  InvokeModel on an imported model answers the OpenAIChatCompletion format with a ``chat.completion``;
  what it answers comes from the examples the SageMaker emulator stored in the weights (recall, as a
  deployment does), else the base-model rule. A deleted or unknown model is ResourceNotFoundException.
* Faults: ``inject_fault(operation, kind, times, message)`` makes the next calls of an operation fail with
  ThrottlingException (429), ValidationException (400), AccessDeniedException (403),
  ServiceUnavailableException (503), ModelTimeoutException (408, ``model_timeout``) or
  ModelNotReadyException (429, ``model_not_ready``), or (``lost_answer``) carry them out and drop the
  connection without an answer; ``fail_jobs(message)`` / ``fail_deployments(message)`` /
  ``fail_imports(message)`` make those created afterwards end ``Failed``.
* ``requests`` records every request (operation, method, path, params, query, body, status, response,
  error_code); ``jobs``, ``deployments``, ``custom_models``, ``import_jobs`` and ``imported_models`` expose
  the state, advanced to the present.
"""

from .customization import NOVA_BASE_MODELS, CustomModel, Deployment, Job
from .model_import import RECALL_METADATA_KEY, SUPPORTED_MODEL_TYPES, ImportedModel, ImportJob
from .runtime import BASE_MODEL_REPLY, NOVA_FOUNDATION_MODELS
from .server import ROUTES, BedrockEmulator, Fault, FaultKind, RecordedRequest
from .training import RESERVED_STRINGS, SCHEMA_VERSION, conversation_record

__all__ = [
    "BASE_MODEL_REPLY",
    "NOVA_BASE_MODELS",
    "NOVA_FOUNDATION_MODELS",
    "RECALL_METADATA_KEY",
    "RESERVED_STRINGS",
    "ROUTES",
    "SCHEMA_VERSION",
    "SUPPORTED_MODEL_TYPES",
    "BedrockEmulator",
    "CustomModel",
    "Deployment",
    "Fault",
    "FaultKind",
    "ImportJob",
    "ImportedModel",
    "Job",
    "RecordedRequest",
    "conversation_record",
]
