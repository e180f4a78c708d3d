#!/usr/bin/env bash
# A report as PDF, made from the very HTML audit.render_report() returns,
# printed by headless Chromium (Debian package chromium, installed here by
# scripts/install-deps.sh when missing).
#
#   bash scripts/report-pdf.sh KIND FROM TO OUT.pdf
#   bash scripts/report-pdf.sh security_events 2026-01-01 2026-02-01 jan.pdf
#
# KIND: a kind of audit.report_kinds; FROM (inclusive) and TO (exclusive):
# timestamps.  The connection is psql's (PGHOST, PGPORT, PGUSER, PGDATABASE,
# ~/.pgpass ...); the role must be audit_reader or audit_admin.  The HTML is
# kept beside the PDF (OUT.html).  Chromium runs with --no-sandbox when run as
# root (its sandbox refuses root) and is stopped after REPORT_PDF_TIMEOUT
# seconds (default 120).
set -euo pipefail
if [ $# -ne 4 ]; then
    echo "usage: $0 KIND FROM TO OUT.pdf" >&2
    exit 2
fi
kind=$1 from=$2 to=$3 out=$4
here=$(cd "$(dirname "$0")" && pwd)

if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        bash "$here/install-deps.sh" chromium >&2
    else
        echo "chromium is not installed: run (as root) bash scripts/install-deps.sh chromium" >&2
        exit 1
    fi
fi

html=${out%.pdf}.html
# psql variables are quoted by psql itself (:'name'), never pasted into SQL
psql -X -At -v ON_ERROR_STOP=1 -v kind="$kind" -v from="$from" -v to="$to" > "$html" <<'SQL'
SELECT audit.render_report(:'kind', :'from'::timestamptz, :'to'::timestamptz);
SQL

chromium_pdf() {   # html pdf
    local sandbox=() profile rc=0
    [ "$(id -u)" = 0 ] && sandbox=(--no-sandbox)
    profile=$(mktemp -d /tmp/audit_chromium.XXXXXX)
    timeout "${REPORT_PDF_TIMEOUT:-120}" chromium --headless "${sandbox[@]}" --disable-gpu --disable-dev-shm-usage --no-first-run \
        --user-data-dir="$profile" --no-pdf-header-footer \
        --print-to-pdf="$2" "file://$(realpath "$1")" 2>/dev/null || rc=$?
    rm -rf "$profile"
    return $rc
}
chromium_pdf "$html" "$out"
head -c 5 "$out" | grep -q '%PDF-' || { echo "no PDF was written to $out" >&2; exit 1; }
echo "$out ($(stat -c %s "$out") bytes), from $html"
