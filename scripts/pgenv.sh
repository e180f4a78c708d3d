# Source this file: helpers to run a throwaway PostgreSQL cluster (PG_MAJOR,
# default 15, or the binaries in PGBIN).
#   pg_start DIR PORT [EXTRA_CONF_LINE...]   initdb (as user postgres) and start
#   pg_start_scram DIR PORT [EXTRA...]       the same, TCP with scram passwords for every
#                                            role but postgres (trusted locally and on 127.0.0.1)
#   pg_stop DIR                              stop it (fast)
# If PG_HBA_FILE names a file, it replaces the cluster's pg_hba.conf before
# the first start.
# The cluster listens on 127.0.0.1 and a Unix socket in DIR, preloads
# audit_ext, and trusts local connections (md5/scram lines are added by the
# tests that need them).
PGBIN=${PGBIN:-/usr/lib/postgresql/${PG_MAJOR:-15}/bin}
export PATH="$PGBIN:$PATH"

pg_start() {
    local dir=$1 port=$2
    shift 2
    mkdir -p "$dir"
    # user postgres must reach DIR: add read and search on its parent, take
    # nothing away (the parent may be /tmp: its sticky bit and world write
    # must stay)
    chmod go+rx "$(dirname "$dir")"
    chown postgres: "$dir"
    chmod 700 "$dir"
    (cd / && runuser -u postgres -- "$PGBIN/initdb" -D "$dir/data" -A trust -U postgres --no-sync >/dev/null) || return 1
    cat >> "$dir/data/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
shared_preload_libraries = 'audit_ext'
max_connections = 100
shared_buffers = 256MB
log_line_prefix = '%m [%p] %q%u@%d '
CONF
    local line
    for line in "$@"; do echo "$line" >> "$dir/data/postgresql.conf"; done
    if [ -n "${PG_HBA_FILE:-}" ]; then
        cp "$PG_HBA_FILE" "$dir/data/pg_hba.conf" && chown postgres: "$dir/data/pg_hba.conf" || return 1
    fi
    (cd / && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null) || return 1
    export PGHOST=$dir PGPORT=$port PGUSER=postgres
    # A value the server refused is only a line in its log, and the test
    # would run with the default (walgap.sh ran for months with an
    # alert_interval of 1 ms, below the minimum): refuse to go on.
    local bad
    bad=$("$PGBIN/psql" -X -At -d postgres -c "SELECT string_agg(format('%s = %s (%s line %s): %s', name, setting, sourcefile, sourceline, error), '; ')
                                              FROM pg_file_settings WHERE error IS NOT NULL" 2>&1)
    if [ -n "$bad" ]; then
        echo "# pg_start: the server did not apply: $bad" >&2
        [ "${PG_START_ALLOW_BAD_CONF:-0}" = 1 ] || return 1
    fi
}

pg_start_scram() {
    local dir=$1 port=$2 hba rc
    shift 2
    hba=$(mktemp /tmp/audit_hba.XXXXXX)
    cat > "$hba" <<'HBA'
local all postgres                trust
host  all postgres 127.0.0.1/32   trust
host  all all      127.0.0.1/32   scram-sha-256
HBA
    chmod 644 "$hba"
    PG_HBA_FILE=$hba pg_start "$dir" "$port" "password_encryption = 'scram-sha-256'" "$@"
    rc=$?
    rm -f "$hba"
    return $rc
}

pg_stop() {
    local dir=$1
    [ -d "$dir/data" ] && (cd / && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1) || true
    # AUDIT_LOG_KEEP=DIR: keep each cluster's server log (and core files) before the tests delete it
    if [ -n "${AUDIT_LOG_KEEP:-}" ] && [ -f "$dir/server.log" ]; then
        mkdir -p "$AUDIT_LOG_KEEP"
        local name
        name=$(echo "$dir" | sed 's|^/tmp/||; s|/|_|g')
        cp "$dir/server.log" "$AUDIT_LOG_KEEP/$name.$(date +%s%N).log"
        local c
        for c in "$dir"/data/core*; do [ -f "$c" ] && cp "$c" "$AUDIT_LOG_KEEP/$name.$(basename "$c").$(date +%s%N)"; done
    fi
}
