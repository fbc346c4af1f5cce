#!/usr/bin/env bash
# Headless Chromium for the browser tests (tests/browser/), from Debian's packages.
#
#   scripts/chromium.sh          # install it when missing (apt-get, non-interactive); print its path
#   scripts/chromium.sh path     # print its path if it is installed, nothing otherwise
#
# If LIENTHONG_TEST_CHROMIUM is set, that executable is used as is: both commands print it. When no
# Chromium can be had, the script says why on stderr ("browser tests will be skipped: ...") and exits 0
# printing nothing, so the tests skip. Progress goes to stderr; stdout carries only the path.
# Playwright (PyPI) drives this executable; `playwright install` would download its own browser,
# which this project does not need.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VAR="$ROOT/var"

say() { printf 'chromium.sh: %s\n' "$*" >&2; }
skip() { say "browser tests will be skipped: $*"; exit 0; }

find_chromium() {
  local name
  for name in chromium chromium-browser; do
    if command -v "$name" >/dev/null 2>&1; then
      command -v "$name"
      return 0
    fi
  done
  return 1
}

install_chromium() {
  if [[ $(id -u) -ne 0 ]]; then
    skip "Chromium is not installed and installing it needs root (apt-get install chromium)"
  fi
  command -v apt-get >/dev/null 2>&1 || skip "Chromium is not installed and there is no apt-get here"
  mkdir -p "$VAR"
  local log="$VAR/apt-chromium.log"
  say "installing Chromium with apt-get (log: $log)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      chromium fonts-dejavu-core; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2 || true
    skip "apt-get could not install chromium (see $log)"
  fi
}

cmd_path() {
  if [[ -n ${LIENTHONG_TEST_CHROMIUM:-} ]]; then
    printf '%s\n' "$LIENTHONG_TEST_CHROMIUM"
    return 0
  fi
  find_chromium || true
}

cmd_ensure() {
  if [[ -n ${LIENTHONG_TEST_CHROMIUM:-} ]]; then
    printf '%s\n' "$LIENTHONG_TEST_CHROMIUM"
    return 0
  fi
  local found
  if ! found=$(find_chromium); then
    install_chromium
    found=$(find_chromium) || skip "apt-get ran but no chromium executable is on PATH"
  fi
  # A package whose binary cannot start (missing libraries) is no use to the tests.
  if ! "$found" --headless --no-sandbox --disable-gpu --version >/dev/null 2>&1; then
    skip "$found does not start (try: $found --headless --no-sandbox --version)"
  fi
  printf '%s\n' "$found"
}

case "${1:-ensure}" in
  ensure | start) cmd_ensure ;;
  path) cmd_path ;;
  *)
    echo "usage: $0 [ensure|path]" >&2
    exit 2
    ;;
esac
