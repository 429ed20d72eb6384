#!/usr/bin/env bash
# Start a throw-away PostgreSQL server on 127.0.0.1 for convexp's PostgreSQL tests, from
# Debian's packages (installed if missing), and print the URL to export:
#
#   eval "$(bash scripts/start-postgres.sh)"     # sets CONVEXP_TEST_POSTGRES
#
# The server runs as user postgres with trust authentication on loopback only, its data
# in a new temporary folder. Stop it with: pg_ctl -D <folder printed on stderr> stop
set -euo pipefail
PORT="${CONVEXP_PG_PORT:-54329}"
port_free() { python3 -c "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1])))" "$1" 2>/dev/null; }
if ! port_free "$PORT"; then  # another server (an earlier run's) has it: take any free port
    PORT="$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")"
fi

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    for attempt in 1 2 3; do
        if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; then break; fi
        echo "apt-get failed (attempt $attempt)" >&2; sleep 10
    done
fi
BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
DATA="$(mktemp -d /tmp/convexp-pg-XXXXXX)"
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if [ "$(id -u)" = 0 ]; then chown postgres "$DATA"; fi
as_postgres "$BIN/initdb" -D "$DATA" -A trust -U postgres >/dev/null
as_postgres "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w \
    -o "-p $PORT -k $DATA -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off" start >/dev/null
echo "PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT, data in $DATA" >&2
echo "export CONVEXP_TEST_POSTGRES=postgresql+psycopg://postgres@127.0.0.1:$PORT/postgres"
