#!/bin/sh
# The compose stack's one-shot setup (the `init` service of deploy/compose.yaml), run inside the image
# as uid 10001, so that every key it writes (mode 0600) belongs to the account the gateways run as:
#
#   1. `lienthong init` writes the configuration, keys, policies and flows into the config volume;
#   2. the client secrets, the clients' private keys and the demo signers' keys, which the gateway
#      never reads, move to the handover volume, for the operator to hand out;
#   3. `lienthong witness init` makes the witness's key in its own volume, and `witness add-log`
#      tells it to accept the gateway's audit log (origin and checkpoint key);
#   4. deploy/prepare.py sets the configuration for this stack (state_dir, migrations.at_start: wait,
#      Redis, the public URL behind nginx, the witness, secrets by reference);
#   5. `lienthong check` validates the result.
#
# Once it has succeeded it does nothing (delete the volumes, `docker compose down -v`, to start
# again); a run that failed half-way is started over (`lienthong init --force`).
set -eu

CONFIG_DIR=${CONFIG_DIR:-/srv/lienthong/config}
HANDOVER_DIR=${HANDOVER_DIR:-/srv/lienthong/handover}
WITNESS_STATE=${WITNESS_STATE:-/var/lib/lienthong-witness}
WITNESS_NAME=${WITNESS_NAME:-witness.lienthong.example/compose}
WITNESS_URL=${WITNESS_URL:-http://witness:9120}
PUBLIC_URL=${PUBLIC_URL:-https://localhost:8443}
TRUSTED_PROXIES=${TRUSTED_PROXIES:-172.30.87.0/24}
DATABASE_REF=${DATABASE_REF:-file:/run/secrets/database-url}
REDIS_URL=${REDIS_URL:-redis://redis:6379/0}
UPSTREAM_HOST=${UPSTREAM_HOST-simulators}  # empty: leave the upstreams as they are
PREPARE=${PREPARE:-python /usr/local/lib/lienthong/prepare.py}

DONE="$CONFIG_DIR/.compose-init-done"  # written last: a run that failed half-way is done again

if [ -e "$DONE" ]; then
    echo "$CONFIG_DIR is set up already: nothing to do (docker compose down -v starts again)"
    exit 0
fi

lienthong init "$CONFIG_DIR" --database "$DATABASE_REF" --force > /dev/null
for item in client-secrets.yaml client-keys pki/signers; do
    if [ -e "$CONFIG_DIR/$item" ]; then
        mkdir -p "$HANDOVER_DIR/$(dirname "$item")"
        rm -rf "${HANDOVER_DIR:?}/$item"
        mv "$CONFIG_DIR/$item" "$HANDOVER_DIR/$item"
    fi
done

witness_vkey=$(lienthong witness init --state "$WITNESS_STATE" --name "$WITNESS_NAME")
log=$($PREPARE log "$CONFIG_DIR")  # the audit log's origin, then its checkpoints' verifier key
lienthong witness add-log --state "$WITNESS_STATE" \
    --origin "$(printf '%s\n' "$log" | sed -n 1p)" --vkey "$(printf '%s\n' "$log" | sed -n 2p)"

set -- --public-url "$PUBLIC_URL" --database "$DATABASE_REF" --redis "$REDIS_URL" --operator lienthong \
    --witness "$WITNESS_NAME" "$WITNESS_URL" "$witness_vkey"
for cidr in $TRUSTED_PROXIES; do set -- "$@" --trusted-proxy "$cidr"; done
if [ -n "$UPSTREAM_HOST" ]; then set -- "$@" --upstream-host "$UPSTREAM_HOST"; fi
$PREPARE config "$CONFIG_DIR" "$@"
lienthong check --config "$CONFIG_DIR/config.yaml"
touch "$DONE"
echo "client secrets: docker compose run --rm --no-deps --entrypoint cat init $HANDOVER_DIR/client-secrets.yaml"
