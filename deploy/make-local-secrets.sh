#!/bin/sh
# Make the compose stack's local secrets in deploy/ (never commit them; .gitignore'd):
#   tls/server.crt, tls/server.key   a self-signed certificate for nginx (replace with a real one)
#   secrets/db-password              PostgreSQL's password (POSTGRES_PASSWORD_FILE)
#   secrets/database-url             the gateways' database URL with that password
#                                    (config.yaml says database: file:/run/secrets/database-url)
# Usage: sh deploy/make-local-secrets.sh [HOSTNAME]   (default localhost). Existing files are kept.
set -eu
cd "$(dirname "$0")"
host=${1:-localhost}
umask 077
mkdir -p tls secrets
if [ ! -e tls/server.key ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
        -subj "/CN=$host" -addext "subjectAltName=DNS:$host,DNS:localhost,IP:127.0.0.1" \
        -keyout tls/server.key -out tls/server.crt 2>/dev/null
    echo "made tls/server.crt for $host (self-signed)"
fi
if [ ! -e secrets/db-password ]; then
    openssl rand -hex 24 > secrets/db-password
    printf 'postgresql+psycopg://lienthong:%s@db:5432/lienthong\n' "$(cat secrets/db-password)" \
        > secrets/database-url
    echo "made secrets/db-password and secrets/database-url"
fi
# Compose mounts these files as they are (bind mounts): the containers' accounts (nginx, postgres,
# uid 10001) must be able to read them; the folders stay closed to other local users.
chmod 0644 tls/server.crt tls/server.key secrets/db-password secrets/database-url
chmod 0700 tls secrets
