#!/usr/bin/env bash
# Create (or refresh) the project's virtualenv in .venv and install the project into it, editable.
#
#   scripts/venv.sh          # runtime dependencies only
#   scripts/venv.sh test     # plus the `test` extra (pytest, ruff, mypy, ...)
#   scripts/venv.sh bench    # plus the `bench` extra (py-spy, for bench/run.py --profile)
#
# Fast when nothing changed: the pip install is skipped while .venv/.stamp-<extras> is newer than
# pyproject.toml. A .venv whose interpreter no longer runs (or is older than 3.11) is recreated.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

EXTRAS=${1:-}
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'venv.sh: error: %s\n' "$*" >&2; exit 1; }

# pip, quiet, without this machine's warnings about configured local indexes that do not exist.
pip_quiet() {
  local rc=0 err
  err=$(mktemp)
  "$PY" -m pip "$@" 2>"$err" || rc=$?
  grep -v "is ignored: it is neither a file nor a directory" "$err" >&2 || true
  rm -f "$err"
  return "$rc"
}

case "$EXTRAS" in
  "" | test | bench) ;;
  *) die "unknown extras '$EXTRAS' (expected nothing, 'test' or 'bench')" ;;
esac

# True when the interpreter runs and is at least 3.11 (pyenv shims exist for versions that are not
# active and fail when run, so being on PATH proves nothing).
python_ok() {
  "$1" -c 'import sys; raise SystemExit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1
}

find_python() {
  local candidate
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

if [[ -x "$PY" ]] && python_ok "$PY" && "$PY" -m pip --version >/dev/null 2>&1; then
  :
else
  BASE_PY=$(find_python) || die "no Python >= 3.11 found (tried python3.13, python3.12, python3.11, python3); install one, e.g. 'apt-get install python3' on Debian 12 or newer"
  say "creating .venv with $BASE_PY ($("$BASE_PY" -c 'import sys; print(sys.version.split()[0])'))"
  rm -rf "$VENV"
  "$BASE_PY" -m venv "$VENV" || die "'$BASE_PY -m venv' failed (on Debian: apt-get install python3-venv)"
  say "upgrading pip"
  pip_quiet install -q --upgrade pip
fi

STAMP="$VENV/.stamp-${EXTRAS:-base}"
fresh() { [[ -f "$1" && "$1" -nt "$ROOT/pyproject.toml" ]]; }

# The test extra is a superset of the runtime dependencies, so its stamp also satisfies a plain install.
if fresh "$STAMP" || { [[ -z "$EXTRAS" ]] && fresh "$VENV/.stamp-test"; }; then
  exit 0
fi

if [[ -n "$EXTRAS" ]]; then
  say "installing Python packages into .venv (with extras: $EXTRAS)"
  pip_quiet install -q -e ".[$EXTRAS]"
else
  say "installing Python packages into .venv"
  pip_quiet install -q -e .
fi
touch "$STAMP"
