# Start a throwaway PostgreSQL for the tests: a fresh cluster in a temporary directory,
# listening on a free loopback port only, trust authentication on 127.0.0.1 only.
#
#   source .ci/start-postgres.sh     # exports STORYCHECK_TEST_PG, defines stop_test_postgres
#   pytest                           # the database tests now run on SQLite and PostgreSQL
#   stop_test_postgres               # stops the server and deletes its directory
#
# Needs only the server binaries (initdb, pg_ctl, postgres) on PATH or in
# /usr/lib/postgresql/*/bin. PostgreSQL refuses to run as root: as root the server runs as
# the `postgres` user (runuser); as anyone else it runs as that user.
#
# Also made here: a role `storycheck_pw` that must log in with a password over TCP
# (scram-sha-256), so the tests can check that a wrong password never leaks into output.
#
# Meant to be sourced (bash); it changes no shell options of the caller.

_sc_pg_start() {
    local bindir="" b
    for b in initdb pg_ctl postgres; do
        if ! command -v "$b" >/dev/null 2>&1; then
            bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
            break
        fi
    done
    local initdb=${bindir:+$bindir/}initdb pg_ctl=${bindir:+$bindir/}pg_ctl postgres=${bindir:+$bindir/}postgres
    if ! command -v "$initdb" >/dev/null 2>&1; then
        echo "start-postgres: initdb not found (install the PostgreSQL server binaries)" >&2
        return 1
    fi

    local as=()
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres || return 1
        as=(runuser -u postgres --)
    fi

    local dir
    dir=$(mktemp -d "${TMPDIR:-/tmp}/storycheck-pg.XXXXXX") || return 1
    chmod 700 "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"

    local port
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])') || return 1

    if ! "${as[@]}" "$initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C --no-sync \
            --no-instructions >"$dir/initdb.log" 2>&1; then
        echo "start-postgres: initdb failed:" >&2
        cat "$dir/initdb.log" >&2
        return 1
    fi
    # Loopback only; a password role first (its line must precede the trust lines).
    "${as[@]}" sh -c "cat > '$dir/data/pg_hba.conf'" <<'HBA'
# TYPE  DATABASE  USER            ADDRESS        METHOD
host    all       storycheck_pw   127.0.0.1/32   scram-sha-256
local   all       all                            trust
host    all       all             127.0.0.1/32   trust
HBA
    # The test database and the password role, in single-user mode (no client binary needed).
    if ! printf '%s\n' "CREATE DATABASE storycheck_test;" \
            "CREATE ROLE storycheck_pw LOGIN PASSWORD 'storycheck-right-pw';" \
            | "${as[@]}" "$postgres" --single -D "$dir/data" postgres >"$dir/single.log" 2>&1 \
            || grep -q ERROR "$dir/single.log"; then
        echo "start-postgres: could not create the test database:" >&2
        cat "$dir/single.log" >&2
        return 1
    fi
    # Durability is pointless for a throwaway cluster: fsync off makes CREATE DATABASE fast.
    if ! "${as[@]}" "$pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
            start >/dev/null; then
        echo "start-postgres: the server did not start:" >&2
        cat "$dir/server.log" >&2
        return 1
    fi

    export STORYCHECK_TEST_PG="postgresql://postgres@127.0.0.1:$port/storycheck_test"
    export STORYCHECK_TEST_PG_DIR="$dir"
    _SC_PG_CTL=("${as[@]}" "$pg_ctl")
    echo "start-postgres: PostgreSQL on 127.0.0.1:$port (data in $dir); STORYCHECK_TEST_PG=$STORYCHECK_TEST_PG" >&2
}

stop_test_postgres() {
    local dir=${STORYCHECK_TEST_PG_DIR:-}
    [ -n "$dir" ] && [ -d "$dir" ] || return 0
    "${_SC_PG_CTL[@]}" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    unset STORYCHECK_TEST_PG STORYCHECK_TEST_PG_DIR
}

_sc_pg_start
