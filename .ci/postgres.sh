#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the service tests, then COMMAND with its URL exported:
#
#   .ci/postgres.sh .venv/bin/python -m pytest -q tests/service   # run COMMAND against it
#   .ci/postgres.sh                                               # start, print the URL, wait for Ctrl-C
#
# The cluster lives in a new temporary folder, listens on 127.0.0.1 only, on a free port, with a
# random password and fsync off (the tests kill the service, never PostgreSQL: what it committed stays
# in its WAL; fsync only matters when the machine crashes), and is stopped and deleted on exit. COMMAND sees
# POISONLAB_TEST_POSTGRES_URL=postgresql+psycopg://poisonlab:<password>@127.0.0.1:<port>/poisonlab_test
# Finds initdb/pg_ctl on PATH or in /usr/lib/postgresql/<version>/bin; as root without them it installs
# Debian's postgresql with apt-get; as root it runs the server as the user postgres (created when
# missing), since postgres refuses to run as root. Exit status: COMMAND's; 77 (one line on stderr) when
# no PostgreSQL can be had, so that a caller can skip rather than fail.
set -euo pipefail

UNAVAILABLE=77
say() { echo "postgres.sh: $*" >&2; }

find_bindir() {
  local exe
  if exe="$(command -v pg_ctl 2>/dev/null)" && command -v initdb >/dev/null 2>&1; then
    dirname "$(readlink -f "$exe")"
    return 0
  fi
  # Debian keeps the server programs off PATH; take the newest version installed
  exe="$(ls -d /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V | tail -1)"
  [ -n "$exe" ] && [ -x "$(dirname "$exe")/initdb" ] && dirname "$exe"
}

BINDIR="$(find_bindir || true)"
if [ -z "$BINDIR" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing Debian's postgresql"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } \
      >/tmp/poisonlab-postgres-install.log 2>&1; then
      say "PostgreSQL unavailable: apt-get install postgresql failed (see /tmp/poisonlab-postgres-install.log)"
      exit "$UNAVAILABLE"
    fi
    BINDIR="$(find_bindir || true)"
  fi
  if [ -z "$BINDIR" ]; then
    say "PostgreSQL unavailable: no initdb/pg_ctl on PATH or in /usr/lib/postgresql/*/bin"
    exit "$UNAVAILABLE"
  fi
fi

# The server's operating-system user: ourselves, or an unprivileged one when we are root.
RUN_AS=()
if [ "$(id -u)" = 0 ]; then
  OS_USER=postgres
  if ! id "$OS_USER" >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$OS_USER"
  fi
  if command -v runuser >/dev/null 2>&1; then
    RUN_AS=(runuser -u "$OS_USER" --)
  else
    RUN_AS=(su -s /bin/sh "$OS_USER" -c '"$0" "$@"')
  fi
fi

DIR="$(mktemp -d "${TMPDIR:-/tmp}/poisonlab-pg.XXXXXX")"
chmod 700 "$DIR"
[ "$(id -u)" = 0 ] && chown "$OS_USER" "$DIR"
STARTED=0
WAITER=
cleanup() {
  [ -n "$WAITER" ] && kill "$WAITER" 2>/dev/null
  if [ "$STARTED" = 1 ]; then
    "${RUN_AS[@]}" "$BINDIR/pg_ctl" -D "$DIR/data" -m fast -w -t 60 stop >/dev/null 2>&1 \
      || "${RUN_AS[@]}" "$BINDIR/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

DB_USER=poisonlab
DB_NAME=poisonlab_test
PASSWORD="$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
( umask 077; printf '%s\n' "$PASSWORD" >"$DIR/pwfile" )
[ "$(id -u)" = 0 ] && chown "$OS_USER" "$DIR/pwfile"
# trust on the cluster's own socket (in $DIR, mode 700), a password over TCP like a real deployment
"${RUN_AS[@]}" "$BINDIR/initdb" -D "$DIR/data" -U "$DB_USER" --pwfile="$DIR/pwfile" \
  --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-locale --no-sync >"$DIR/initdb.log" 2>&1 \
  || { say "initdb failed:"; cat "$DIR/initdb.log" >&2; exit 1; }
rm -f "$DIR/pwfile"

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for attempt in 1 2 3 4 5; do
  PORT=$((20000 + RANDOM % 40000))
  port_in_use "$PORT" && continue
  if "${RUN_AS[@]}" "$BINDIR/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -c unix_socket_directories=$DIR -c max_connections=200 -c fsync=off" \
    start >/dev/null; then
    STARTED=1
    break
  fi
  say "start on port $PORT failed (attempt $attempt):"
  tail -5 "$DIR/server.log" >&2 || true
done
if [ "$STARTED" != 1 ]; then
  say "could not start PostgreSQL"
  exit 1
fi
"${RUN_AS[@]}" "$BINDIR/createdb" -h "$DIR" -p "$PORT" -U "$DB_USER" "$DB_NAME"

export POISONLAB_TEST_POSTGRES_URL="postgresql+psycopg://$DB_USER:$PASSWORD@127.0.0.1:$PORT/$DB_NAME"
say "PostgreSQL $("$BINDIR/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT (data in $DIR)"
if [ "$#" -eq 0 ]; then
  echo "export POISONLAB_TEST_POSTGRES_URL='$POISONLAB_TEST_POSTGRES_URL'"
  say "running until Ctrl-C"
  sleep infinity &
  WAITER=$!
  wait "$WAITER" || true
  exit 0
fi
set +e
"$@"
status=$?
set -e
exit "$status"
