#!/usr/bin/env bash
# Reports as a person looks at them (issue 21).  A populated trail
# (test/e2e/reports_data.sql: hostile schema, table, actor and values;
# failed logins and refused statements made here); each report kind and the
# dashboard rendered by audit.render_report() / audit.render_dashboard() and
# opened in headless Chromium (--dump-dom, --screenshot): the page renders,
# no console message, the SVG charts have the right number of bars, the
# figures match SQL counts made independently (same snapshot: REPEATABLE
# READ), the hostile text is inert (no element or attribute came out of it);
# CSV has the same rows; a PDF is made by scripts/report-pdf.sh; generating a
# report is a REPORT_GENERATED event counted by user_activity; access: audit
# roles only.  Scheduled reports: a schedule due in the past (the worker was
# down) fires exactly once after a restart, files written with their
# .sha256 (the checksum matches audit.reports), a schedule named with "../"
# and "/" writes inside audit_ext.report_directory, NOTIFY audit_reports
# carries name, kind, file and period, and a missing directory is a failing
# schedule in audit.worker_status (58P01 with the path), retried after a
# backoff, not in a loop.  The worker's recorded walks of the chains
# (audit.verification): a rendered report reuses them, and an event edited
# or deleted after its walk still makes it say NOT VERIFIED.
# Screenshots, DOM dumps, HTML, CSV and the PDF are kept in
# AUDIT_REPORTS_OUT (default: a new /tmp/audit_reports_e2e.XXXXXX, named in
# the output) for a reviewer.
source "$(dirname "$0")/tap.inc"
source "$(dirname "$0")/../../scripts/pgenv.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DIR=${AUDIT_TEST_TMP:-/tmp}/reports
PORT=$(( ${PGPORT:-5497} + 110 ))
# a directory of this run's own (two runs side by side never share one)
if [ -n "${AUDIT_REPORTS_OUT:-}" ]; then
    OUT=$AUDIT_REPORTS_OUT
    rm -rf "$OUT"
    mkdir -p "$OUT"
else
    OUT=$(mktemp -d /tmp/audit_reports_e2e.XXXXXX) && chmod 755 "$OUT"
fi
echo "# screenshots, pages and files of this run: $OUT"
rm -rf "$DIR"
trap 'finish_clusters "$DIR"' EXIT
watch_log "$DIR/server.log"

# headless Chromium: installed only for this test (and scripts/report-pdf.sh)
bash "$ROOT/scripts/install-deps.sh" chromium >/dev/null 2>"$OUT/install-deps.err" \
    || { echo "not ok - could not install chromium: $(tail -3 "$OUT/install-deps.err")"; exit 1; }

pg_start "$DIR" "$PORT" "audit_ext.database = 'postgres'" "audit_ext.maintenance_interval = 3600" \
    "audit_ext.report_directory = '$DIR/reports'" \
    || { echo "not ok - could not start a cluster in $DIR"; exit 1; }
mkdir -p "$DIR/reports" && chown postgres: "$DIR/reports"

sqlstate() {   # psql args: the SQLSTATE of the error, or "ok"
    local out
    out=$(psql -X -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose "$@" 2>&1) && { echo ok; return; }
    echo "$out" | grep -o 'ERROR:  [0-9A-Z]\{5\}' | head -1 | cut -c9-
}
chrome() {   # chromium args...: headless, as root, bounded, own profile
    local profile rc=0
    profile=$(mktemp -d /tmp/audit_chromium.XXXXXX)
    timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run --user-data-dir="$profile" \
        --enable-logging=stderr --v=0 "$@" || rc=$?
    rm -rf "$profile"
    return $rc
}
# perl (Debian's essential perl-base) reads the DOM Chromium dumped
bars() {   # dom chart-id: number of <g class="bar"> in that chart
    perl -0777 -ne 'if (m{<figure class="chart" id="\Q'"$2"'\E">(.*?)</figure>}s) { my $c = () = $1 =~ /<g class="bar"/g; print $c } else { print "no chart" }' "$1"
}
bar_values() {   # dom chart-id: the data-value of its bars, comma-separated
    perl -0777 -ne 'if (m{<figure class="chart" id="\Q'"$2"'\E">(.*?)</figure>}s) { my $c = $1; print join(",", $c =~ /<g class="bar" data-label="[^"]*" data-value="(\d+)"/g) } else { print "no chart" }' "$1"
}
bar_labels() {   # dom chart-id: label=value of its bars, comma-separated (labels unescaped)
    perl -0777 -ne 'if (m{<figure class="chart" id="\Q'"$2"'\E">(.*?)</figure>}s) { my $c = $1; my @o;
        while ($c =~ /<g class="bar" data-label="([^"]*)" data-value="(\d+)"/g) { my ($l, $v) = ($1, $2);
            $l =~ s/&quot;/"/g; $l =~ s/&#39;/\x27/g; $l =~ s/&lt;/</g; $l =~ s/&gt;/>/g; $l =~ s/&amp;/&/g; push @o, "$l=$v" }
        print join(",", @o) } else { print "no chart" }' "$1"
}
figure() {   # dom figure-id: its value without thousands separators
    perl -0777 -ne 'if (m{<div class="figure" id="\Q'"$2"'\E"><div class="n">([^<]*)</div>}s) { (my $v = $1) =~ s/,//g; print $v } else { print "no figure" }' "$1"
}
attr() {   # dom element-id attribute
    perl -0777 -ne 'if (m{id="\Q'"$2"'\E"[^>]*\b\Q'"$3"'\E="([^"]*)"}s) { print $1 } else { print "none" }' "$1"
}
# elements the browser made of hostile text: tags script, img, iframe,
# object, embed, b, i (the page itself uses none) or any on...= event
# handler attribute.  Chromium's serialisation escapes < and > in text and
# attribute values, so a literal "<" starts a real tag.
hostile_elements() {
    perl -0777 -ne 'my $n = 0; while (/<([a-zA-Z][\w-]*)([^>]*)>/g) { my ($t, $a) = ($1, $2); $a =~ s/"[^"]*"//g;
        $n++ if $t =~ /^(script|img|iframe|object|embed|b|i)$/i || $a =~ /\son\w+\s*=/i } print $n' "$1"
}

# --- the trail -------------------------------------------------------------------
q -d postgres -c "CREATE EXTENSION audit_ext" >/dev/null
q -d postgres -f "$ROOT/test/e2e/reports_data.sql" >/dev/null
for i in 1 2 3; do psql -X -U rep_nobody -d postgres -c "SELECT 1" >/dev/null 2>&1; done   # failed logins
psql -X -U rep_bob -d postgres -c "DELETE FROM public.customers WHERE id = 1" >/dev/null 2>&1        # refused
psql -X -U rep_bob -d postgres -c 'DELETE FROM "sales&<i>"."Orders<script>" WHERE id = 2' >/dev/null 2>&1   # refused
psql -X -U rep_alice -d postgres -c "UPDATE public.customers SET name = 'alice was here' WHERE id = 7" >/dev/null
# the application's own events (issue 20): a login, a failed one, an export, a settings change
q -d postgres -c "SELECT audit.log_event('LOGIN', 'User', '{\"id\": 7}')" -c "SELECT audit.log_event('LOGIN_FAILED', 'User', '{\"id\": 8}', status => 'failure')" \
  -c "SELECT audit.log_event('EXPORT', 'Customer', detail => '{\"rows\": 1500}')" -c "SELECT audit.log_event('SETTINGS_CHANGE', 'Workgroup setting')" >/dev/null
wait_for "SELECT count(*) = 3 FROM audit.event WHERE class = 'auth' AND action = 'LOGIN_FAILED'" 60
wait_for "SELECT count(*) >= 2 FROM audit.event WHERE status = 'failure' AND class = 'data'" 60
wait_for "SELECT count(*) >= 1 FROM audit.event WHERE class = 'read' AND action = 'COPY'" 60

F="date_trunc('day', now()) - interval '6 days'"
T="date_trunc('day', now()) + interval '1 day'"
# the independent count of each kind's events, and of its (class, action) pairs
declare -A EVENTS_SQL PAIRS_SQL
SEC="((class = 'auth' AND action <> 'LOGOUT') OR class = 'privilege' OR status = 'failure' OR (class IN ('ddl', 'system') AND (detail ? 'risk' OR detail ? 'audit_protection_off' OR detail ? 'capture_off' OR detail ? 'audit_trigger_disabled')) OR (class = 'app' AND action IN ('LOGIN', 'LOGIN_FAILED', 'PASSWORD_CHANGE', 'PASSWORD_RESET', 'MFA_ENROLL', 'MFA_FAILED', 'ACCOUNT_LOCKED', 'ACCOUNT_UNLOCKED', 'API_KEY_CREATE', 'API_KEY_REVOKE', 'PERMISSION_CHANGE', 'ROLE_CHANGE')) OR risk IN ('high', 'critical'))"
ADM="(class IN ('ddl', 'privilege', 'system') OR (class = 'app' AND action IN ('SETTINGS_CHANGE', 'PERMISSION_CHANGE', 'ROLE_CHANGE', 'API_KEY_CREATE', 'API_KEY_REVOKE')))"
EVENTS_SQL[user_access]="SELECT count(*) FROM audit.event WHERE event_time >= $F AND event_time < $T AND (class IN ('auth', 'read') OR (class = 'app' AND action IN ('LOGIN', 'LOGIN_FAILED', 'LOGOUT', 'VIEW')))"
PAIRS_SQL[user_access]="SELECT count(DISTINCT (class, action)) FROM audit.event WHERE event_time >= $F AND event_time < $T AND (class IN ('auth', 'read') OR (class = 'app' AND action IN ('LOGIN', 'LOGIN_FAILED', 'LOGOUT', 'VIEW')))"
EVENTS_SQL[data_changes]="SELECT count(*) FROM audit.event WHERE event_time >= $F AND event_time < $T AND class = 'data' AND action IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')"
PAIRS_SQL[data_changes]="SELECT count(DISTINCT action) FROM audit.event WHERE event_time >= $F AND event_time < $T AND class = 'data' AND action IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')"
EVENTS_SQL[security_events]="SELECT count(*) FROM audit.event WHERE event_time >= $F AND event_time < $T AND $SEC"
PAIRS_SQL[security_events]="SELECT least(15, count(DISTINCT (class, action))) FROM audit.event WHERE event_time >= $F AND event_time < $T AND $SEC"
EVENTS_SQL[exports]="SELECT count(*) FROM audit.event WHERE event_time >= $F AND event_time < $T AND ((class = 'read' AND (action = 'COPY' OR (detail ->> 'rows')::bigint >= 1000)) OR (class = 'app' AND action = 'EXPORT'))"
PAIRS_SQL[exports]="SELECT count(DISTINCT (class, action)) FROM audit.event WHERE event_time >= $F AND event_time < $T AND ((class = 'read' AND (action = 'COPY' OR (detail ->> 'rows')::bigint >= 1000)) OR (class = 'app' AND action = 'EXPORT'))"
EVENTS_SQL[admin_activity]="SELECT count(*) FROM audit.event WHERE event_time >= $F AND event_time < $T AND $ADM"
PAIRS_SQL[admin_activity]="SELECT least(15, count(DISTINCT (class, action))) FROM audit.event WHERE event_time >= $F AND event_time < $T AND $ADM"
EVENTS_SQL[system_access]="SELECT count(*) FROM audit.event WHERE event_time >= $F AND event_time < $T"
PAIRS_SQL[system_access]="SELECT least(15, count(DISTINCT (class, action))) FROM audit.event WHERE event_time >= $F AND event_time < $T"
ACTORS_SQL="SELECT least(10, count(DISTINCT coalesce(actor, '(none)')))"

hostile='<script>alert("x")</script> & '"'co'"
kinds=$(q -d postgres -c "SELECT string_agg(kind, ' ' ORDER BY position) FROM audit.report_kinds")
is "$kinds" "user_access data_changes security_events exports admin_activity system_access" "audit.report_kinds lists the six kinds"
for kind in $kinds; do
    # expected figures and the report in one snapshot
    where=${EVENTS_SQL[$kind]#*FROM audit.event }
    expected=$(q -d postgres -F ' ' <<SQL
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT (${EVENTS_SQL[$kind]}), (${PAIRS_SQL[$kind]}), ($ACTORS_SQL FROM audit.event $where),
       (SELECT count(*) FROM audit.report_$kind($F, $T)),
       (SELECT count(*) FROM audit.event WHERE event_time >= $F AND event_time < $T AND status = 'failure'
           AND id IN (SELECT id FROM audit.event $where));
\o $OUT/$kind.html
SELECT audit.render_report('$kind', $F, $T);
\o
COMMIT;
SQL
)
    read -r n_events n_pairs n_actors n_rows n_failed <<<"$(grep -v '^BEGIN\|^COMMIT' <<<"$expected")"
    chrome --dump-dom "file://$OUT/$kind.html" > "$OUT/$kind.dom" 2> "$OUT/$kind.chromium.log"
    rc=$?
    chrome --screenshot="$OUT/$kind.png" --window-size=1280,1800 --hide-scrollbars "file://$OUT/$kind.html" \
        >/dev/null 2>>"$OUT/$kind.chromium.log"
    is "$rc:$(grep -c '</html>' "$OUT/$kind.dom"):$(grep -c 'INFO:CONSOLE' "$OUT/$kind.chromium.log")" "0:1:0" \
       "$kind: Chromium renders the page, no console message" "$(tail -5 "$OUT/$kind.chromium.log")"
    is "$([ -s "$OUT/$kind.png" ] && echo png)" "png" "$kind: screenshot $OUT/$kind.png"
    is "$(bars "$OUT/$kind.dom" chart-time)" "7" "$kind: events per day, one bar per day of the 7-day period"
    is "$(figure "$OUT/$kind.dom" fig-events):$(figure "$OUT/$kind.dom" fig-failures)" "$n_events:$n_failed" \
       "$kind: the events and failures figures match SQL counts ($n_events, $n_failed)"
    is "$(bars "$OUT/$kind.dom" chart-class-action):$(bars "$OUT/$kind.dom" chart-actors)" "$n_pairs:$n_actors" \
       "$kind: one bar per class and action ($n_pairs), per actor up to 10 ($n_actors)"
    is "$(attr "$OUT/$kind.dom" detail-count data-total):$(figure "$OUT/$kind.dom" fig-rows)" "$n_rows:$n_rows" \
       "$kind: detail rows = rows of audit.report_$kind() ($n_rows)"
    # the day bars add up to the events figure
    is "$(perl -0777 -ne 'if (m{id="chart-time">(.*?)</figure>}s) { my $c = $1; my $s = 0; $s += $1 + $2 while $c =~ /data-success="(\d+)" data-failure="(\d+)"/g; print $s }' "$OUT/$kind.dom")" \
       "$n_events" "$kind: the bars of the day chart add up to the events figure"
    is "$(hostile_elements "$OUT/$kind.dom")" "0" \
       "$kind: no element or attribute made of hostile text (script, img, event handlers)"
done

# hostile text shown as text
dom=$OUT/data_changes.dom
found() { grep -qF "$1" "$2" && echo found; }
is "$(found '&lt;script&gt;alert("x")&lt;/script&gt; &amp; '"'co'" "$dom")" "found" \
   "the hostile actor appears as text (escaped) in the data change report"
is "$(found '&lt;img src=x onerror="alert(1)"&gt; &amp; "quoted"' "$dom")" "found" "a hostile value appears as text"
is "$(found 'sales&amp;&lt;i&gt;' "$dom"):$(found 'Orders&lt;script&gt;' "$dom")" "found:found" \
   "the hostile schema and table names appear as text"
is "$(grep -c "Content-Security-Policy" "$OUT/data_changes.html")" "1" "pages carry a CSP that allows no script"
is "$(grep -cE '<script|<link|src="http|href="http|@import|url\(' "$OUT/data_changes.html")" "0" \
   "the page is self-contained: no script, stylesheet link, external source or url()"
# the chart of risk in the security report
is "$(bars "$OUT/security_events.dom" chart-risk)" \
   "$(q -d postgres -c "SELECT count(DISTINCT risk) FROM audit.report_security_events($F, $T)")" \
   "security_events: one bar per risk level present"

# the dashboard
expected=$(q -d postgres -F $'\t' <<SQL
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) FILTER (WHERE event_time >= date_trunc('day', now())),
       count(*) FILTER (WHERE event_time >= now() - interval '30 days' AND event_time < now()),
       (SELECT count(*) FROM audit.alerts WHERE acknowledged_at IS NULL),
       count(*) FILTER (WHERE event_time >= date_trunc('week', now())),
       count(*) FILTER (WHERE event_time >= date_trunc('month', now())),
       count(*) FILTER (WHERE event_time >= now() - interval '30 days' AND event_time < now() AND status = 'failure'),
       (SELECT string_agg(t.n::text, ',' ORDER BY t.o)
          FROM (SELECT x.o, count(e.id) AS n
                  FROM (VALUES (1, '{data}'::text[]), (2, '{read}'), (3, '{app}'), (4, '{auth,privilege}'), (5, '{ddl,system}')) x(o, c)
                  LEFT JOIN audit.event e ON e.class = ANY (x.c) AND e.event_time >= now() - interval '30 days' AND e.event_time < now()
                 GROUP BY x.o) t),
       (SELECT string_agg(t.actor || '=' || t.n, ',' ORDER BY t.n DESC, t.actor)
          FROM (SELECT actor, count(*) AS n FROM audit.event
                 WHERE event_time >= now() - interval '30 days' AND event_time < now() AND actor IS NOT NULL
                 GROUP BY actor ORDER BY 2 DESC, 1 LIMIT 10) t)
  FROM audit.event;
\o $OUT/dashboard.html
SELECT audit.render_dashboard();
\o
COMMIT;
SQL
)
IFS=$'\t' read -r d_today d_period d_alerts d_week d_month d_failed d_types d_actors <<<"$(grep -v '^BEGIN\|^COMMIT' <<<"$expected")"
chrome --dump-dom "file://$OUT/dashboard.html" > "$OUT/dashboard.dom" 2> "$OUT/dashboard.chromium.log"
rc=$?
chrome --screenshot="$OUT/dashboard.png" --window-size=1280,1800 --hide-scrollbars "file://$OUT/dashboard.html" \
    >/dev/null 2>>"$OUT/dashboard.chromium.log"
is "$rc:$(grep -c '</html>' "$OUT/dashboard.dom"):$(grep -c 'INFO:CONSOLE' "$OUT/dashboard.chromium.log")" "0:1:0" \
   "dashboard: Chromium renders the page, no console message"
is "$(figure "$OUT/dashboard.dom" fig-today):$(figure "$OUT/dashboard.dom" fig-events):$(figure "$OUT/dashboard.dom" fig-alerts)" \
   "$d_today:$d_period:$d_alerts" "dashboard: events today, in the period, open alerts match SQL counts"
is "$(figure "$OUT/dashboard.dom" fig-week):$(figure "$OUT/dashboard.dom" fig-month):$(figure "$OUT/dashboard.dom" fig-failures)" \
   "$d_week:$d_month:$d_failed" "dashboard: events this week, this month, failures in the period match SQL counts"
is "$(bar_values "$OUT/dashboard.dom" chart-types)" "$d_types" \
   "dashboard: activity by type (data, reads, application, security, system) matches SQL counts ($d_types)"
is "$(bar_labels "$OUT/dashboard.dom" chart-actors)" "$d_actors" "dashboard: the top actors and their events match SQL counts"
is "$(bars "$OUT/dashboard.dom" chart-time):$(bars "$OUT/dashboard.dom" chart-types)" "31:5" \
   "dashboard: 31 day bars for the default 30 days (partial days at both ends), 5 activity types (application included)"
is "$(grep -c 'id="integrity-status" data-verified="true"' "$OUT/dashboard.dom")" "1" "dashboard: integrity status verified"
is "$(hostile_elements "$OUT/dashboard.dom")" "0" "dashboard: hostile text inert"

# CSV: the same rows
csv=$(q -d postgres -c "SELECT audit.render_report('data_changes', $F, $T, format => 'csv')")
printf '%s\n' "$csv" > "$OUT/data_changes.csv"
is "$(head -1 <<<"$csv")" "event_id,event_time,actor,db_user,schema_name,table_name,record_id,action,status,column_name,old_value,new_value,txid" \
   "CSV: header of the typed columns"
is "$(($(wc -l <<<"$csv") - 1))" "$(q -d postgres -c "SELECT count(*) FROM audit.report_data_changes($F, $T)")" \
   "CSV: one line per detail row (no value here holds a line break)"
is "$(grep -c '"<script>alert(""x"")</script> & '"'co'"'"' <<<"$csv" | head -1 | sed 's/^[1-9][0-9]*$/quoted/')" "quoted" \
   "CSV: a field with quotes is quoted, its quotes doubled"
is "$(q -d postgres -c "SELECT count(*) FROM audit.report_data_changes($F, $T)")" \
   "$(q -d postgres -c "SELECT (SELECT count(*) FROM audit.changes WHERE event_time >= $F AND event_time < $T)
                             + (SELECT count(*) FROM audit.event WHERE class = 'data' AND event_time >= $F AND event_time < $T
                                  AND (status = 'failure' OR action = 'TRUNCATE'))")" \
   "report_data_changes: the rows of audit.changes plus one per refused change or TRUNCATE"

# PDF from the same HTML
pdf_out=$(PGHOST=$DIR PGPORT=$PORT PGDATABASE=postgres bash "$ROOT/scripts/report-pdf.sh" security_events \
          "$(date -u -d '-6 days' +%F)" "$(date -u -d '+1 day' +%F)" "$OUT/security_events.pdf" 2>&1)
is "$(head -c 5 "$OUT/security_events.pdf" 2>/dev/null)" "%PDF-" "scripts/report-pdf.sh writes a PDF" "$pdf_out"

# generating a report is an event, counted by user_activity
is "$(q -d postgres -c "SELECT count(*) FILTER (WHERE detail ->> 'kind' = 'data_changes' AND detail ->> 'format' = 'csv'
                                                     AND (detail ->> 'rows')::bigint > 0), count(*)
                          FROM audit.event WHERE class = 'system' AND action = 'REPORT_GENERATED'")" "1|8" \
   "every rendered report (6 HTML, 1 CSV, 1 PDF) is a system/REPORT_GENERATED event with kind, format, rows"
is "$(q -d postgres -c "SELECT reports_generated FROM audit.user_activity('postgres')")" "8" \
   "user_activity counts the reports an actor generated"

# access: the audit roles only
q -d postgres -c "CREATE ROLE rep_plain LOGIN; CREATE ROLE rep_admin LOGIN IN ROLE audit_admin" >/dev/null
got=""
for f in "audit.report_user_access(now() - interval '1 day', now())" "audit.report_system_access(now() - interval '1 day', now())" \
         "audit.render_report('exports', now() - interval '1 day', now())" "audit.render_dashboard()" \
         "audit.schedule_report('x', 'exports', 'daily')" "audit.write_report_file('x.html', 'x')" \
         "audit.run_due_reports()"; do
    got="$got $(sqlstate -U rep_plain -d postgres -c "SELECT $f")"
done
is "$got" " 42501 42501 42501 42501 42501 42501 42501" "a plain role: 42501 from every report function"
is "$(sqlstate -U rep_plain -d postgres -c "SELECT * FROM audit.reports")" "42501" "a plain role cannot read audit.reports"
is "$(sqlstate -U rep_auditor -d postgres -c "SELECT audit.render_report('exports', now() - interval '1 day', now())"):$(sqlstate -U rep_auditor -d postgres -c "SELECT audit.schedule_report('x', 'exports', 'daily')")" \
   "ok:42501" "audit_reader renders reports, may not schedule them"
is "$(sqlstate -U rep_admin -d postgres -c "SELECT audit.write_report_file('x.html', 'x')")" "42501" \
   "audit_admin cannot write files (only the maintenance worker)"

# --- scheduled reports -------------------------------------------------------------
q -U rep_admin -d postgres >/dev/null <<'SQL'
SELECT audit.schedule_report('Weekly Security Summary', 'security_events', 'weekly:monday', '06:00');
SELECT audit.schedule_report('../../escape/évil name', 'data_changes', 'daily', '06:00', format => 'csv');
SELECT audit.schedule_report('Monthly User Access', 'user_access', 'monthly:1', '06:00', timezone => 'Europe/Berlin');
SQL
is "$(q -d postgres -c "SELECT count(*) FROM audit.report_schedules WHERE next_due > now()")" "3" \
   "new schedules are due at their next time, not at once"
# the worker was down over three due times: make them past, restart with rounds every second
q -d postgres -c "UPDATE audit.report_schedules SET next_due = now() - interval '3 days' WHERE name <> 'Monthly User Access'" >/dev/null
q -d postgres -c "ALTER SYSTEM SET audit_ext.maintenance_interval = 1" >/dev/null
(cd / && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 restart >/dev/null)
wait_for "SELECT count(*) = 2 FROM audit.reports" 60 postgres
is "$(q -d postgres -c "SELECT name || ':' || count(*) FROM audit.reports GROUP BY name ORDER BY name" | tr '\n' ' ')" \
   "../../escape/évil name:1 Weekly Security Summary:1 " "after the restart each missed schedule wrote one report"
due_before=$(q -d postgres -c "SELECT string_agg(period_to::text, ',' ORDER BY name) FROM audit.reports")
is "$due_before" "$(q -d postgres -c "SELECT string_agg(audit.report_due(every, at, timezone, now(), true)::text, ',' ORDER BY name)
                                       FROM audit.report_schedules WHERE name <> 'Monthly User Access'")" \
   "... for the latest due time (the missed ones before it are not written)"
# a later round: nothing is written twice (a probe schedule made due shows a round has passed)
q -d postgres -c "UPDATE audit.report_schedules SET next_due = now() - interval '1 minute' WHERE name = 'Monthly User Access'" >/dev/null
wait_for "SELECT count(*) = 3 FROM audit.reports" 60 postgres
wait_for "SELECT count(*) = 1 FROM audit.event WHERE class = 'system' AND action = 'REPORT_GENERATED' AND actor = 'audit_ext maintenance worker' AND detail ->> 'kind' = 'user_access'" 30 postgres
is "$(q -d postgres -c "SELECT count(*), count(DISTINCT name), bool_and(s.next_due > now()) FROM audit.reports r JOIN audit.report_schedules s USING (name)")" \
   "3|3|t" "rounds after it write nothing twice; every schedule's next due time is in the future"
# files: inside the directory, sanitised names, checksums
files=$(cd "$DIR/reports" && ls | tr '\n' ' ')
is "$(q -d postgres -c "SELECT file FROM audit.reports WHERE name LIKE '../%'" | grep -cE '^______escape__vil_name_[0-9]{8}T0600\.csv$')" "1" \
   "a schedule named ../../escape/évil name writes ______escape__vil_name_<due>.csv" "$files"
is "$(find "$DIR" -path "$DIR/reports" -prune -o -name '*scape*' -print | wc -l):$(find / -maxdepth 3 -name 'escape' -newer "$DIR/data/PG_VERSION" 2>/dev/null | wc -l)" \
   "0:0" "nothing was written outside audit_ext.report_directory" "$files"
is "$(cd "$DIR/reports" && sha256sum -c --quiet ./*.sha256 2>&1 && echo ok)" "ok" "each file matches its .sha256 (sha256sum -c)" "$files"
mism=0
while IFS='|' read -r f sum bytes; do
    [ "$(sha256sum "$DIR/reports/$f" | cut -c1-64)" = "$sum" ] && [ "$(stat -c %s "$DIR/reports/$f")" = "$bytes" ] || mism=$((mism + 1))
done < <(q -d postgres -c "SELECT file, checksum, bytes FROM audit.reports")
is "$mism" "0" "audit.reports records each file's SHA-256 and size"
is "$(ls "$DIR/reports" | grep -c '\.tmp$')" "0" "no temporary file is left"
# a symbolic link planted where a report file goes (to a FIFO, to a file) is
# replaced, its target untouched: the rename's fsync of the file it replaced
# opened the target for writing (the FIFO made the write fail)
mkfifo "$DIR/planted_fifo" && echo keep > "$DIR/planted_victim" && chown postgres: "$DIR/planted_fifo" "$DIR/planted_victim"
ln -s "$DIR/planted_fifo" "$DIR/reports/planted.html" && ln -s "$DIR/planted_victim" "$DIR/reports/planted.html.sha256"
is "$(q -d postgres -c "SELECT bytes FROM audit.write_report_file('planted.html', 'content')" 2>&1)" "7" \
   "a report is written where a symbolic link was planted"
# (the file is read only once it is no link: a read of the FIFO would wait)
planted=$([ -f "$DIR/reports/planted.html" ] && [ ! -L "$DIR/reports/planted.html" ] \
          && [ ! -L "$DIR/reports/planted.html.sha256" ] && echo "files:$(cat "$DIR/reports/planted.html")")
is "$planted:$([ -p "$DIR/planted_fifo" ] && echo fifo):$(cat "$DIR/planted_victim")" \
   "files:content:fifo:keep" "the links are replaced by the files, their targets untouched"
rm -f "$DIR/reports/planted.html" "$DIR/reports/planted.html.sha256" "$DIR/planted_fifo" "$DIR/planted_victim"
cp "$DIR/reports/"* "$OUT/" 2>/dev/null

# NOTIFY audit_reports
sess_open listener -d postgres
sess_run listener "LISTEN audit_reports;"
q -d postgres -c "UPDATE audit.report_schedules SET next_due = now() - interval '1 minute' WHERE name = 'Weekly Security Summary'" >/dev/null
wait_for "SELECT last_run_at > now() - interval '1 minute' AND next_due > now() FROM audit.report_schedules WHERE name = 'Weekly Security Summary' AND last_run_at > (SELECT max(generated_at) FROM audit.reports WHERE name = 'Monthly User Access')" 60 postgres
sess_run listener "SELECT 1;"
payload=$(sess_out listener | grep -o 'Asynchronous notification "audit_reports" with payload "{.*}" received' | tail -1)
is "$(grep -c '"name" : "Weekly Security Summary"' <<<"$payload"):$(grep -c '"kind" : "security_events"' <<<"$payload"):$(grep -c '"file" : "Weekly_Security_Summary_' <<<"$payload"):$(grep -c '"from" : .*"to" : ' <<<"$payload")" \
   "1:1:1:1" "NOTIFY audit_reports carries name, kind, file and period" "$(sess_out listener)"
sess_close listener

# a failing schedule: the directory is gone
q -d postgres -c "ALTER SYSTEM SET audit_ext.report_directory = '$DIR/no_such_dir'" -c "SELECT pg_reload_conf()" >/dev/null
q -d postgres -c "UPDATE audit.report_schedules SET next_due = now() - interval '1 minute' WHERE name = 'Monthly User Access'" >/dev/null
wait_for "SELECT failing_report_schedules = 1 FROM audit.worker_status" 60 postgres
is "$(q -d postgres -c "SELECT last_report_error FROM audit.worker_status")" \
   "Monthly User Access: 58P01: could not access report directory \"$DIR/no_such_dir\": No such file or directory" \
   "a missing directory: the schedule fails with 58P01 and the path, shown in audit.worker_status"
# rounds go on every second (a second schedule made due fails in a later
# round); the failed schedule waits for its backoff
q -d postgres -c "UPDATE audit.report_schedules SET next_due = now() - interval '1 minute' WHERE name = 'Weekly Security Summary'" >/dev/null
wait_for "SELECT failing_report_schedules = 2 FROM audit.worker_status" 60 postgres
is "$(q -d postgres -c "SELECT failures, retry_after > last_error_at + interval '50 seconds' FROM audit.report_schedules WHERE name = 'Monthly User Access'")" \
   "1|t" "later rounds do not retry it at once (one failure, retried after a backoff)"
is "$(grep -c 'scheduled report "Monthly User Access" failed' "$DIR/server.log")" "1" "the failure is logged once"
q -d postgres -c "ALTER SYSTEM SET audit_ext.report_directory = ''" -c "SELECT pg_reload_conf()" >/dev/null
is "$(q -d postgres -c "SELECT count(*) FROM audit.reports")" "3" \
   "no report was recorded for the failed attempts (the second Weekly run rewrote its due time's file)"

# --- the data change report's total, counted without making its rows (1.6) ---------
# A rendered data change report counts its detail rows per event from the
# events' key sets (changed_columns, the keys of new_data or old_data) and
# makes only the first 1000.  On a varied trail (excluded, masked and digest
# columns, an UPDATE of an excluded column only, an UPDATE changing nothing,
# an INSERT of NULLs, a DELETE, a TRUNCATE, the refused changes above, several
# actors) its total must be count(*) of audit.report_data_changes() for every
# combination of actors and outcomes (one snapshot: REPEATABLE READ).
q -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE TABLE public.rep_wide (id int PRIMARY KEY, a text, b int, secret text, card text, ssn text, note text);
SELECT audit.enable('public.rep_wide', exclude_columns => '{secret}', mask_columns => '{card}', digest_columns => '{ssn}');
SET audit_ext.actor = 'carol@example.com';
INSERT INTO public.rep_wide SELECT g, 'a' || g, g, 's' || g, 'c' || g, 'n' || g, NULL FROM generate_series(1, 20) g;
UPDATE public.rep_wide SET secret = 'changed' WHERE id <= 3;
UPDATE public.rep_wide SET b = b WHERE id = 4;
UPDATE public.rep_wide SET a = 'x', card = 'new card', ssn = 'new', note = 'n' WHERE id BETWEEN 5 AND 8;
DELETE FROM public.rep_wide WHERE id > 18;
TRUNCATE public.rep_wide;
SET audit_ext.actor = 'bob@example.com';
INSERT INTO public.rep_wide VALUES (100, NULL, NULL, NULL, NULL, NULL, NULL);
UPDATE public.customers SET name = name || '!', email = email WHERE id BETWEEN 20 AND 22;
SQL
wait_for "SELECT count(*) = 1 FROM audit.event WHERE class = 'data' AND action = 'TRUNCATE' AND table_name = 'rep_wide'" 60
is "$(q -d postgres -c "SELECT count(*) FILTER (WHERE action = 'TRUNCATE') > 0, count(*) FILTER (WHERE status = 'failure') > 0,
                               count(*) FILTER (WHERE column_name = 'card') > 0, count(*) FILTER (WHERE column_name = 'ssn') > 0,
                               count(*) FILTER (WHERE column_name = 'secret') = 0, count(DISTINCT actor) >= 4
                          FROM audit.report_data_changes($F, $T)")" "t|t|t|t|t|t" \
   "the trail has a TRUNCATE, refused changes, masked and digest columns (not the excluded one), four actors"
hostile_sql=${hostile//\'/\'\'}
counts=$(q -d postgres <<SQL 2>&1 | grep -v '^BEGIN\|^COMMIT'
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) FILTER (WHERE c.total IS DISTINCT FROM c.typed), count(DISTINCT c.typed) >= 6,
       string_agg(format('%s/%s/%s:%s=%s', coalesce(array_to_string(a.actors, '+'), 'all'), o.s, o.f, c.total, c.typed),
                  ' ' ORDER BY a.i, o.i)
  FROM (VALUES (1, NULL::text[]), (2, ARRAY['alice@example.com']), (3, ARRAY['bob@example.com', 'carol@example.com']),
               (4, ARRAY['$hostile_sql']), (5, ARRAY['nobody'])) a(i, actors)
 CROSS JOIN (VALUES (1, true, true), (2, true, false), (3, false, true)) o(i, s, f)
 CROSS JOIN LATERAL (
       SELECT (substring(audit.render_report('data_changes', $F, $T, a.actors, o.s, o.f)
                         FROM 'id="detail-count" data-total="([0-9]+)"'))::bigint AS total,
              (SELECT count(*) FROM audit.report_data_changes($F, $T, a.actors, o.s, o.f)) AS typed) c;
COMMIT;
SQL
)
is "$(cut -d'|' -f1,2 <<<"$counts")" "0|t" \
   "data_changes: the rendered total = count(*) of audit.report_data_changes() for 5 actor filters x 3 outcome filters" "$counts"
echo "# data change totals (rendered=typed): $(cut -d'|' -f3 <<<"$counts")"

# --- the recorded verification (1.6) -------------------------------------------------
# Each round of the worker walks the chains of what arrived since its last
# walk; a rendered report walks only what is newer, and checks its period's
# older rows for rewrites and removals since their walk.
last=$(q -d postgres -c "SELECT max(id) FROM audit.event")
wait_for "SELECT coalesce(max(upto_event_id), 0) >= $last FROM audit.verification" 60 postgres
is "$?" "0" "the maintenance worker records walks of the chains up to the newest events (audit.verification)"
is "$(q -d postgres -c "SELECT bool_and(breaks = 0) AND bool_and(verified_by <> '') FROM audit.verification")" "t" \
   "every recorded walk found the chains unbroken, and says who walked"
html=$(q -d postgres -c "SELECT audit.render_report('data_changes', $F, $T)")
is "$(grep -c 'id="integrity-status" data-verified="true"' <<<"$html"):$(grep -c 'walked by the recorded verifications' <<<"$html")" "1:1" \
   "a rendered report reuses the recorded walks and says so (what, when, by whom)"
victim=$(q -d postgres -c "SELECT max(id) FROM audit.event WHERE class = 'data' AND id <= (SELECT max(upto_event_id) FROM audit.verification)")
tampered=$(q -d postgres -c "BEGIN" -c "ALTER TABLE audit.event DISABLE TRIGGER audit_append_only" \
             -c "UPDATE audit.event SET actor = 'someone else' WHERE id = $victim" \
             -c "SELECT audit.render_report('data_changes', $F, $T)" -c "ROLLBACK" 2>&1)
is "$(grep -c 'id="integrity-status" data-verified="false"' <<<"$tampered"):$(grep -c "rewritten or added after the recorded walk of their chains (row written later than the walk), first event $victim" <<<"$tampered")" "1:1" \
   "an event edited after its recorded walk: the report says NOT VERIFIED and names it"
tampered=$(q -d postgres -c "BEGIN" -c "ALTER TABLE audit.event DISABLE TRIGGER audit_append_only" \
             -c "DELETE FROM audit.event WHERE id = $victim" \
             -c "SELECT audit.render_report('data_changes', $F, $T)" -c "ROLLBACK" 2>&1)
is "$(grep -c 'id="integrity-status" data-verified="false"' <<<"$tampered"):$(grep -c 'are no longer there: deleted' <<<"$tampered")" "1:1" \
   "an event deleted after its recorded walk: the report says NOT VERIFIED"

is "$(q -d postgres -c "SELECT verified FROM audit.verify()")" "t" "audit.verify()"
echo "# screenshots, DOM dumps, HTML, CSV, PDF and report files kept in $OUT"
done_testing
