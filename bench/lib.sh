# Shared by the benchmark scripts (source it after scripts/pgenv.sh).

# The settings every OLTP benchmark cluster starts with (bench/run.sh's), so
# the scripts' figures compare with one another.
BENCH_PG_CONF=("synchronous_commit = off" "shared_buffers = 1GB" "max_wal_size = 8GB" "checkpoint_timeout = 30min")

# bench_positive_ints NAME...: each named variable must hold a positive
# integer; otherwise say which and exit 1
bench_positive_ints() {
    local knob
    for knob in "$@"; do
        [[ ${!knob} =~ ^[1-9][0-9]*$ ]] || { echo "$knob must be a positive integer (got '${!knob}')" >&2; exit 1; }
    done
}

# bench_server_ticks DIR: CPU ticks (1/CLK_TCK s) the cluster of pg_start DIR
# has used so far: the postmaster's own and its reaped children's (backends
# that have exited), plus every live child's (backends, checkpointer, WAL
# writer, audit_ext's workers).  The difference over a step is what the
# server spent on it, whatever the step waited for.
bench_server_ticks() {
    local pm s p f
    pm=$(head -n1 "$1/data/postmaster.pid")
    read -r -a f <"/proc/$pm/stat"
    s=$((f[13] + f[14] + f[15] + f[16]))
    for p in /proc/[0-9]*; do
        read -r -a f <"$p/stat" 2>/dev/null || continue
        [ "${f[3]}" = "$pm" ] && s=$((s + f[13] + f[14]))
    done
    echo "$s"
}

# bench_start_cluster DIR PORT: a throwaway cluster in DIR with the settings
# above, removed when the script exits, and psql's environment pointing at it
bench_start_cluster() {
    BENCH_CLUSTER_DIR=$1
    rm -rf "$BENCH_CLUSTER_DIR"
    trap 'pg_stop "$BENCH_CLUSTER_DIR"; rm -rf "$BENCH_CLUSTER_DIR"' EXIT
    pg_start "$BENCH_CLUSTER_DIR" "$2" "${BENCH_PG_CONF[@]}" >/dev/null || exit 1
    export PGHOST=$BENCH_CLUSTER_DIR PGPORT=$2 PGUSER=postgres
}
