#!/usr/bin/env bash
# Regenerate docs/images/report.png and docs/images/dashboard.png, the
# pictures of the README's "Reports" section, from a throwaway cluster:
# a week of activity (test/e2e/reports_data.sql on the first day, then each
# day some logins, failed logins, changes, reads and exports), a Security
# Event Report of the week and the dashboard, rendered by
# audit.render_report() / audit.render_dashboard() and photographed by
# headless Chromium (installed by scripts/install-deps.sh chromium).
#
#   bash scripts/report-images.sh            (as root; about a minute)
#
# The week is real time as the server sees it: the server runs under
# libfaketime (Debian's faketime, installed by scripts/install-deps.sh), whose
# offset (FAKETIME_TIMESTAMP_FILE) is moved one day at a time, so the events
# of each day carry that day's time and the charts have a bar per day.
# Knobs: AUDIT_IMAGES_PORT (default 6430), KEEP=1 keeps the cluster and the HTML.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
bash scripts/install-deps.sh chromium >/dev/null
PGBIN=${PGBIN:-/usr/lib/postgresql/${PG_MAJOR:-15}/bin}
make -s PG_CONFIG="$PGBIN/pg_config" >/dev/null
make -s PG_CONFIG="$PGBIN/pg_config" install >/dev/null
source scripts/pgenv.sh

DIR=$(mktemp -d /tmp/audit_images.XXXXXX)
trap 'pg_stop "$DIR" >/dev/null 2>&1; [ -n "${KEEP:-}" ] || rm -rf "$DIR"' EXIT
FAKE=$DIR/faketime
echo "-6d" > "$FAKE"
chmod 644 "$FAKE"
LIB=$(ls /usr/lib/*/faketime/libfaketime.so.1 2>/dev/null | head -1)
[ -n "$LIB" ] || { echo "libfaketime is missing: bash scripts/install-deps.sh" >&2; exit 1; }
LD_PRELOAD=$LIB FAKETIME_TIMESTAMP_FILE=$FAKE FAKETIME_NO_CACHE=1 \
    pg_start "$DIR" "${AUDIT_IMAGES_PORT:-6430}" "audit_ext.database = 'postgres'" "audit_ext.maintenance_interval = 3600" \
    "audit_ext.alert_interval = 1"
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d postgres "$@"; }
wait_queue() {   # until the worker has written what was queued
    for _ in $(seq 300); do
        [ "$(q -c "SELECT queue_depth FROM audit.worker_status")" = 0 ] && return 0
        sleep 0.1
    done
}

q -c "CREATE EXTENSION audit_ext" >/dev/null
q -f test/e2e/reports_data.sql >/dev/null
for day in 6 5 4 3 2 1 0; do
    echo "-${day}d" > "$FAKE"
    n=$(( (7 - day) * 3 + (day % 3) * 4 ))
    for _ in $(seq $(( 2 + day % 3 ))); do psql -X -U rep_nobody -d postgres -c "SELECT 1" >/dev/null 2>&1 || true; done
    psql -X -U rep_bob -d postgres -c "DELETE FROM public.customers WHERE id = 1" >/dev/null 2>&1 || true
    q >/dev/null <<SQL
SET audit_ext.actor = 'alice@example.com';
UPDATE public.customers SET name = name || '.' WHERE id <= $n;
INSERT INTO "sales&<i>"."Orders<script>" SELECT 100 * $day + g + 1000, 'customer ' || g, g, NULL
  FROM generate_series(1, $n) g;
SET audit_ext.actor = 'bob@example.com';
SELECT count(*) FROM public.customers WHERE id <= $n * 10;
UPDATE "sales&<i>"."Orders<script>" SET amount = amount * 2 WHERE id > 1000 AND id % 3 = $day % 3;
SET audit_ext.actor = 'carol@example.com';
DELETE FROM "sales&<i>"."Orders<script>" WHERE id = 100 * $day + 1001;
SQL
    [ $((day % 3)) = 0 ] && q -c "COPY public.customers TO STDOUT" >/dev/null
    [ "$day" = 2 ] && q -c "GRANT SELECT ON public.customers TO rep_bob" -c "REVOKE SELECT ON public.customers FROM rep_bob" >/dev/null
    wait_queue
done
echo "+0" > "$FAKE"
wait_queue
q -c "SELECT audit.chain_checkpoint()" >/dev/null

q -c "SELECT audit.render_report('security_events', date_trunc('day', now()) - interval '6 days', date_trunc('day', now()) + interval '1 day')" \
    > "$DIR/report.html"
q -c "SELECT audit.render_dashboard(date_trunc('day', now()) - interval '6 days', date_trunc('day', now()) + interval '1 day')" \
    > "$DIR/dashboard.html"

shot() {   # html png height
    local profile sandbox=()
    [ "$(id -u)" = 0 ] && sandbox=(--no-sandbox)
    profile=$(mktemp -d /tmp/audit_chromium.XXXXXX)
    timeout 120 chromium --headless "${sandbox[@]}" --disable-gpu --disable-dev-shm-usage --no-first-run --user-data-dir="$profile" \
        --hide-scrollbars --window-size=1200,"$3" --screenshot="$2" "file://$1" >/dev/null 2>&1
    rm -rf "$profile"
}
mkdir -p docs/images
shot "$DIR/report.html" "$ROOT/docs/images/report.png" 1500
shot "$DIR/dashboard.html" "$ROOT/docs/images/dashboard.png" 1500
ls -l docs/images/report.png docs/images/dashboard.png
[ -n "${KEEP:-}" ] && echo "HTML kept in $DIR (cluster stopped)"
exit 0
