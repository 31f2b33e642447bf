# Sourced by scripts/test and scripts/soak: starts a throwaway PostgreSQL (15 to 17, Debian's
# `postgresql` package) on a free loopback port, as the postgres user when run as root, in a
# temporary data directory with trust auth, and exports CRMSYNC_TEST_POSTGRES_URL.
#
#   source scripts/lib/throwaway-pg.sh
#   trap throwaway_pg_stop EXIT INT TERM   # stops the server and removes its data
#   throwaway_pg_start                     # exits the script with a message on failure
#
# PG_BIN selects the server binaries' directory.

THROWAWAY_PG_DIR=""
THROWAWAY_PG_STARTED=0
THROWAWAY_PG_BIN="${PG_BIN:-}"

throwaway_pg_as() {
  if [[ "$(id -u)" == "0" ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

throwaway_pg_stop() {
  if [[ "$THROWAWAY_PG_STARTED" == "1" ]]; then
    throwaway_pg_as "$THROWAWAY_PG_BIN/pg_ctl" -D "$THROWAWAY_PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    THROWAWAY_PG_STARTED=0
  fi
  if [[ -n "$THROWAWAY_PG_DIR" ]]; then rm -rf "$THROWAWAY_PG_DIR"; THROWAWAY_PG_DIR=""; fi
}

throwaway_pg_start() {
  if [[ -z "$THROWAWAY_PG_BIN" ]]; then
    for v in 17 16 15; do
      if [[ -x "/usr/lib/postgresql/$v/bin/initdb" ]]; then THROWAWAY_PG_BIN="/usr/lib/postgresql/$v/bin"; break; fi
    done
  fi
  if [[ -z "$THROWAWAY_PG_BIN" || ! -x "$THROWAWAY_PG_BIN/initdb" ]]; then
    echo "error: PostgreSQL server binaries not found (looked in /usr/lib/postgresql/{17,16,15}/bin)." >&2
    echo "Install them with: apt-get install -y postgresql   (or run: bash .ci/run)" >&2
    exit 1
  fi
  if [[ "$(id -u)" == "0" ]] && ! id postgres >/dev/null 2>&1; then
    echo "error: running as root but there is no 'postgres' user to run the server as." >&2
    echo "Install Debian's postgresql package (it creates the user): apt-get install -y postgresql" >&2
    exit 1
  fi

  THROWAWAY_PG_DIR="$(mktemp -d -t crmsync-pg.XXXXXX)"
  if [[ "$(id -u)" == "0" ]]; then chown postgres: "$THROWAWAY_PG_DIR"; fi
  chmod 700 "$THROWAWAY_PG_DIR"

  local port
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()' 2>/dev/null || echo $((20000 + RANDOM % 20000)))"

  throwaway_pg_as "$THROWAWAY_PG_BIN/initdb" -D "$THROWAWAY_PG_DIR/data" --auth=trust --username=postgres --encoding=UTF8 --locale=C >"$THROWAWAY_PG_DIR/initdb.log" 2>&1 || {
    cat "$THROWAWAY_PG_DIR/initdb.log" >&2; echo "error: initdb failed" >&2; exit 1; }
  throwaway_pg_as "$THROWAWAY_PG_BIN/pg_ctl" -D "$THROWAWAY_PG_DIR/data" -l "$THROWAWAY_PG_DIR/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $THROWAWAY_PG_DIR -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" start >/dev/null || {
    cat "$THROWAWAY_PG_DIR/server.log" >&2; echo "error: PostgreSQL did not start" >&2; exit 1; }
  THROWAWAY_PG_STARTED=1

  export CRMSYNC_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
  echo "PostgreSQL $("$THROWAWAY_PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (data in $THROWAWAY_PG_DIR)"
}
