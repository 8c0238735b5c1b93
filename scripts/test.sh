#!/usr/bin/env bash
# Install suno_nb with its dev extra into .venv, check style and types, and run the whole test
# suite: unit and HTTP tests, the example notebooks under nbval, and the real-browser tests.
# Extra arguments go to every pytest run (e.g. `-k receiver`).
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
# The fast lane on four workers; then the slow tests that open hundreds of sockets or measure
# CPU and memory (marked `alone`) one at a time; then the other slow tests (notebooks,
# browsers, packaging, README) on two workers, a file to a worker (nbval's cells stay in
# order in one kernel).  Our own kernels talk over IPC; nbval's pick TCP ports a moment
# before binding them, which a burst of connections beside them could take first: that is
# why the `alone` tests run before, not beside, them.
lane() {  # a pytest run; exit status 5 (no test selected, e.g. by -k) is not a failure
  .venv/bin/python -m pytest "$@" || [ $? -eq 5 ]
}
lane -m "not slow" "$@"
lane -m "slow and alone" -n 0 "$@"
lane -m "slow and not alone" -n 2 --dist loadfile "$@"
