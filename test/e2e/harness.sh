#!/usr/bin/env bash
# The harness itself: pg_start (scripts/pgenv.sh) lets user postgres reach the
# cluster's directory without taking permissions away from its parent.  Up to
# 2026-12-05 it ran chmod 755 on the parent, so a cluster made directly in
# /tmp (the demo's, the benchmarks') left /tmp without its sticky bit and
# world write: other users could no longer make temporary files, and the
# server's own COPY ... TO '/tmp/...' failed with "Permission denied".
source "$(dirname "$0")/tap.inc"
source "$(dirname "$0")/../../scripts/pgenv.sh"
BASE=$(mktemp -d "${AUDIT_TEST_TMP:-/tmp}/harness.XXXXXX")
chmod 755 "$BASE"
PORT=$(( ${PGPORT:-5497} + 85 ))
trap 'finish_clusters "$BASE/shared/c" "$BASE/private/c"; rm -rf "$BASE"' EXIT
watch_log "$BASE/shared/c/server.log"
watch_log "$BASE/private/c/server.log"

# 1. a parent like /tmp (1777)
mkdir "$BASE/shared" && chmod 1777 "$BASE/shared"
pg_start "$BASE/shared/c" "$PORT" || { echo "not ok - could not start a cluster in $BASE/shared/c"; exit 1; }
is "$(stat -c %a "$BASE/shared")" 1777 "a world-writable sticky parent (as /tmp) keeps its mode"
is "$(q -q -d postgres -c "COPY (SELECT 1) TO '$BASE/shared/copy.csv'" && cat "$BASE/shared/copy.csv")" 1 \
   "the server can write a file into it"
pg_stop "$BASE/shared/c"

# 2. a private parent (as mktemp -d makes)
mkdir "$BASE/private" && chmod 700 "$BASE/private"
pg_start "$BASE/private/c" "$PORT" || { echo "not ok - could not start a cluster in $BASE/private/c"; exit 1; }
is "$(stat -c %a "$BASE/private")" 755 "a private parent is opened to user postgres for read and search"
is "$(q -d postgres -c 'SELECT 1')" 1 "the cluster in it runs"

done_testing
