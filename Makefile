# The words a newcomer would guess: demo, test, lint, bench, clean.
# Everything installs into .venv; the only prerequisites are Python 3.11+, make and
# (for the optional system tools: chromium, docker-compose, nginx, wrk) apt-get.

SHELL := /bin/bash
PYTHON ?= $(shell for p in python3.11 python3.12 python3.13 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	&& { command -v $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
# Everything installs from the lock (exact versions and hashes, runtime and dev); `make lock`
# refreshes it on purpose. pyproject.toml keeps the honest ranges for people who install the
# package itself.
LOCK := requirements-dev.lock
STAMP := $(VENV)/.installed-$(shell cat $(LOCK) pyproject.toml | cksum | cut -d' ' -f1)
SYSDEPS_STAMP := $(VENV)/.sysdeps
PYTEST := $(BIN)/pytest -p no:cacheprovider
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: demo test lint typecheck contracts install lock test-latest sysdeps test-toolkit test-monolith \
	test-monolith-pg test-extracted test-ordering bench clean help

help:
	@echo "make demo   set up and run the demo (monolith, proxy, services, report)"
	@echo "make test   set up and run lint, type checks, architecture contracts and tests"
	@echo "make bench  run the benchmarks in bench/ (needs nginx-light and wrk)"
	@echo "make clean  remove the virtual environment and generated files"

$(STAMP): $(LOCK) pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: Python 3.11 or newer not found; install python3.11 and retry" >&2; exit 2; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e . \
		--config-settings editable_mode=compat
	$(BIN)/python -m pip check -q >/dev/null || { $(BIN)/python -m pip check; \
		echo "error: $(LOCK) is incomplete; run 'make lock'" >&2; exit 2; }
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

# Refresh the lock on purpose: newest versions the ranges in pyproject.toml allow, for every
# Python from 3.11 and every platform, with hashes. Runtime first; the dev lock is constrained
# to the same runtime versions. Review the diff, run `make test`, commit both files.
UV_COMPILE := $(BIN)/uv pip compile --quiet --generate-hashes --universal --python-version 3.11 \
	--no-header
UV_VERSION := $(shell sed -n 's/^uv==\([^ ]*\).*/\1/p' $(LOCK))
lock:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/python -m pip install -q "uv==$(UV_VERSION)"
	@printf 'setuptools>=69\nwheel>=0.43\n' > $(VENV)/build-requirements.in
	$(UV_COMPILE) pyproject.toml $(VENV)/build-requirements.in -o requirements.lock
	$(UV_COMPILE) pyproject.toml $(VENV)/build-requirements.in --group dev \
		-c requirements.lock -o requirements-dev.lock

# Not in CI: the suite against the newest versions the ranges allow, in a separate venv, so
# that upstream drift is seen before it reaches the lock.
test-latest:
	rm -rf .venv-latest && $(PYTHON) -m venv .venv-latest
	.venv-latest/bin/python -m pip install -q --upgrade "pip>=25.1"
	.venv-latest/bin/python -m pip install -q --upgrade -e . --group dev
	$(MAKE) test VENV=.venv-latest STAMP=.venv-latest/bin/python SYSDEPS_STAMP=.venv-latest/.sysdeps

# The proxy's hot path compiled with mypyc (strangler_proxy/native.py); quick when up to date,
# and pure Python still runs if it cannot compile.
install: $(STAMP)
	@$(BIN)/python -m strangler_proxy.native_build build --if-stale

# System tools some tests drive for real (headless chromium for the dashboard, nginx for the
# differential framing corpus,
# docker-compose to validate docker-compose.yml). Installed when apt-get is there and
# we are root; tests that need a missing tool say so and skip.
$(SYSDEPS_STAMP): | $(STAMP)
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing="$$missing nginx-light"; \
	command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing="$$missing haproxy"; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		echo "installing system packages:$$missing"; \
		(apt-get install -y -q --no-install-recommends $$missing >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends $$missing >/dev/null 2>&1)) \
		|| echo "warning: could not install$$missing; the tests that need them will skip"; \
	fi; touch $@

sysdeps: $(SYSDEPS_STAMP)

lint: install
	$(BIN)/ruff check .

# The toolkit from pyproject.toml; the Django parts with the django-stubs plugin, one run per
# settings module (mypy-django.ini).
typecheck: install
	$(BIN)/mypy
	DJANGO_SETTINGS_MODULE=legacy_monolith.settings $(BIN)/mypy --config-file mypy-django.ini \
		-p legacy_monolith
	DJANGO_SETTINGS_MODULE=extracted.catalog.settings $(BIN)/mypy --config-file mypy-django.ini \
		-p extracted.catalog -p extracted.servicekit
	DJANGO_SETTINGS_MODULE=extracted.ordering.settings $(BIN)/mypy --config-file mypy-django.ini \
		-p extracted.ordering

contracts: install
	$(BIN)/lint-imports

test-toolkit: install sysdeps
	$(PYTEST) -p no:django tests/strangler_proxy tests/analysis tests/test_repository.py tests/docs tests/test_compose_scale.py

test-monolith: install
	env -u DATABASE_URL $(PYTEST) --ds=legacy_monolith.settings tests/legacy_monolith

# CI sets DATABASE_URL (PostgreSQL); the monolith suite then runs a second time on it.
test-monolith-pg: install
	@if [ -n "$$DATABASE_URL" ]; then \
		$(PYTEST) --ds=legacy_monolith.settings tests/legacy_monolith; \
	else echo "skipped: DATABASE_URL not set, so the monolith suite does not run on PostgreSQL"; fi

test-extracted: install
	@if [ -d tests/extracted ]; then $(PYTEST) --ds=extracted.catalog.settings tests/extracted \
		--ignore=tests/extracted/ordering; fi

# The ordering service's tests run with its own settings (one Django project per process).
test-ordering: install
	$(PYTEST) --ds=extracted.ordering.settings tests/extracted/ordering

# Every suite runs even when one fails; one summary at the end, ending in
# "total: N passed, N failed, N skipped"; non-zero exit if any suite failed. Suites joined by
# "+" run at the same time (CPU-only checks and the monolith's suites, each on its own
# database; the live, timing-sensitive suites run alone).
SUITES := lint contracts typecheck+test-monolith+test-monolith-pg test-toolkit test-extracted \
	test-ordering
test: install sysdeps
	@$(BIN)/python tests/run_suites.py $(SUITES)

demo: install
	$(BIN)/strangler demo

# Benchmarks drive real nginx and wrk beside our code; installed here when missing.
bench: install
	@for t in nginx wrk; do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then apt-get install -y -q nginx-light wrk >/dev/null 2>&1 || \
		echo "warning: nginx-light/wrk not installed; those comparisons will be skipped"; fi
	$(BIN)/python -m bench $(BENCH)

clean:
	rm -rf $(VENV) .venv-latest .demo build *.egg-info .mypy_cache .ruff_cache
	find strangler_proxy -name '*.so' -delete; rm -f strangler_proxy/_native.json
