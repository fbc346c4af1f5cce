#!/usr/bin/env bash
# The benchmark's outside tools: wrk (the load) and nginx (the reference proxy and the fixed upstream).
#
#   scripts/bench-tools.sh    # installs what is missing with apt-get (as root), says what it found
#
# bench/run.py starts its own nginx from a configuration it writes; Debian's nginx service, if the
# package starts one, is not used. py-spy (for --profile) comes with `scripts/venv.sh bench`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
say() { printf 'bench-tools.sh: %s\n' "$*" >&2; }

have_nginx() { command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]]; }
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
have_nginx || missing+=(nginx-light)

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    say "missing: ${missing[*]}; install them (apt-get install -y ${missing[*]}) and run again"
    exit 1
  fi
  mkdir -p "$ROOT/var"
  log="$ROOT/var/apt-bench.log"
  say "installing ${missing[*]} with apt-get (log: $log)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2 || true
    exit 1
  fi
  # Debian's package starts its own nginx on port 80: not ours, stop it so it takes no CPU.
  if command -v systemctl >/dev/null 2>&1; then systemctl stop nginx >/dev/null 2>&1 || true; fi
  pkill -x nginx >/dev/null 2>&1 || true
fi
say "wrk: $(command -v wrk), nginx: $(command -v nginx || echo /usr/sbin/nginx)"
