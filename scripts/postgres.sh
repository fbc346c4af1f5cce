#!/usr/bin/env bash
# A throwaway local PostgreSQL for the tests.
#
#   scripts/postgres.sh start    # init (first time) and start; prints the URL on stdout
#   scripts/postgres.sh url      # prints the URL of the running server (nothing if none)
#   scripts/postgres.sh status   # exit 0 when running
#   scripts/postgres.sh stop     # stop it (the cluster is kept, so the next start is fast)
#   scripts/postgres.sh clean    # stop it and delete the cluster
#
# If LIENTHONG_TEST_PG_URL is set, that server is used: `start` and `url` print it and nothing is run.
# When no server can be had, `start` says why on stderr ("PostgreSQL tests will be skipped: ...") and
# exits 0 printing no URL, so the tests skip. Progress goes to stderr; stdout carries only the URL.
#
# The cluster lives in var/pg/ (data/, run/ for the unix socket, postgres.log), or in
# /tmp/lienthong-pg-<hash of the project path> when the project's path is one the postgres user cannot
# enter or too long for a unix socket. It listens on 127.0.0.1 only, on the first free port from 55432,
# with trust auth and default (durable) settings. Run as root, the server runs as the `postgres` user.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VAR="$ROOT/var"
URL_FILE="$VAR/pg.url"
DIR_FILE="$VAR/pg.dir"   # where the cluster was put, so that stop/url find it again
DB=lienthong_test
ROLE=lienthong
FIRST_PORT=55432

say() { printf 'postgres.sh: %s\n' "$*" >&2; }
skip() { say "PostgreSQL tests will be skipped: $*"; exit 0; }

is_root() { [[ $(id -u) -eq 0 ]]; }

# Run a server binary as the user that owns the cluster (postgres refuses to run as root).
as_pg() {
  if is_root; then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

# Free: no TCP socket of any state has it as its local port. A port that an outgoing connection
# holds, or one in TIME-WAIT (a benchmark leaves thousands), listens nowhere, yet the bind fails.
port_free() {
  local port=$1
  if command -v ss >/dev/null 2>&1; then
    [[ -z $(ss -Htan "sport = :$port" 2>/dev/null) ]]
  else
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 1
    fi
  fi
}

pick_port() {
  local preferred=${1:-} port
  if [[ -n $preferred ]] && port_free "$preferred"; then
    echo "$preferred"
    return 0
  fi
  for ((port = FIRST_PORT; port < FIRST_PORT + 200; port++)); do
    if port_free "$port"; then
      echo "$port"
      return 0
    fi
  done
  return 1
}

# Sets BIN to a directory holding initdb, pg_ctl, postgres and psql; the newest major version wins.
find_bin() {
  local dir candidates=()
  if command -v pg_ctl >/dev/null 2>&1; then
    candidates+=("$(dirname "$(command -v pg_ctl)")")
  fi
  while IFS= read -r dir; do
    candidates+=("$dir")
  done < <(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4,4 -rn)
  for dir in "${candidates[@]}"; do
    if [[ -x $dir/initdb && -x $dir/pg_ctl && -x $dir/postgres && -x $dir/psql && -x $dir/pg_isready ]]; then
      BIN=$dir
      return 0
    fi
  done
  return 1
}

install_server() {
  if ! is_root || ! command -v apt-get >/dev/null 2>&1; then
    return 1
  fi
  mkdir -p "$VAR"
  local log="$VAR/apt-postgresql.log"
  say "installing PostgreSQL with apt-get (log: $log)"
  # Debian's package may create and start its own cluster on 5432; it is not used and does no harm.
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2 || true
    return 1
  fi
}

ensure_pg_user() {
  is_root || return 0
  command -v runuser >/dev/null 2>&1 || skip "running as root and runuser is missing (util-linux)"
  id -u postgres >/dev/null 2>&1 && return 0
  say "creating system user postgres"
  if getent group postgres >/dev/null 2>&1; then
    useradd --system -g postgres --no-create-home --home-dir /var/lib/postgresql --shell /usr/sbin/nologin postgres
  else
    useradd --system --user-group --no-create-home --home-dir /var/lib/postgresql --shell /usr/sbin/nologin postgres
  fi
}

# Sets BASE: var/pg when usable, otherwise a directory under /tmp named after the project path.
choose_base() {
  local preferred="$VAR/pg" ok=1
  mkdir -p "$VAR"
  # A unix socket path must fit in 107 bytes: <base>/run/.s.PGSQL.NNNNN
  if (( ${#preferred} + 20 > 100 )); then
    ok=0
  elif is_root && ! (cd / && runuser -u postgres -- test -x "$VAR"); then
    ok=0
  fi
  if (( ok )); then
    BASE=$preferred
  else
    local hash
    hash=$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)
    BASE="/tmp/lienthong-pg-$hash"
    say "the postgres user cannot use $preferred; the cluster goes to $BASE"
  fi
}

load_base() {
  BASE=
  [[ -f $DIR_FILE ]] && BASE=$(<"$DIR_FILE")
  [[ -n $BASE ]]
}

prepare_dir() {
  mkdir -p "$BASE"
  if is_root; then
    chown postgres: "$BASE"
  fi
  chmod 700 "$BASE"
  as_pg mkdir -p "$BASE/run"
  printf '%s\n' "$BASE" >"$DIR_FILE"
}

running() {
  [[ -n ${BASE:-} && -f $BASE/data/PG_VERSION ]] || return 1
  find_bin || return 1
  as_pg "$BIN/pg_ctl" status -D "$BASE/data" >/dev/null 2>&1 || return 1
  local port
  port=$(current_port) || return 1
  "$BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -t 5
}

# After a machine restart postmaster.pid may name a pid that now belongs to another process, which
# would make the server refuse to start; a pid file whose process is not a postgres is removed.
remove_stale_pidfile() {
  local pidfile="$BASE/data/postmaster.pid" pid
  [[ -f $pidfile ]] || return 0
  pid=$(head -n 1 "$pidfile")
  if [[ -n $pid && $(cat "/proc/$pid/comm" 2>/dev/null) == postgres* ]]; then
    return 0
  fi
  say "removing stale $pidfile"
  rm -f "$pidfile"
}

url_for_port() {
  printf 'postgresql+psycopg://%s@127.0.0.1:%s/%s\n' "$ROLE" "$1" "$DB"
}

current_port() {
  [[ -f $BASE/port ]] && cat "$BASE/port"
}

init_cluster() {
  local major have locale_args=(--locale=C)
  major=$("$BIN/postgres" --version | sed -E 's/.* ([0-9]+)(\.[0-9]+)*.*/\1/')
  if [[ -f $BASE/data/PG_VERSION ]]; then
    have=$(<"$BASE/data/PG_VERSION")
    [[ $have == "$major" ]] && return 0
    say "cluster is from PostgreSQL $have, server is $major: recreating it"
  fi
  as_pg rm -rf "$BASE/data"
  if locale -a 2>/dev/null | grep -qix 'c.utf-\?8'; then
    locale_args=(--locale=C.UTF-8)
  fi
  say "creating cluster in $BASE/data (PostgreSQL $major)"
  if ! as_pg "$BIN/initdb" -D "$BASE/data" -U postgres --auth=trust --encoding=UTF8 "${locale_args[@]}" \
      --no-instructions >"$VAR/pg-initdb.log" 2>&1; then
    tail -n 20 "$VAR/pg-initdb.log" >&2 || true
    skip "initdb failed (see $VAR/pg-initdb.log)"
  fi
  as_pg sh -c "printf '%s\n' \"include_if_exists = 'lienthong.conf'\" >>'$BASE/data/postgresql.conf'"
}

cmd_start() {
  if [[ -n ${LIENTHONG_TEST_PG_URL:-} ]]; then
    printf '%s\n' "$LIENTHONG_TEST_PG_URL"
    return 0
  fi
  if load_base && running; then
    local port
    port=$(current_port)
    if [[ -n $port ]]; then
      url_for_port "$port" | tee "$URL_FILE"
      return 0
    fi
  fi
  find_bin || install_server || true
  find_bin || skip "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found and they could not be installed"
  ensure_pg_user
  choose_base
  prepare_dir
  init_cluster

  local port tries=0 preferred
  preferred=$(current_port || true)
  remove_stale_pidfile
  while true; do
    port=$(pick_port "$preferred") || skip "no free port in $FIRST_PORT-$((FIRST_PORT + 199))"
    as_pg sh -c "cat >'$BASE/data/lienthong.conf'" <<EOF
# written by scripts/postgres.sh on each start
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$BASE/run'
EOF
    printf '%s\n' "$port" | as_pg sh -c "cat >'$BASE/port'"
    say "starting PostgreSQL on 127.0.0.1:$port ($BASE)"
    if as_pg "$BIN/pg_ctl" start -D "$BASE/data" -l "$BASE/postgres.log" -w -t 60 -s >/dev/null 2>&1; then
      break
    fi
    # taken between the look and the bind: the next port
    if (( ++tries < 5 )) && tail -n 5 "$BASE/postgres.log" | grep -q "Address already in use"; then
      say "port $port was taken meanwhile; trying another"
      preferred=$((port + 1))
      continue
    fi
    tail -n 20 "$BASE/postgres.log" >&2 || true
    skip "the server did not start (see $BASE/postgres.log)"
  done

  local psql=("$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres)
  if ! "${psql[@]}" >/dev/null <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE') THEN
    CREATE ROLE $ROLE LOGIN CREATEDB CREATEROLE;
  END IF;
END \$\$;
SELECT 'CREATE DATABASE $DB OWNER $ROLE' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB')
\gexec
SQL
  then
    skip "could not create role $ROLE and database $DB"
  fi
  url_for_port "$port" | tee "$URL_FILE"
}

cmd_url() {
  if [[ -n ${LIENTHONG_TEST_PG_URL:-} ]]; then
    printf '%s\n' "$LIENTHONG_TEST_PG_URL"
    return 0
  fi
  if load_base && running; then
    url_for_port "$(current_port)"
  fi
}

cmd_status() {
  if [[ -n ${LIENTHONG_TEST_PG_URL:-} ]]; then
    return 0
  fi
  load_base && running
}

cmd_stop() {
  [[ -n ${LIENTHONG_TEST_PG_URL:-} ]] && return 0
  if load_base && running; then
    say "stopping PostgreSQL ($BASE)"
    as_pg "$BIN/pg_ctl" stop -D "$BASE/data" -m fast -w -t 60 -s
  fi
  rm -f "$URL_FILE"
}

cmd_clean() {
  cmd_stop
  if load_base; then
    say "removing $BASE"
    rm -rf "$BASE"
  fi
  rm -f "$DIR_FILE"
}

case "${1:-}" in
  start) cmd_start ;;
  url) cmd_url ;;
  status) cmd_status ;;
  stop) cmd_stop ;;
  clean) cmd_clean ;;
  *)
    echo "usage: $0 start|stop|url|status|clean" >&2
    exit 2
    ;;
esac
