#!/usr/bin/env bash
# A throwaway local Redis for the tests.
#
#   scripts/redis.sh start    # start it (installing redis-server with apt when root); prints the URL
#   scripts/redis.sh url      # prints the URL of the running server (nothing if none)
#   scripts/redis.sh status   # exit 0 when running
#   scripts/redis.sh stop     # stop it
#
# If LIENTHONG_TEST_REDIS_URL is set, that server is used: `start` and `url` print it and nothing is run.
# When no server can be had, `start` says why on stderr ("Redis tests will be skipped: ...") and exits 0
# printing no URL, so the tests skip. Progress goes to stderr; stdout carries only the URL.
#
# The server keeps nothing on disk (--save '' --appendonly no), listens on 127.0.0.1 only, on the first
# free port from 56379, and keeps its pid file and log in var/redis/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VAR="$ROOT/var"
DIR="$VAR/redis"
URL_FILE="$VAR/redis.url"
FIRST_PORT=56379

say() { printf 'redis.sh: %s\n' "$*" >&2; }
skip() { say "Redis tests will be skipped: $*"; exit 0; }

port_free() {
  local port=$1
  if command -v ss >/dev/null 2>&1; then
    [[ -z $(ss -Hltn "sport = :$port" 2>/dev/null) ]]
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

find_server() {
  SERVER=$(command -v redis-server 2>/dev/null || true)
  if [[ -z $SERVER && -x /usr/bin/redis-server ]]; then
    SERVER=/usr/bin/redis-server
  fi
  [[ -n $SERVER ]]
}

install_server() {
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    return 1
  fi
  mkdir -p "$VAR"
  local log="$VAR/apt-redis.log"
  say "installing redis-server with apt-get (log: $log)"
  # Debian's package may start its own server on 6379; it is not used and does no harm.
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2 || true
    return 1
  fi
}

# PING over a plain socket, so that redis-cli is not needed.
redis_ping() {
  local port=$1 reply=
  (
    exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
    printf 'PING\r\n' >&3
    IFS= read -r -t 2 reply <&3 || exit 1
    [[ $reply == +PONG* ]]
  ) 2>/dev/null
}

current_port() {
  [[ -f $DIR/port ]] && cat "$DIR/port"
}

server_pid() {
  local pid
  [[ -f $DIR/redis.pid ]] || return 1
  pid=$(<"$DIR/redis.pid")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
  grep -q redis "/proc/$pid/comm" 2>/dev/null || return 1
  echo "$pid"
}

running() {
  local port
  server_pid >/dev/null || return 1
  port=$(current_port) || return 1
  redis_ping "$port"
}

url_for_port() {
  printf 'redis://127.0.0.1:%s/0\n' "$1"
}

cmd_start() {
  if [[ -n ${LIENTHONG_TEST_REDIS_URL:-} ]]; then
    printf '%s\n' "$LIENTHONG_TEST_REDIS_URL"
    return 0
  fi
  mkdir -p "$DIR"
  if running; then
    url_for_port "$(current_port)" | tee "$URL_FILE"
    return 0
  fi
  find_server || install_server || true
  find_server || skip "no redis-server found and it could not be installed"

  local port i
  port=$(pick_port "$(current_port || true)") || skip "no free port in $FIRST_PORT-$((FIRST_PORT + 199))"
  printf '%s\n' "$port" >"$DIR/port"
  rm -f "$DIR/redis.pid"
  say "starting Redis on 127.0.0.1:$port"
  if ! "$SERVER" --bind 127.0.0.1 --port "$port" --save '' --appendonly no --daemonize yes \
      --dir "$DIR" --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log" >/dev/null 2>>"$DIR/redis.log"; then
    tail -n 20 "$DIR/redis.log" >&2 || true
    skip "redis-server failed to start (see $DIR/redis.log)"
  fi
  for ((i = 0; i < 100; i++)); do
    if running; then
      url_for_port "$port" | tee "$URL_FILE"
      return 0
    fi
    sleep 0.1
  done
  tail -n 20 "$DIR/redis.log" >&2 || true
  skip "redis-server did not answer PING on port $port (see $DIR/redis.log)"
}

cmd_url() {
  if [[ -n ${LIENTHONG_TEST_REDIS_URL:-} ]]; then
    printf '%s\n' "$LIENTHONG_TEST_REDIS_URL"
    return 0
  fi
  if running; then
    url_for_port "$(current_port)"
  fi
}

cmd_status() {
  [[ -n ${LIENTHONG_TEST_REDIS_URL:-} ]] && return 0
  running
}

cmd_stop() {
  [[ -n ${LIENTHONG_TEST_REDIS_URL:-} ]] && return 0
  local pid i
  if pid=$(server_pid); then
    say "stopping Redis (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      say "Redis did not stop within 10 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$DIR/redis.pid" "$URL_FILE"
}

case "${1:-}" in
  start) cmd_start ;;
  url) cmd_url ;;
  status) cmd_status ;;
  stop) cmd_stop ;;
  *)
    echo "usage: $0 start|stop|url|status" >&2
    exit 2
    ;;
esac
