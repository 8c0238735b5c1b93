#!/usr/bin/env bash
# Install suno_nb with its dev extra into .venv, check style and types, and run the whole test
# suite: unit and HTTP tests, the example notebooks under nbval, and the real-browser tests.
# Extra arguments go to both pytest runs (e.g. `-k receiver`).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'

# The browser test drives Debian's Chromium through Playwright (never `playwright install`).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the browser test..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is not installed and this user cannot apt-get it; the browser test will fail" >&2
  fi
fi

.venv/bin/python -m ruff check suno_nb tests benchmarks
.venv/bin/python -m ruff format --check -q suno_nb tests benchmarks
.venv/bin/python -m mypy  # suno_nb, configured in pyproject.toml
# The fast lane on four workers, then the slow tests (notebooks, browser, soak, stress, kill,
# README) one at a time: they start Jupyter kernels, browsers and socket bursts of their own.
# (Two workers were tried: a kernel's manager picks free TCP ports that the kernel binds a
# moment later, and a concurrent test's sockets took one; nbval's cells must also stay in
# order in one kernel.)
.venv/bin/python -m pytest -m "not slow" "$@"
exec .venv/bin/python -m pytest -m slow -n 0 "$@"
