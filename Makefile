# Two commands: `make run` and `make test`. Each creates .venv and installs pinned requirements.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed

.PHONY: run test lint bench clean-venv

$(STAMP): requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (set PYTHON=python3.11)")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check --quiet --upgrade pip
	$(PY) -m pip install --disable-pip-version-check --quiet -r requirements.txt
	@touch $(STAMP)

run: $(STAMP)
	$(PY) -m core.launcher

# The OpenID Connect provider the sign-in end-to-end test runs (npm registry; skipped loudly without node).
OIDC_STAMP := tests/oidc/node_modules/.package-lock.json
$(OIDC_STAMP): tests/oidc/package-lock.json
	@if command -v npm >/dev/null 2>&1; then npm --prefix tests/oidc ci --no-audit --no-fund --loglevel=error \
	  || echo "npm ci failed: the OIDC end-to-end test will be SKIPPED"; \
	else echo "npm not found: the OIDC end-to-end test will be SKIPPED"; fi

test: $(STAMP) $(OIDC_STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	@for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean-venv:
	rm -rf $(VENV)
