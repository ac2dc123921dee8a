"""An OpenAI API emulator: a real loopback HTTP server the official ``openai`` SDK can talk to.

It serves files (create, list, retrieve, content, delete), uploads, fine_tuning.jobs (+ events,
checkpoints, cancel/pause/resume), chat.completions and models.retrieve with the request and response shapes of
OpenAI's OpenAPI spec, so pipeline code can be exercised end to end offline. It is an emulator:
its "models" never generate anything.

Behaviour worth knowing:

* Every request needs ``Authorization: Bearer <any non-empty key>`` (else 401). Errors always use
  OpenAI's ``{"error": {"message", "type", "param", "code"}}`` shape.
* Jobs go validating_files -> queued -> running -> succeeded, ``phase_seconds`` of active time per
  phase, evaluated lazily on each read (``phase_seconds=0``: done on the first read after creation).
  ``clock`` can be replaced for deterministic tests. A training file that is not valid chat JSONL
  (or has fewer than ``min_training_examples`` lines, 10 like OpenAI) fails the job with
  ``error.code == "invalid_training_file"``. Pause works on running jobs and sets status
  ``"paused"`` as in the spec's pause example (the spec's FineTuningJob status enum omits it).
* A succeeded job's ``fine_tuned_model`` (``ft:<base>:emulator:<suffix>:<8 chars>``) and its
  checkpoints answer chat completions with the assistant message of the training example whose user
  message has the highest word Jaccard overlap with the last user message. Known base models answer a
  last user message holding "passage, blank line, question" with the passage sentence of highest word
  Jaccard overlap with the question (first on ties), any other message with ``BASE_MODEL_REPLY``;
  anything else is a 404 ``model_not_found``.
* A succeeded job's ``result_files`` hold one ``step_metrics.csv`` (purpose ``fine-tune-results``) whose
  content is base64-encoded CSV text, as OpenAI serves it (its cookbook decodes it with ``base64``).
* ``GET /models/{model}`` describes a known base model or a tuned one (else 404 ``model_not_found``) with
  its ``shutdown_date``: ``shutdown_dates`` (constructor or attribute, or ``--shutdown-date MODEL=DATE``),
  by default OpenAI's announced ones (``gpt-4o-mini-2024-07-18``: 2027-01-14; see models.py). Fine-tunes
  follow their base model's date; once that date is the emulator clock's UTC day or earlier, the model no
  longer answers chat completions (404 ``model_not_found``, as OpenAI answers for a model it has removed).
* ``fine_tuning_access=False`` (constructor or attribute, or ``--no-fine-tuning-access``) makes job
  creation answer 403, type ``invalid_request_error``, code ``fine_tuning_not_available``, like an
  organisation without fine-tuning access.
* ``inject_fault(path_regex, kind, method=..., status=..., delay=..., times=..., headers=...)`` makes
  matching requests answer an OpenAI-shaped 408/409/429 (with retry-after)/500/503 or any other status
  (``kind="status"``, plus ``headers`` such as ``x-should-retry``), sleep first (``"slow"``) or lose the
  connection (``"drop"``); see faults.py for matching.
* Uploads: a part over 64 MB (64,000,000 bytes) is a 400; completing an upload after its
  ``expires_at`` (an hour) answers it ``expired`` with no file (when OpenAI answers that is unverified).
* ``requests`` records every request (method, path, route, query, body, status, JSON response);
  ``files``, ``uploads`` and ``jobs`` expose the held state; ``reset()`` forgets it all.
"""

from .faults import Fault
from .recall import BASE_MODEL_REPLY
from .server import OpenAIEmulator, RecordedRequest

__all__ = ["BASE_MODEL_REPLY", "Fault", "OpenAIEmulator", "RecordedRequest"]
