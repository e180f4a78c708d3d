-- Rendered reports (issue 21): audit.render_report() (one self-contained HTML
-- document with inline-SVG charts, or CSV), audit.render_dashboard(), and the
-- scheduled reports the maintenance worker writes (audit.schedule_report,
-- audit.unschedule_report, audit.run_due_reports; files by src/reports.c).
-- The typed report functions and the tables are in sql/src/reports.sql.
--
-- Everything put into a page goes through audit.html() (text and attribute
-- values alike); pages carry a Content-Security-Policy that allows no script,
-- no external fetch, only inline styles, as a second line of defence.
-- Who may call what: the render functions, the audit roles (42501 otherwise);
-- schedule_report/unschedule_report, audit_admin; run_due_reports and
-- write_report_file, nobody but the extension's owner (the maintenance worker).

-- HTML-escape text for element content and quoted attribute values.
CREATE FUNCTION audit.html(t text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(replace(replace(replace(replace(replace(t, '&', '&amp;'), '<', '&lt;'), '>', '&gt;'),
                                    '"', '&quot;'), '''', '&#39;'), '')
$$;
COMMENT ON FUNCTION audit.html(text) IS
    'Internal: text escaped for HTML content and attribute values (& < > " '' as entities; NULL as empty)';

-- A figure with thousands separators, as text.
CREATE FUNCTION audit.report_number(n bigint)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce(replace(to_char(n, 'FM999,999,999,999,999,999'), ' ', ''), '0') $$;
COMMENT ON FUNCTION audit.report_number(bigint) IS 'Internal: a count with thousands separators';

-- One CSV field (RFC 4180): quoted when it holds a comma, quote, CR or LF or
-- starts or ends with a space; NULL is an empty field.
CREATE FUNCTION audit.csv_field(v text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN v IS NULL THEN ''
                WHEN v ~ '[",\r\n]' OR v ~ '^\s' OR v ~ '\s$' THEN '"' || replace(v, '"', '""') || '"'
                ELSE v END
$$;
COMMENT ON FUNCTION audit.csv_field(text) IS 'Internal: one CSV field, quoted when needed (RFC 4180)';

-- Horizontal bar chart: one <g class="bar"> per label, with data-label and
-- data-value (what the end-to-end test reads back).
CREATE FUNCTION audit.svg_bar_chart(chart_id text, title text, labels text[], vals bigint[])
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n      integer := coalesce(cardinality(labels), 0);
    top    bigint := greatest(coalesce((SELECT max(v) FROM unnest(vals) v), 0), 1);
    row_h  integer := 22;
    width  integer := 540;
    label_w integer := 200;
    plot_w integer := 270;
    h      integer;
    out    text;
    i      integer;
    w      numeric;
BEGIN
    h := greatest(n, 1) * row_h + 34;
    out := format('<figure class="chart" id="%s"><figcaption>%s</figcaption>'
                  '<svg xmlns="http://www.w3.org/2000/svg" class="bars" width="%s" height="%s" viewBox="0 0 %s %s" role="img" aria-label="%s">',
                  audit.html(chart_id), audit.html(title), width, h, width, h, audit.html(title));
    IF n = 0 THEN
        out := out || '<text x="10" y="24" class="empty">no events</text>';
    END IF;
    FOR i IN 1 .. n LOOP
        w := round(plot_w * coalesce(vals[i], 0)::numeric / top, 1);
        out := out || format('<g class="bar" data-label="%s" data-value="%s" transform="translate(0,%s)">'
                             '<title>%s: %s</title>'
                             '<text x="%s" y="15" text-anchor="end" class="label">%s</text>'
                             '<rect x="%s" y="3" width="%s" height="16" class="v"/>'
                             '<text x="%s" y="15" class="value">%s</text></g>',
                             audit.html(labels[i]), coalesce(vals[i], 0), 10 + (i - 1) * row_h,
                             audit.html(labels[i]), coalesce(vals[i], 0),
                             label_w - 6, audit.html(left(labels[i], 30)),
                             label_w, w,
                             label_w + w + 6, audit.report_number(vals[i]));
    END LOOP;
    RETURN out || '</svg></figure>';
END
$$;
COMMENT ON FUNCTION audit.svg_bar_chart(text, text, text[], bigint[]) IS
    'Internal: an inline-SVG horizontal bar chart, one <g class="bar"> per label';

-- Vertical bars over time, stacked by outcome: one <g class="bar"> per bucket
-- with data-label, data-success and data-failure.
CREATE FUNCTION audit.svg_time_chart(chart_id text, title text, labels text[], ok bigint[], failed bigint[])
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n      integer := coalesce(cardinality(labels), 0);
    top    bigint := 1;
    width  integer := 720;
    height integer := 220;
    left_m integer := 50;
    plot_w integer := 650;
    plot_h integer := 160;
    slot   numeric;
    bw     numeric;
    step   integer;
    out    text;
    i      integer;
    hs     numeric;
    hf     numeric;
    x      numeric;
BEGIN
    FOR i IN 1 .. n LOOP
        top := greatest(top, coalesce(ok[i], 0) + coalesce(failed[i], 0));
    END LOOP;
    slot := plot_w::numeric / greatest(n, 1);
    bw := greatest(round(slot * 0.8, 2), 0.5);
    step := greatest(ceil(n / 12.0)::integer, 1);
    out := format('<figure class="chart" id="%s"><figcaption>%s</figcaption>'
                  '<svg xmlns="http://www.w3.org/2000/svg" class="time" width="%s" height="%s" viewBox="0 0 %s %s" role="img" aria-label="%s">'
                  '<line x1="%s" y1="%s" x2="%s" y2="%s" class="axis"/>'
                  '<text x="%s" y="%s" text-anchor="end" class="tick">%s</text>'
                  '<text x="%s" y="%s" text-anchor="end" class="tick">0</text>'
                  '<g class="legend"><rect x="%s" y="4" width="10" height="10" class="ok"/><text x="%s" y="13">success</text>'
                  '<rect x="%s" y="4" width="10" height="10" class="fail"/><text x="%s" y="13">failure</text></g>',
                  audit.html(chart_id), audit.html(title), width, height, width, height, audit.html(title),
                  left_m, 20 + plot_h, left_m + plot_w, 20 + plot_h,
                  left_m - 4, 26, audit.report_number(top),
                  left_m - 4, 20 + plot_h,
                  width - 150, width - 136, width - 80, width - 66);
    FOR i IN 1 .. n LOOP
        hs := round(plot_h * coalesce(ok[i], 0)::numeric / top, 2);
        hf := round(plot_h * coalesce(failed[i], 0)::numeric / top, 2);
        x := round(left_m + (i - 1) * slot + (slot - bw) / 2, 2);
        out := out || format('<g class="bar" data-label="%s" data-success="%s" data-failure="%s">'
                             '<title>%s: %s success, %s failure</title>'
                             '<rect x="%s" y="%s" width="%s" height="%s" class="ok"/>'
                             '<rect x="%s" y="%s" width="%s" height="%s" class="fail"/>',
                             audit.html(labels[i]), coalesce(ok[i], 0), coalesce(failed[i], 0),
                             audit.html(labels[i]), coalesce(ok[i], 0), coalesce(failed[i], 0),
                             x, 20 + plot_h - hs, bw, hs,
                             x, 20 + plot_h - hs - hf, bw, hf);
        IF (i - 1) % step = 0 THEN
            out := out || format('<text x="%s" y="%s" text-anchor="middle" class="tick">%s</text>',
                                 round(x + bw / 2, 2), 36 + plot_h, audit.html(labels[i]));
        END IF;
        out := out || '</g>';
    END LOOP;
    IF n = 0 THEN
        out := out || format('<text x="%s" y="100" class="empty">no events</text>', left_m + 10);
    END IF;
    RETURN out || '</svg></figure>';
END
$$;
COMMENT ON FUNCTION audit.svg_time_chart(text, text, text[], bigint[], bigint[]) IS
    'Internal: an inline-SVG chart of events over time stacked by outcome, one <g class="bar"> per bucket';

-- The page around a report or the dashboard: self-contained (inline style,
-- no script, no external resource), with a print stylesheet.
CREATE FUNCTION audit.report_page(title text, body text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT '<!DOCTYPE html>' || E'\n'
    || '<html lang="en"><head><meta charset="utf-8">' || E'\n'
    || '<meta http-equiv="Content-Security-Policy" content="default-src ''none''; style-src ''unsafe-inline''; img-src data:">' || E'\n'
    || '<meta name="viewport" content="width=device-width, initial-scale=1">' || E'\n'
    || '<meta name="generator" content="audit_ext">' || E'\n'
    || '<title>' || audit.html(title) || '</title>' || E'\n'
    || '<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif;color:#1f2933;margin:24px;font-size:14px;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px;border-bottom:1px solid #d9e2ec;padding-bottom:4px}
.meta{color:#52606d;margin:0 0 12px}.meta td{padding:1px 12px 1px 0}
.figures{display:flex;flex-wrap:wrap;gap:12px;margin:8px 0}
.figure{border:1px solid #d9e2ec;border-radius:6px;padding:8px 14px;min-width:120px}
.figure .n{font-size:22px;font-weight:600}.figure .l{color:#52606d;font-size:12px}
.charts{display:flex;flex-wrap:wrap;gap:16px}
figure.chart{margin:0;border:1px solid #d9e2ec;border-radius:6px;padding:8px;max-width:100%;overflow:hidden}
figcaption{font-weight:600;margin-bottom:4px}
svg text{font-size:11px;fill:#334e68}svg .value{fill:#52606d}svg .empty{fill:#9aa5b1}
svg rect.v{fill:#2f80ed}svg rect.ok{fill:#27ae60}svg rect.fail{fill:#eb5757}svg .axis{stroke:#9aa5b1}
table.detail{border-collapse:collapse;width:100%;font-size:12px}
table.detail th,table.detail td{border:1px solid #d9e2ec;padding:3px 6px;text-align:left;vertical-align:top;overflow-wrap:anywhere}
table.detail th{background:#f0f4f8;overflow-wrap:normal}
table.detail tr:nth-child(even) td{background:#fafbfc}
.ok{color:#1e7e34}.bad{color:#c0392b;font-weight:600}
.risk-critical{color:#fff;background:#c0392b;padding:0 4px;border-radius:3px}
.risk-high{color:#c0392b;font-weight:600}.risk-medium{color:#b7791f}.risk-low{color:#52606d}
.note{color:#52606d;font-size:12px}
footer{margin-top:24px;color:#9aa5b1;font-size:11px}
@media print{body{margin:10mm;font-size:11px}figure.chart,.figure,tr{break-inside:avoid}h2{break-after:avoid}
table.detail{font-size:9px}@page{size:A4 landscape;margin:10mm}}
</style></head><body>' || E'\n' || body || E'\n</body></html>\n'
$$;
COMMENT ON FUNCTION audit.report_page(text, text) IS
    'Internal: a self-contained HTML page (inline style with a print stylesheet, no script, a CSP allowing none)';

-- One summary figure box.
CREATE FUNCTION audit.report_figure(label text, value text, id text DEFAULT NULL)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT '<div class="figure"' || CASE WHEN id IS NULL THEN '' ELSE ' id="' || audit.html(id) || '"' END
        || '><div class="n">' || audit.html(value) || '</div><div class="l">' || audit.html(label) || '</div></div>'
$$;
COMMENT ON FUNCTION audit.report_figure(text, text, text) IS 'Internal: one summary figure of a report page';

-- Rows (a JSON array of objects, in column order) as an HTML table; every
-- value escaped; timestamps shown without the ISO "T" and fraction.
CREATE FUNCTION audit.report_table(columns text[], rows json, css text DEFAULT 'detail')
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT '<table class="' || audit.html(css) || '"><thead><tr>'
        || (SELECT string_agg('<th>' || audit.html(c) || '</th>', '' ORDER BY i)
              FROM unnest(columns) WITH ORDINALITY u(c, i))
        || '</tr></thead><tbody>'
        || coalesce((SELECT string_agg('<tr>'
                          || (SELECT string_agg(CASE WHEN v.key = 'risk' AND v.value IS NOT NULL
                                                     THEN '<td><span class="risk-' || audit.html(v.value) || '">'
                                                          || audit.html(v.value) || '</span></td>'
                                                     WHEN v.key = 'status' AND v.value = 'failure'
                                                     THEN '<td class="bad">failure</td>'
                                                     ELSE '<td>' || audit.html(regexp_replace(v.value,
                                                          '^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(\.\d+)?', '\1 \2')) || '</td>'
                                                END, '' ORDER BY v.i)
                                FROM json_each_text(r.j) WITH ORDINALITY v(key, value, i))
                          || '</tr>', E'\n' ORDER BY r.n)
                       FROM json_array_elements(rows) WITH ORDINALITY r(j, n)), '')
        || '</tbody></table>'
$$;
COMMENT ON FUNCTION audit.report_table(text[], json, text) IS
    'Internal: JSON rows as an HTML table, every value escaped';

-- The output columns of a report kind's typed function, in order.
CREATE FUNCTION audit.report_columns(kind text)
RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT array_agg(u.n ORDER BY u.i)
      FROM audit.report_kinds k
      JOIN pg_catalog.pg_proc p
        ON p.oid = (k.function || '(timestamptz, timestamptz, text[], boolean, boolean)')::pg_catalog.regprocedure
     CROSS JOIN LATERAL unnest(p.proargnames, p.proargmodes::text[]) WITH ORDINALITY u(n, m, i)
     WHERE k.kind = report_columns.kind AND u.m = 't'
$$;
COMMENT ON FUNCTION audit.report_columns(text) IS 'Internal: the output columns of a report kind''s function';

-- The integrity section: the verification of the period and the chain heads
-- of the last checkpoint round before its end.  When the maintenance worker
-- has recorded walks of the chains (audit.verification, audit.
-- record_verification()), the period is not walked again: the events newer
-- than the last recorded walk are walked now (from the heads it left), and
-- the period's older events are checked for rows rewritten or added since
-- the walk that covered them (a row version written after that walk's
-- snapshot: xmin at or above its snapshot_xmax); a recorded walk that found
-- a break keeps saying so.  Without a usable record (none yet, or one so old
-- that transaction ids may have wrapped around), audit.verify() of the
-- period as before.  The anchors and the checkpoint rounds are checked each
-- time (a few rows), as audit.verify() does.
CREATE FUNCTION audit.report_integrity(from_time timestamptz, to_time timestamptz)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v       record;
    rnd     record;
    heads   text;
    last    audit.verification;
    tail    record;
    seg     record;
    walks   record;
    g       record;
    bad     record;
    stale   boolean := false;
    n_period    bigint := 0;
    n_walked    bigint := 0;
    n_rewritten bigint := 0;
    n_missing   bigint := 0;
    first_rewritten bigint;
    prev    bytea := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
    expect  bigint := 1;
    how     text;
    breaks  bigint := 0;
    problem text;
    first_id bigint;
    first_t  timestamptz;
BEGIN
    SELECT * INTO last FROM audit.verification r ORDER BY r.verification_id DESC LIMIT 1;
    -- only walks that have reached the period: while the worker is still
    -- catching up (the first rounds after an upgrade walk an existing trail
    -- 1,000,000 ids a round) the newer events would be most of the trail
    IF last.verification_id IS NOT NULL
       AND NOT coalesce((SELECT max(r.max_event_time) FROM audit.verification r) >= from_time, false) THEN
        last := NULL;
    END IF;
    IF last.verification_id IS NOT NULL THEN
        -- the recorded walks: where each ends (width_bucket thresholds) and
        -- its snapshot_xmax as a distance back from the next transaction id
        -- (NULL: more than 1,000,000,000 transactions ago, too old to
        -- compare row versions with); and the walks whose events may lie in
        -- the period (from the first to the last one whose events' times
        -- reach into it): their ids, how many events they read, the times
        -- those lie in, and whether the count can still be compared (not
        -- when retention dropped a partition their events may have been in)
        SELECT array_agg(r.upto_event_id + 1 ORDER BY r.verification_id) AS thr,
               array_agg(CASE WHEN d.dist < 1000000000 THEN d.dist END ORDER BY r.verification_id) AS lim,
               min(r.verification_id) FILTER (WHERE r.min_event_time < to_time AND r.max_event_time >= from_time) AS first_walk,
               max(r.verification_id) FILTER (WHERE r.min_event_time < to_time AND r.max_event_time >= from_time) AS last_walk,
               max(p.pruned_to) AS pruned_to
          INTO seg
          FROM audit.verification r
         CROSS JOIN LATERAL (SELECT ((pg_snapshot_xmax(pg_current_snapshot())::text::numeric
                                      - r.snapshot_xmax::text::numeric))::bigint AS dist) d
         CROSS JOIN (SELECT max((e.detail ->> 'to_time')::timestamptz) AS pruned_to FROM audit.event e
                      WHERE e.class = 'system' AND e.action = 'PRUNE' AND e.detail ? 'to_time') p;
        SELECT min(r.after_event_id) + 1 AS a_id, max(r.upto_event_id) AS b_id, sum(r.events)::bigint AS events,
               least(from_time, min(r.min_event_time)) AS lo, greatest(to_time, max(r.max_event_time)) AS hi,
               coalesce(bool_and(r.min_event_time >= coalesce(seg.pruned_to, '-infinity') OR r.events = 0), true) AS countable
          INTO walks
          FROM audit.verification r
         WHERE r.verification_id BETWEEN seg.first_walk AND seg.last_walk;
        -- one pass over the events of the period and of those walks (one
        -- row: it may run in parallel): how many of the period, how many the
        -- walks read are still there, and how many rows of the period were
        -- written after the walk that read them looked (xmin at or after
        -- its snapshot_xmax: rewritten or added since)
        EXECUTE $q$
            SELECT count(*) FILTER (WHERE e.event_time >= $1 AND e.event_time < $2) AS in_period,
                   count(*) FILTER (WHERE e.event_time >= $1 AND e.event_time < $2 AND e.id < $9) AS walked,
                   count(*) FILTER (WHERE e.id BETWEEN $7 AND $8) AS in_walks,
                   count(*) FILTER (WHERE e.event_time >= $1 AND e.event_time < $2 AND e.id < $9
                                      AND $4[width_bucket(e.id, $3) + 1] IS NULL) AS stale,
                   count(*) FILTER (WHERE e.event_time >= $1 AND e.event_time < $2 AND e.id < $9
                                      AND ($10 - e.xmin::text::bigint + 4294967296) % 4294967296
                                          <= $4[width_bucket(e.id, $3) + 1]) AS rewritten,
                   min(e.id) FILTER (WHERE e.event_time >= $1 AND e.event_time < $2 AND e.id < $9
                                       AND ($10 - e.xmin::text::bigint + 4294967296) % 4294967296
                                           <= $4[width_bucket(e.id, $3) + 1]) AS first_rewritten
              FROM audit.event e
             WHERE e.event_time >= $5 AND e.event_time <= $6 $q$
            INTO g
            USING from_time, to_time, seg.thr, seg.lim, coalesce(walks.lo, from_time), coalesce(walks.hi, to_time),
                  coalesce(walks.a_id, 0), coalesce(walks.b_id, -1), last.upto_event_id + 1,
                  (pg_snapshot_xmax(pg_current_snapshot())::text::numeric % 4294967296)::bigint;
        n_period := g.in_period;
        n_walked := g.walked;
        stale := g.stale > 0;
        n_rewritten := g.rewritten;
        first_rewritten := g.first_rewritten;
        IF walks.countable AND walks.events IS NOT NULL AND g.in_walks < walks.events THEN
            n_missing := walks.events - g.in_walks;
        END IF;
    END IF;
    IF last.verification_id IS NULL OR stale THEN
        SELECT * INTO v FROM audit.verify(from_time, to_time);
        how := format('walked now (audit.verify() of the period: %s events)', audit.report_number(v.events));
    ELSE
        -- what arrived since the last recorded walk, up to the end of the
        -- period: walked now, each lane from where the walks left it
        SELECT * INTO tail FROM audit.verify_chains_from(last.upto_event_id, NULL, NULL, to_time, last.verification_id);
        breaks := tail.breaks;
        problem := tail.problem;
        first_id := tail.first_broken_event_id;
        first_t := tail.first_broken_event_time;
        IF n_rewritten > 0 THEN
            breaks := breaks + n_rewritten;
            SELECT e.event_time INTO first_t FROM audit.event e WHERE e.id = first_rewritten
             ORDER BY e.event_time LIMIT 1;
            first_id := first_rewritten;
            problem := coalesce(problem || '; ', '') ||
                       format('%s event(s) of the period were rewritten or added after the recorded walk of their chains (row written later than the walk), first event %s',
                              n_rewritten, first_rewritten);
        END IF;
        IF n_missing > 0 THEN
            breaks := breaks + 1;
            problem := coalesce(problem || '; ', '') ||
                       format('%s event(s) that the recorded verifications %s to %s walked (ids %s to %s) are no longer there: deleted',
                              n_missing, seg.first_walk, seg.last_walk, walks.a_id, walks.b_id);
        END IF;
        -- a recorded walk that found a break among events that may lie in
        -- the period
        SELECT count(*) AS walks, sum(r.breaks) AS breaks, min(r.first_broken_event_id) AS first_id,
               (array_agg(r.problem ORDER BY r.first_broken_event_id))[1] AS problem,
               (array_agg(r.first_broken_event_time ORDER BY r.first_broken_event_id))[1] AS first_t,
               (array_agg(r.verified_at ORDER BY r.first_broken_event_id))[1] AS verified_at
          INTO bad FROM audit.verification r
         WHERE r.breaks > 0 AND (r.min_event_time IS NULL OR (r.min_event_time < to_time AND r.max_event_time >= from_time));
        IF bad.walks > 0 THEN
            breaks := breaks + bad.breaks;
            IF first_id IS NULL OR bad.first_id < first_id THEN
                first_id := bad.first_id;
                first_t := bad.first_t;
            END IF;
            problem := coalesce(problem || '; ', '') ||
                       format('the recorded walk of %s found: %s', bad.verified_at, bad.problem);
        END IF;
        -- the anchors and the checkpoint rounds, as audit.verify() checks them
        IF EXISTS (SELECT 1 FROM audit.chain_anchor) AND
           audit.recorded_anchor_digest() IS DISTINCT FROM audit.anchor_digest() THEN
            breaks := breaks + 1;
            problem := coalesce(problem || '; ', '') ||
                       'audit.chain_anchor is not what the last PRUNE event recorded: an anchor was added or removed outside audit.prune()';
        END IF;
        FOR rnd IN SELECT * FROM audit.chain_round ORDER BY round_id LOOP
            IF rnd.round_id <> expect OR rnd.prev_hash <> prev OR
               rnd.hash IS DISTINCT FROM audit.chain_round_digest(rnd.round_id, rnd.horizon, rnd.shm_epoch, rnd.prev_hash) THEN
                breaks := breaks + 1;
                problem := coalesce(problem || '; ', '') ||
                           format('checkpoint round %s does not match its hash or does not follow round %s: a round or one of its checkpoint rows was added, removed or changed',
                                  rnd.round_id, expect - 1);
                EXIT;
            END IF;
            prev := rnd.hash;
            expect := rnd.round_id + 1;
        END LOOP;
        SELECT breaks = 0 AS verified, n_period AS events, tail.chains AS chains,
               tail.unverifiable_links AS unverifiable_links, breaks AS breaks,
               first_id AS first_broken_event_id, first_t AS first_broken_event_time, problem AS problem,
               (SELECT count(*) FROM audit.event e
                 WHERE e.class = 'ddl' AND e.detail @> '{"audit_protection_off": true}'
                   AND e.event_time >= from_time AND e.event_time < to_time) AS protection_off_events,
               tail.unconfirmed_chains AS unconfirmed_chains
          INTO v;
        how := format('%s walked by the recorded verifications (the last by %s at %s, every event up to id %s; audit.verification), '
                      '%s since (row versions and counts checked now); %s newer event(s) before the end of the period walked now',
                      audit.report_number(n_walked), audit.html(last.verified_by), audit.html(last.verified_at::text),
                      last.upto_event_id,
                      CASE WHEN n_rewritten = 0 AND n_missing = 0 THEN 'none of their rows rewritten, added or removed'
                           ELSE format('%s rewritten or added, %s removed', n_rewritten, n_missing) END,
                      audit.report_number(tail.events));
    END IF;
    SELECT r.round_id, r.taken_at, r.lanes, encode(r.hash, 'hex') AS hash INTO rnd
      FROM audit.chain_round r
     WHERE r.taken_at < to_time
     ORDER BY r.round_id DESC LIMIT 1;
    SELECT string_agg(format('<tr><td>%s</td><td>%s</td><td>%s</td><td><code>%s</code></td></tr>',
                             audit.html(h.class), h.lanes, h.last_event_id, audit.html(h.hash)), '' ORDER BY h.class)
      INTO heads
      FROM (SELECT c.class, count(*) AS lanes, max(c.event_id) AS last_event_id,
                   left(encode((array_agg(c.hash ORDER BY c.event_id DESC))[1], 'hex'), 16) || '…' AS hash
              FROM audit.chain_checkpoint c
             WHERE c.round_id = rnd.round_id
             GROUP BY c.class) h;
    RETURN '<section id="integrity"><h2>Integrity of the trail</h2>'
        || format('<p id="integrity-status" data-verified="%s" class="%s">%s</p>',
                  CASE WHEN v.verified THEN 'true' ELSE 'false' END, CASE WHEN v.verified THEN 'ok' ELSE 'bad' END,
                  CASE WHEN v.verified
                       THEN format('Verified: the hash chains of the %s events of the period are unbroken.',
                                   audit.report_number(v.events))
                       ELSE format('NOT VERIFIED: %s break(s), first at event %s (%s). %s',
                                   v.breaks, coalesce(v.first_broken_event_id::text, '?'),
                                   coalesce(v.first_broken_event_time::text, '?'), audit.html(v.problem)) END)
        || format('<p class="note" id="integrity-how" data-recorded-upto="%s">How: %s.</p>',
                  CASE WHEN last.verification_id IS NULL OR stale THEN '' ELSE last.upto_event_id::text END, how)
        || format('<table class="detail"><tr><th>events checked</th><td>%s</td><th>chains</th><td>%s</td>'
                  '<th>links not checkable in a bounded window</th><td>%s</td><th>protection-off events</th><td>%s</td>'
                  '<th>unconfirmed chains</th><td>%s</td></tr></table>',
                  v.events, v.chains, v.unverifiable_links, v.protection_off_events, v.unconfirmed_chains)
        || CASE WHEN rnd.round_id IS NULL THEN '<p class="note">No checkpoint round of the chain heads before the end of the period.</p>'
                ELSE format('<p class="note">Chain heads at checkpoint round %s (%s, %s lanes), round hash <code>%s</code>:</p>',
                            rnd.round_id, audit.html(rnd.taken_at::text), rnd.lanes, audit.html(rnd.hash))
                     || '<table class="detail"><thead><tr><th>class</th><th>lanes</th><th>last event id</th><th>head hash</th></tr></thead><tbody>'
                     || coalesce(heads, '') || '</tbody></table>' END
        || '</section>';
END
$$;
COMMENT ON FUNCTION audit.report_integrity(timestamptz, timestamptz) IS
    'Internal: the integrity section of a report (the recorded verifications, the events newer than them walked now and the period''s older rows checked for rewrites; without a record audit.verify() of the period; chain heads of the last checkpoint round)';

-- The report itself, and its count of detail rows (for audit.reports).
CREATE FUNCTION audit.build_report(kind text, from_time timestamptz, to_time timestamptz, actors text[],
                                   include_success boolean, include_failures boolean, format text,
                                   OUT content text, OUT rows bigint)
RETURNS record
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cap       constant integer := 1000;     -- detail rows shown in HTML (CSV has all)
    k         audit.report_kinds;
    cond      text;
    fn        text;
    cols      text[];
    total     bigint;
    detail    json;
    csv       text;
    unit      text;
    days      numeric;
    g         record;
    t_json    json;
    t_labels  text[] := '{}';
    t_ok      bigint[] := '{}';
    t_fail    bigint[] := '{}';
    ca_labels text[];
    ca_vals   bigint[];
    a_labels  text[];
    a_vals    bigint[];
    r_labels  text[];
    r_vals    bigint[];
    n_events  bigint;
    n_fail    bigint;
    n_actors  bigint;
    first_t   timestamptz;
    last_t    timestamptz;
    body      text;
    fmt_label text;
    risk_expr text := 'NULL::text';
    rows_expr text := 'NULL::integer';
    det_rows  text;
BEGIN
    IF build_report.format IS NULL OR build_report.format NOT IN ('html', 'csv') THEN
        RAISE EXCEPTION 'invalid format "%": must be html or csv', build_report.format
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'PDF is made from the HTML by scripts/report-pdf.sh.';
    END IF;
    cond := audit.report_condition(build_report.kind, from_time, to_time, actors, include_success, include_failures);
    SELECT * INTO k FROM audit.report_kinds rk WHERE rk.kind = build_report.kind;
    fn := k.function;
    cols := audit.report_columns(k.kind);

    IF build_report.format = 'csv' THEN
        EXECUTE pg_catalog.format(
            'SELECT count(*), string_agg((SELECT string_agg(audit.csv_field(v.value), '','' ORDER BY v.i)'
            '                             FROM json_each_text(r.j) WITH ORDINALITY v(key, value, i)), E''\n'' ORDER BY r.n)'
            '  FROM (SELECT row_to_json(x) AS j, row_number() OVER () AS n FROM %s($1, $2, $3, $4, $5) x) r', fn)
            INTO total, csv USING from_time, to_time, actors, include_success, include_failures;
        PERFORM audit.log_system_event('REPORT_GENERATED',
            jsonb_build_object('kind', k.kind, 'format', 'csv', 'from', from_time, 'to', to_time,
                               'actors', to_jsonb(actors), 'rows', total));
        content := (SELECT string_agg(audit.csv_field(c), ',' ORDER BY i) FROM unnest(cols) WITH ORDINALITY u(c, i))
                   || E'\n' || coalesce(csv || E'\n', '');
        rows := total;
        RETURN;
    END IF;


    -- One statement for the detail rows (all counted, the first "cap" made)
    -- and the charts: one snapshot, so that the figures and the rows agree
    -- even in READ COMMITTED (the typed functions are STABLE: they run in
    -- the snapshot of the statement that calls them).
    days := (extract(epoch FROM to_time) - extract(epoch FROM from_time)) / 86400;   -- (to - from overflows for extreme times)
    unit := CASE WHEN days <= 62 THEN 'day' WHEN days <= 371 THEN 'week' WHEN days <= 3660 THEN 'month' ELSE 'year' END;
    fmt_label := CASE unit WHEN 'day' THEN 'YYYY-MM-DD' WHEN 'week' THEN 'IYYY-"W"IW' WHEN 'month' THEN 'YYYY-MM' ELSE 'YYYY' END;
    IF k.kind = 'security_events' THEN
        -- the event's own risk (1.6), derived for events captured before
        risk_expr := 'coalesce(e.risk, audit.report_risk(e.class, e.action, e.status, e.detail))';
    END IF;
    IF k.kind = 'data_changes' THEN
        -- The data change report has one row per changed field: making every
        -- one of them to count them cost 156 s for a month of 5.36M events.
        -- They are counted per event instead, in the pass of the charts
        -- below, exactly as audit.report_data_change_rows makes them (its
        -- LEFT JOIN LATERAL unnest(...): an UPDATE one per element of
        -- changed_columns, an INSERT or DELETE one per key of new_data, else
        -- old_data, at least one; a TRUNCATE or a refused change one), and
        -- only the first "cap" rows are made (audit.report_data_changes() is
        -- inlined and streams: LIMIT stops it).  The same events: the
        -- kind's condition is the typed function's.
        rows_expr := $r$CASE WHEN e.status = 'success' AND e.action = 'UPDATE'
                             THEN greatest(coalesce(cardinality(e.changed_columns), 0), 1)
                             WHEN e.status = 'success' AND e.action IN ('INSERT', 'DELETE')
                             THEN greatest(coalesce(audit.jsonb_key_count(coalesce(e.new_data, e.old_data)), 0), 1)
                             ELSE 1 END$r$;
        det_rows := $d$
            SELECT NULL::bigint AS total, json_agg(r.j ORDER BY r.n) AS detail
              FROM (SELECT row_to_json(x) AS j, row_number() OVER () AS n
                      FROM (SELECT * FROM %s($1, $2, $3, $5, $6) LIMIT $7) x) r$d$;
    ELSE
        -- one row per event (a group for system_access) made by a plpgsql
        -- function, which makes them all before the first leaves: counted
        -- as they come, the first "cap" kept
        det_rows := $d$
            SELECT count(*) AS total, json_agg(r.j ORDER BY r.n) FILTER (WHERE r.n <= $7) AS detail
              FROM (SELECT CASE WHEN row_number() OVER () <= $7 THEN row_to_json(x) END AS j,
                           row_number() OVER () AS n FROM %s($1, $2, $3, $5, $6) x) r$d$;
    END IF;
    -- First one hash aggregate over the events (bucket, status, class,
    -- action, actor, risk), then the four groupings over its rows: grouping
    -- sets straight over a million events sorted them once per set.  The
    -- events come through a subquery that is not flattened (OFFSET 0): the
    -- planner then does not derive the number of buckets from event_time's
    -- distinct values (one per event) and hashes the groups (about 90,000
    -- for a month of 10M events) instead of sorting every event by them on
    -- disk (1.9 GB, most of 77 s for the data change report).
    EXECUTE pg_catalog.format($q$
        WITH det AS (%4$s
        ), base AS (
            SELECT s.bucket, s.status, s.class, s.action, s.actor, s.risk,
                   count(*) AS n, sum(s.nrows)::bigint AS nrows, min(s.event_time) AS first_t, max(s.event_time) AS last_t
              FROM (SELECT date_trunc(%1$L, e.event_time) AS bucket, e.status, e.class, e.action, e.actor,
                           %2$s AS risk, %5$s AS nrows, e.event_time
                      FROM audit.event e
                     WHERE %3$s
                    OFFSET 0) s
             GROUP BY 1, 2, 3, 4, 5, 6
        ), g AS (
            SELECT CASE WHEN GROUPING(b.bucket) = 0 THEN 1
                        WHEN GROUPING(b.class) = 0 THEN 2
                        WHEN GROUPING(b.actor) = 0 THEN 3
                        WHEN GROUPING(b.risk) = 0 THEN 4 ELSE 0 END AS k,
                   b.bucket, b.status, b.class, b.action, b.actor, b.risk,
                   sum(b.n)::bigint AS n, (sum(b.n) FILTER (WHERE b.status = 'failure'))::bigint AS failed,
                   sum(b.nrows)::bigint AS nrows, min(b.first_t) AS first_t, max(b.last_t) AS last_t
              FROM base b
             GROUP BY GROUPING SETS ((b.bucket, b.status), (b.class, b.action), (b.actor), (b.risk), ())
        )
        SELECT coalesce((SELECT det.total FROM det), (SELECT coalesce(sum(g.nrows), 0)::bigint FROM g WHERE g.k = 0)),
               (SELECT det.detail FROM det),
               (SELECT coalesce(sum(g.n), 0)::bigint FROM g WHERE g.k = 0),
               (SELECT coalesce(sum(g.failed), 0)::bigint FROM g WHERE g.k = 0),
               (SELECT count(*) FROM g WHERE g.k = 3 AND g.actor IS NOT NULL),
               (SELECT min(g.first_t) FROM g WHERE g.k = 0),
               (SELECT max(g.last_t) FROM g WHERE g.k = 0),
               (SELECT json_agg(json_build_object('bucket', g.bucket, 'status', g.status, 'n', g.n)) FROM g WHERE g.k = 1),
               (SELECT array_agg(x.class || ' ' || x.action ORDER BY x.n DESC, x.class, x.action)
                  FROM (SELECT * FROM g WHERE g.k = 2 ORDER BY g.n DESC, g.class, g.action LIMIT 15) x),
               (SELECT array_agg(x.n ORDER BY x.n DESC, x.class, x.action)
                  FROM (SELECT * FROM g WHERE g.k = 2 ORDER BY g.n DESC, g.class, g.action LIMIT 15) x),
               (SELECT array_agg(coalesce(x.actor, '(none)') ORDER BY x.n DESC, x.actor)
                  FROM (SELECT * FROM g WHERE g.k = 3 ORDER BY g.n DESC, g.actor LIMIT 10) x),
               (SELECT array_agg(x.n ORDER BY x.n DESC, x.actor)
                  FROM (SELECT * FROM g WHERE g.k = 3 ORDER BY g.n DESC, g.actor LIMIT 10) x),
               (SELECT array_agg(g.risk ORDER BY array_position(ARRAY['critical', 'high', 'medium', 'low'], g.risk))
                  FROM g WHERE g.k = 4 AND g.risk IS NOT NULL),
               (SELECT array_agg(g.n ORDER BY array_position(ARRAY['critical', 'high', 'medium', 'low'], g.risk))
                  FROM g WHERE g.k = 4 AND g.risk IS NOT NULL)
    $q$, unit, risk_expr, cond, pg_catalog.format(det_rows, fn), rows_expr)
        INTO total, detail, n_events, n_fail, n_actors, first_t, last_t, t_json, ca_labels, ca_vals, a_labels, a_vals,
             r_labels, r_vals
        USING from_time, to_time, actors, audit.export_threshold(), include_success, include_failures, cap;

    -- time buckets: every bucket of the period when there are at most 400,
    -- else only those with events
    FOR g IN
        SELECT b.bucket,
               coalesce(sum(x.n) FILTER (WHERE x.status = 'success'), 0)::bigint AS ok,
               coalesce(sum(x.n) FILTER (WHERE x.status = 'failure'), 0)::bigint AS failed
          FROM (SELECT s AS bucket
                  FROM generate_series(date_trunc(unit, from_time),
                                       CASE WHEN days / CASE unit WHEN 'day' THEN 1 WHEN 'week' THEN 7
                                                                  WHEN 'month' THEN 28 ELSE 365 END <= 400
                                            THEN to_time - interval '1 microsecond'
                                            ELSE '-infinity' END,
                                       ('1 ' || unit)::interval) s
                UNION
                SELECT (j.value ->> 'bucket')::timestamptz FROM json_array_elements(t_json) j) b
          LEFT JOIN (SELECT (j.value ->> 'bucket')::timestamptz AS bucket, j.value ->> 'status' AS status,
                            (j.value ->> 'n')::bigint AS n
                       FROM json_array_elements(t_json) j) x ON x.bucket = b.bucket
         GROUP BY b.bucket
         ORDER BY b.bucket
    LOOP
        t_labels := t_labels || to_char(g.bucket, fmt_label);
        t_ok := t_ok || g.ok;
        t_fail := t_fail || g.failed;
    END LOOP;

    body := pg_catalog.format('<header><h1>%s</h1>', audit.html(k.title))
        || pg_catalog.format('<table class="meta" id="meta">'
                  '<tr><td>Period</td><td id="period">%s to %s (%s)</td></tr>'
                  '<tr><td>Actors</td><td id="filter-actors">%s</td></tr>'
                  '<tr><td>Outcomes</td><td id="filter-outcomes">%s</td></tr>'
                  '<tr><td>Generated</td><td id="generated">%s by %s%s, database %s</td></tr></table>'
                  '<p class="meta">%s</p></header>',
                  audit.html(from_time::text), audit.html(to_time::text), audit.html(current_setting('TimeZone')),
                  CASE WHEN actors IS NULL THEN 'all' ELSE audit.html(array_to_string(actors, ', ')) END,
                  CASE WHEN include_success AND include_failures THEN 'successes and failures'
                       WHEN include_success THEN 'successes only' ELSE 'failures only' END,
                  audit.html(now()::text), audit.html(audit.session_role()),
                  CASE WHEN coalesce(current_setting('audit_ext.actor', true), '') NOT IN ('', audit.session_role())
                       THEN ' (actor ' || audit.html(current_setting('audit_ext.actor', true)) || ')' ELSE '' END,
                  audit.html(current_database()), audit.html(k.description))
        || '<section id="summary"><h2>Summary</h2><div class="figures">'
        || audit.report_figure('events', audit.report_number(n_events), 'fig-events')
        || audit.report_figure('failures', audit.report_number(n_fail), 'fig-failures')
        || audit.report_figure('actors', audit.report_number(n_actors), 'fig-actors')
        || audit.report_figure('detail rows', audit.report_number(total), 'fig-rows')
        || audit.report_figure('first event', coalesce(to_char(first_t, 'YYYY-MM-DD HH24:MI'), '-'))
        || audit.report_figure('last event', coalesce(to_char(last_t, 'YYYY-MM-DD HH24:MI'), '-'))
        || '</div></section><section id="charts"><h2>Charts</h2><div class="charts">'
        || audit.svg_time_chart('chart-time', 'Events per ' || unit || ' by outcome', t_labels, t_ok, t_fail)
        || audit.svg_bar_chart('chart-class-action', 'Events by class and action', ca_labels, ca_vals)
        || audit.svg_bar_chart('chart-actors', 'Top actors', a_labels, a_vals)
        || CASE WHEN k.kind = 'security_events'
                THEN audit.svg_bar_chart('chart-risk', 'Events by risk', r_labels, r_vals) ELSE '' END
        || '</div></section>'
        || '<section id="detail"><h2>Detail</h2>'
        || pg_catalog.format('<p class="note" id="detail-count" data-total="%s" data-shown="%s">%s</p>',
                             total, least(total, cap),
                             CASE WHEN total > cap
                                  THEN pg_catalog.format('The first %s of %s rows are shown; the full list: format => ''csv'' or %s(...).',
                                                         audit.report_number(cap), audit.report_number(total), audit.html(fn))
                                  ELSE pg_catalog.format('All %s rows.', audit.report_number(total)) END)
        || audit.report_table(cols, coalesce(detail, '[]'::json))
        || '</section>'
        || audit.report_integrity(from_time, to_time)
        || pg_catalog.format('<footer>audit_ext %s · %s(%s, %s) · recorded as system/REPORT_GENERATED</footer>',
                             audit.html((SELECT e.extversion FROM pg_extension e WHERE e.extname = 'audit_ext')),
                             audit.html(fn), audit.html(from_time::text), audit.html(to_time::text));

    PERFORM audit.log_system_event('REPORT_GENERATED',
        jsonb_build_object('kind', k.kind, 'format', 'html', 'from', from_time, 'to', to_time,
                           'actors', to_jsonb(actors), 'rows', total, 'events', n_events));
    content := audit.report_page(k.title || ' ' || to_char(from_time, 'YYYY-MM-DD') || ' – ' || to_char(to_time, 'YYYY-MM-DD'),
                                 body);
    rows := total;
END
$$;
COMMENT ON FUNCTION audit.build_report(text, timestamptz, timestamptz, text[], boolean, boolean, text) IS
    'Internal: audit.render_report() without the access check, with the number of detail rows';

CREATE FUNCTION audit.render_report(kind text, from_time timestamptz, to_time timestamptz, actors text[] DEFAULT NULL,
                                    include_success boolean DEFAULT true, include_failures boolean DEFAULT true,
                                    format text DEFAULT 'html')
RETURNS text
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM audit.require_audit_role();
    RETURN (SELECT b.content FROM audit.build_report(kind, from_time, to_time, actors, include_success,
                                                     include_failures, format) b);
END
$$;
COMMENT ON FUNCTION audit.render_report(text, timestamptz, timestamptz, text[], boolean, boolean, text) IS
    'A report as one self-contained HTML document (summary, inline-SVG charts, the first 1000 detail rows, integrity status) or, format => ''csv'', all detail rows as CSV; records system/REPORT_GENERATED';

CREATE FUNCTION audit.render_dashboard(from_time timestamptz DEFAULT now() - interval '30 days',
                                       to_time timestamptz DEFAULT now())
RETURNS text
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    today     bigint;
    week      bigint;
    month     bigint;
    active    bigint;
    texts     bigint;
    arch_n    bigint;
    arch_b    bigint;
    t_json    json;
    t_labels  text[] := '{}';
    t_ok      bigint[] := '{}';
    t_fail    bigint[] := '{}';
    ty_labels text[];
    ty_vals   bigint[];
    n_events  bigint;
    n_fail    bigint;
    by_class  jsonb;
    d_day     timestamptz;
    d_week    timestamptz;
    d_month   timestamptz;
    a_labels  text[];
    a_vals    bigint[];
    recent    json;
    alerts    json;
    open_n    bigint;
    g         record;
    days      numeric;
    unit      text;
    body      text;
BEGIN
    PERFORM audit.require_audit_role();
    IF from_time IS NULL OR to_time IS NULL OR NOT isfinite(from_time) OR NOT isfinite(to_time) THEN
        RAISE EXCEPTION 'invalid dashboard period: from_time and to_time must be given and finite'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM audit.check_time_range(from_time, to_time);

    SELECT coalesce(sum(pg_total_relation_size(t.relid)), 0)::bigint INTO active
      FROM pg_partition_tree('audit.event'::regclass) t WHERE t.isleaf;
    texts := pg_total_relation_size('audit.statement'::regclass);
    SELECT count(*), coalesce(sum(a.bytes), 0)::bigint INTO arch_n, arch_b FROM audit.archives a;

    days := (extract(epoch FROM to_time) - extract(epoch FROM from_time)) / 86400;   -- (to - from overflows for extreme times)
    unit := CASE WHEN days <= 62 THEN 'day' WHEN days <= 371 THEN 'week' WHEN days <= 3660 THEN 'month' ELSE 'year' END;
    -- One pass over the period's events for the figures, the events per
    -- day, the activity by type and the top actors: a hash aggregate by
    -- (bucket, status, class, actor).  It replaces three passes over the
    -- period (today/week/month, the buckets, audit.activity_summary()'s
    -- grouping sets, which also grouped by action, table and risk for
    -- figures the page does not show).  Today, this week and this month:
    -- with day buckets (periods up to 62 days) sums of whole buckets (their
    -- starts are midnights: an event is at or after one exactly when its day
    -- is), with longer buckets counted by each group; the events of those
    -- ranges outside the period (a period that starts after the month does,
    -- events after to_time) are counted apart, from those ranges only.
    d_day := date_trunc('day', now());
    d_week := date_trunc('week', now());
    d_month := date_trunc('month', now());
    -- (the subquery, not flattened, as in audit.build_report(): hashed
    -- groups, not every event sorted by them)
    EXECUTE pg_catalog.format($q$
        WITH base AS (
            SELECT s.bucket, s.status, s.class, s.actor, count(*) AS n, %s
              FROM (SELECT date_trunc($3, e.event_time) AS bucket, e.status, e.class, e.actor, e.event_time
                      FROM audit.event e
                     WHERE e.event_time >= $1 AND e.event_time < $2
                    OFFSET 0) s
             GROUP BY 1, 2, 3, 4
        )
        SELECT (SELECT json_agg(json_build_object('bucket', x.bucket, 'ok', x.ok, 'failed', x.failed))
                  FROM (SELECT b.bucket, coalesce(sum(b.n) FILTER (WHERE b.status = 'success'), 0)::bigint AS ok,
                               coalesce(sum(b.n) FILTER (WHERE b.status = 'failure'), 0)::bigint AS failed
                          FROM base b GROUP BY 1) x),
               (SELECT coalesce(sum(b.n), 0)::bigint FROM base b),
               (SELECT coalesce(sum(b.n) FILTER (WHERE b.status = 'failure'), 0)::bigint FROM base b),
               (SELECT coalesce(jsonb_object_agg(c.class, c.n), '{}'::jsonb)
                  FROM (SELECT b.class, sum(b.n)::bigint AS n FROM base b GROUP BY 1) c),
               (SELECT array_agg(t.actor::text ORDER BY t.n DESC, t.actor)
                  FROM (SELECT b.actor, sum(b.n)::bigint AS n FROM base b WHERE b.actor IS NOT NULL
                         GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10) t),
               (SELECT array_agg(t.n ORDER BY t.n DESC, t.actor)
                  FROM (SELECT b.actor, sum(b.n)::bigint AS n FROM base b WHERE b.actor IS NOT NULL
                         GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10) t),
               (SELECT coalesce(sum(b.n_day), 0)::bigint FROM base b),
               (SELECT coalesce(sum(b.n_week), 0)::bigint FROM base b),
               (SELECT coalesce(sum(b.n_month), 0)::bigint FROM base b)
    $q$, CASE WHEN unit = 'day'
              THEN 'CASE WHEN s.bucket >= $4 THEN count(*) END AS n_day,
                    CASE WHEN s.bucket >= $5 THEN count(*) END AS n_week,
                    CASE WHEN s.bucket >= $6 THEN count(*) END AS n_month'
              ELSE 'count(*) FILTER (WHERE s.event_time >= $4) AS n_day,
                    count(*) FILTER (WHERE s.event_time >= $5) AS n_week,
                    count(*) FILTER (WHERE s.event_time >= $6) AS n_month' END)
        INTO t_json, n_events, n_fail, by_class, a_labels, a_vals, today, week, month
        USING from_time, to_time, unit, d_day, d_week, d_month;
    SELECT today + count(*) FILTER (WHERE x.event_time >= d_day),
           week + count(*) FILTER (WHERE x.event_time >= d_week),
           month + count(*) FILTER (WHERE x.event_time >= d_month)
      INTO today, week, month
      FROM (SELECT e.event_time FROM audit.event e
             WHERE e.event_time >= least(d_week, d_month) AND e.event_time < from_time
            UNION ALL
            SELECT e.event_time FROM audit.event e
             WHERE e.event_time >= greatest(least(d_week, d_month), to_time)) x;
    FOR g IN
        SELECT b.bucket, coalesce(max(x.ok), 0)::bigint AS ok, coalesce(max(x.failed), 0)::bigint AS failed
          FROM (SELECT s AS bucket
                  FROM generate_series(date_trunc(unit, from_time),
                                       CASE WHEN days / CASE unit WHEN 'day' THEN 1 WHEN 'week' THEN 7
                                                                  WHEN 'month' THEN 28 ELSE 365 END <= 400
                                            THEN to_time - interval '1 microsecond'
                                            ELSE '-infinity' END,
                                       ('1 ' || unit)::interval) s
                UNION
                SELECT (j.value ->> 'bucket')::timestamptz FROM json_array_elements(t_json) j) b
          LEFT JOIN (SELECT (j.value ->> 'bucket')::timestamptz AS bucket, (j.value ->> 'ok')::bigint AS ok,
                            (j.value ->> 'failed')::bigint AS failed
                       FROM json_array_elements(t_json) j) x ON x.bucket = b.bucket
         GROUP BY b.bucket
         ORDER BY b.bucket
    LOOP
        t_labels := t_labels || to_char(g.bucket, CASE unit WHEN 'day' THEN 'YYYY-MM-DD' WHEN 'week' THEN 'IYYY-"W"IW'
                                                             WHEN 'month' THEN 'YYYY-MM' ELSE 'YYYY' END);
        t_ok := t_ok || g.ok;
        t_fail := t_fail || g.failed;
    END LOOP;

    -- activity by type: the application's own events (class app) are "application"
    SELECT array_agg(t.type ORDER BY t.o), array_agg(t.n ORDER BY t.o) INTO ty_labels, ty_vals
      FROM (SELECT x.type, x.o, coalesce(sum((by_class ->> c.c)::bigint), 0)::bigint AS n
              FROM (VALUES ('data changes', 1, ARRAY['data']), ('reads', 2, ARRAY['read']),
                           ('application', 3, ARRAY['app']),
                           ('security', 4, ARRAY['auth', 'privilege']), ('system', 5, ARRAY['ddl', 'system']))
                   x(type, o, classes)
              LEFT JOIN LATERAL unnest(x.classes) c(c) ON true
             GROUP BY x.type, x.o) t;

    -- the event's own risk (1.6), derived for events captured before
    SELECT json_agg(json_build_object('event_time', r.event_time, 'risk', coalesce(r.risk, audit.report_risk(r.class, r.action, r.status, r.detail)),
                                      'reason', r.reason, 'class', r.class, 'action', r.action, 'status', r.status,
                                      'actor', r.actor,
                                      'object', coalesce(r.schema_name || '.', '') || r.table_name) ORDER BY r.id DESC)
      INTO recent
      FROM (SELECT * FROM audit.recent_high_priority h ORDER BY h.id DESC LIMIT 10) r;
    SELECT count(*) INTO open_n FROM audit.alerts a WHERE a.acknowledged_at IS NULL;
    SELECT json_agg(json_build_object('fired_at', a.fired_at, 'severity', a.severity, 'rule', a.rule, 'key', a.key,
                                      'count', a.count) ORDER BY a.fired_at DESC)
      INTO alerts
      FROM (SELECT * FROM audit.alerts a WHERE a.acknowledged_at IS NULL ORDER BY a.fired_at DESC LIMIT 10) a;

    body := '<header><h1>Audit dashboard</h1>'
        || pg_catalog.format('<table class="meta" id="meta"><tr><td>Period</td><td id="period">%s to %s (%s)</td></tr>'
                             '<tr><td>Generated</td><td id="generated">%s by %s, database %s</td></tr></table></header>',
                             audit.html(from_time::text), audit.html(to_time::text), audit.html(current_setting('TimeZone')),
                             audit.html(now()::text), audit.html(audit.session_role()), audit.html(current_database()))
        || '<section id="summary"><h2>Events</h2><div class="figures">'
        || audit.report_figure('events today', audit.report_number(today), 'fig-today')
        || audit.report_figure('this week', audit.report_number(week), 'fig-week')
        || audit.report_figure('this month', audit.report_number(month), 'fig-month')
        || audit.report_figure('events in period', audit.report_number(n_events), 'fig-events')
        || audit.report_figure('failures in period', audit.report_number(n_fail), 'fig-failures')
        || audit.report_figure('open alerts', audit.report_number(open_n), 'fig-alerts')
        || '</div><h2>Storage</h2><div class="figures">'
        || audit.report_figure('active trail', pg_size_pretty(active), 'fig-storage-active')
        || audit.report_figure('statement texts', pg_size_pretty(texts), 'fig-storage-texts')
        || audit.report_figure(arch_n || ' archives', pg_size_pretty(arch_b), 'fig-storage-archives')
        || '</div></section><section id="charts"><h2>Activity</h2><div class="charts">'
        || audit.svg_time_chart('chart-time', 'Events per ' || unit || ' by outcome', t_labels, t_ok, t_fail)
        || audit.svg_bar_chart('chart-types', 'Activity by type', ty_labels, ty_vals)
        || audit.svg_bar_chart('chart-actors', 'Top actors', a_labels, a_vals)
        || '</div></section>'
        || '<section id="recent"><h2>Recent high-priority events (last 7 days)</h2>'
        || audit.report_table(ARRAY['event_time', 'risk', 'reason', 'class', 'action', 'status', 'actor', 'object'],
                              coalesce(recent, '[]'::json))
        || '</section><section id="alerts"><h2>Open alerts</h2>'
        || pg_catalog.format('<p class="note" id="alerts-count" data-open="%s">%s open (the newest 10 shown; audit.alerts)</p>',
                             open_n, audit.report_number(open_n))
        || audit.report_table(ARRAY['fired_at', 'severity', 'rule', 'key', 'count'], coalesce(alerts, '[]'::json))
        || '</section>'
        || audit.report_integrity(from_time, to_time)
        || pg_catalog.format('<footer>audit_ext %s · audit.render_dashboard()</footer>',
                             audit.html((SELECT e.extversion FROM pg_extension e WHERE e.extname = 'audit_ext')));
    RETURN audit.report_page('Audit dashboard', body);
END
$$;
COMMENT ON FUNCTION audit.render_dashboard(timestamptz, timestamptz) IS
    'The dashboard page as self-contained HTML: events today/this week/this month, storage, activity by type, top actors, recent high-priority events with risk, open alerts, integrity status';

-- ---------------------------------------------------------------------------
-- Scheduled reports
-- ---------------------------------------------------------------------------

-- Writes one report file into audit_ext.report_directory durably (NAME.tmp,
-- fsync, rename; NAME.sha256 beside it), src/reports.c.
CREATE FUNCTION audit.write_report_file(file text, content text, OUT path text, OUT bytes bigint, OUT checksum text)
RETURNS record
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_write_report_file';
COMMENT ON FUNCTION audit.write_report_file(text, text) IS
    'Internal: write a report file (a plain name) into audit_ext.report_directory with fsync and rename, and FILE.sha256; maintenance worker or superuser only';

-- The schedule's due times, in its time zone: the last one at or before t
-- (before => true) or the first one after t.
CREATE FUNCTION audit.report_due(every text, at time, timezone text, t timestamptz, before boolean)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    loc   timestamp := t AT TIME ZONE timezone;
    cand  timestamp;
    dow   integer;
    dom   integer;
BEGIN
    IF every = 'daily' THEN
        cand := date_trunc('day', loc) + at;
        IF before AND cand > loc THEN cand := cand - interval '1 day'; END IF;
        IF NOT before AND cand <= loc THEN cand := cand + interval '1 day'; END IF;
    ELSIF every LIKE 'weekly:%' THEN
        dow := array_position(ARRAY['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'],
                              substr(every, 8));
        cand := date_trunc('day', loc) - make_interval(days => ((extract(isodow FROM loc)::integer - dow + 7) % 7)) + at;
        IF before AND cand > loc THEN cand := cand - interval '7 days'; END IF;
        IF NOT before AND cand <= loc THEN cand := cand + interval '7 days'; END IF;
    ELSE
        dom := substr(every, 9)::integer;
        cand := date_trunc('month', loc) + make_interval(days => dom - 1) + at;
        IF before AND cand > loc THEN cand := date_trunc('month', loc - interval '1 month') + make_interval(days => dom - 1) + at; END IF;
        IF NOT before AND cand <= loc THEN cand := date_trunc('month', loc + interval '1 month') + make_interval(days => dom - 1) + at; END IF;
    END IF;
    RETURN cand AT TIME ZONE timezone;
END
$$;
COMMENT ON FUNCTION audit.report_due(text, time, text, timestamptz, boolean) IS
    'Internal: a schedule''s last due time at or before t (before => true) or its first one after t';

CREATE FUNCTION audit.schedule_report(name text, kind text, every text, at time DEFAULT '06:00',
                                      period interval DEFAULT NULL, format text DEFAULT 'html',
                                      timezone text DEFAULT 'UTC')
RETURNS audit.report_schedules
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s audit.report_schedules;
BEGIN
    PERFORM audit.require_audit_role(admin_only => true);
    IF name IS NULL OR btrim(name) = '' OR length(name) > 100 THEN
        RAISE EXCEPTION 'invalid schedule name: must be 1 to 100 characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF kind IS NULL OR NOT EXISTS (SELECT 1 FROM audit.report_kinds k WHERE k.kind = schedule_report.kind) THEN
        RAISE EXCEPTION 'invalid report kind "%"', kind
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The kinds are listed in audit.report_kinds: '
                         || (SELECT string_agg(k.kind, ', ' ORDER BY k.position) FROM audit.report_kinds k) || '.';
    END IF;
    IF every IS NULL OR every !~ '^(daily|weekly:(monday|tuesday|wednesday|thursday|friday|saturday|sunday)|monthly:([1-9]|1[0-9]|2[0-8]))$' THEN
        RAISE EXCEPTION 'invalid every "%"', every
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Write daily, weekly:monday ... weekly:sunday, or monthly:1 ... monthly:28.';
    END IF;
    IF at IS NULL THEN
        RAISE EXCEPTION 'invalid at: must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF period IS NOT NULL AND (period <= interval '0' OR period > interval '366 days') THEN
        RAISE EXCEPTION 'invalid period %: must be positive and at most 366 days', period
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF format IS NULL OR format NOT IN ('html', 'csv') THEN
        RAISE EXCEPTION 'invalid format "%": must be html or csv', format
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'PDF is made from the HTML by scripts/report-pdf.sh.';
    END IF;
    IF timezone IS NULL OR NOT EXISTS (SELECT 1 FROM pg_timezone_names z WHERE z.name = schedule_report.timezone) THEN
        RAISE EXCEPTION 'invalid timezone "%"', timezone
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give a name of pg_timezone_names, e.g. UTC or Europe/Berlin.';
    END IF;
    IF EXISTS (SELECT 1 FROM audit.report_schedules r WHERE r.name = schedule_report.name) THEN
        RAISE EXCEPTION 'report schedule "%" already exists', name
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Remove it first with audit.unschedule_report().';
    END IF;
    INSERT INTO audit.report_schedules (name, kind, every, at, period, format, timezone, next_due, created_by)
    VALUES (name, kind, every, at,
            coalesce(period, CASE WHEN every = 'daily' THEN interval '1 day'
                                  WHEN every LIKE 'weekly:%' THEN interval '7 days' ELSE interval '1 month' END),
            format, timezone, audit.report_due(every, at, timezone, now(), false), audit.session_role())
    RETURNING * INTO s;
    PERFORM audit.log_system_event('SCHEDULE REPORT',
        jsonb_build_object('name', s.name, 'kind', s.kind, 'every', s.every, 'at', s.at, 'period', s.period,
                           'format', s.format, 'timezone', s.timezone));
    RETURN s;
END
$$;
COMMENT ON FUNCTION audit.schedule_report(text, text, text, time, interval, text, text) IS
    'audit_admin: schedule a report (every daily, weekly:monday ..., monthly:1 ...; at local time in timezone; period ending at the due time, default the interval between runs) that the maintenance worker writes into audit_ext.report_directory';

CREATE FUNCTION audit.unschedule_report(name text)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old audit.report_schedules;
BEGIN
    PERFORM audit.require_audit_role(admin_only => true);
    DELETE FROM audit.report_schedules r WHERE r.name = unschedule_report.name RETURNING * INTO old;
    IF old.name IS NULL THEN
        RAISE EXCEPTION 'report schedule "%" does not exist', name
            USING ERRCODE = 'undefined_object',
                  HINT = 'The schedules are listed in audit.report_schedules.';
    END IF;
    PERFORM audit.log_system_event('UNSCHEDULE REPORT', jsonb_build_object('name', old.name, 'kind', old.kind));
    RETURN true;
END
$$;
COMMENT ON FUNCTION audit.unschedule_report(text) IS
    'audit_admin: remove a report schedule (files already written stay); 42704 when there is none';

-- Run by the maintenance worker (src/maintenance.c) each round: every
-- schedule that is due writes one report, for its latest due time (missed
-- ones after downtime: once, never twice), each in a subtransaction so that
-- one failing schedule does not stop the others.  A failure is recorded in
-- the schedule (shown in audit.worker_status) and retried after a backoff.
CREATE FUNCTION audit.run_due_reports()
RETURNS integer
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s       audit.report_schedules;
    due     timestamptz;
    content text;
    fname   text;
    w       record;
    nrows   bigint;
    written integer := 0;
    msg     text;
    state   text;
    zone    text := current_setting('TimeZone');
BEGIN
    FOR s IN SELECT * FROM audit.report_schedules r
              WHERE r.next_due <= now() AND (r.retry_after IS NULL OR r.retry_after <= now())
              ORDER BY r.next_due, r.name
    LOOP
        BEGIN
            due := audit.report_due(s.every, s.at, s.timezone, now(), true);
            PERFORM set_config('TimeZone', s.timezone, true);
            SELECT b.content, b.rows INTO content, nrows
              FROM audit.build_report(s.kind, due - s.period, due, NULL, true, true, s.format) b;
            PERFORM set_config('TimeZone', zone, true);
            -- the file name: the schedule's name reduced to letters, digits,
            -- "_" and "-" (a name cannot reach outside the directory), the
            -- due time, the format
            fname := regexp_replace(s.name, '[^A-Za-z0-9_-]', '_', 'g')
                     || '_' || to_char(due AT TIME ZONE s.timezone, 'YYYYMMDD"T"HH24MI') || '.' || s.format;
            SELECT * INTO w FROM audit.write_report_file(fname, content);
            INSERT INTO audit.reports (file, name, kind, period_from, period_to, format, rows, bytes, checksum)
            VALUES (fname, s.name, s.kind, due - s.period, due, s.format, coalesce(nrows, 0), w.bytes, w.checksum)
            ON CONFLICT (file) DO UPDATE
               SET rows = excluded.rows, bytes = excluded.bytes, checksum = excluded.checksum,
                   generated_at = excluded.generated_at;
            UPDATE audit.report_schedules r
               SET last_due = due, last_file = fname, last_run_at = now(), failures = 0,
                   last_error = NULL, last_error_at = NULL, retry_after = NULL,
                   next_due = audit.report_due(s.every, s.at, s.timezone, now(), false)
             WHERE r.name = s.name;
            PERFORM pg_notify('audit_reports',
                              json_build_object('name', s.name, 'kind', s.kind, 'file', fname,
                                                'from', due - s.period, 'to', due, 'checksum', w.checksum)::text);
            written := written + 1;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
            UPDATE audit.report_schedules r
               SET failures = r.failures + 1, last_error = state || ': ' || msg, last_error_at = now(),
                   retry_after = now() + least(interval '1 minute' * power(2, least(r.failures, 10)), interval '1 hour')
             WHERE r.name = s.name;
            RAISE WARNING 'audit_ext: scheduled report "%" failed: %', s.name, msg
                USING ERRCODE = state,
                      HINT = 'See audit.report_schedules.last_error; it is tried again after a backoff (1 minute, doubling up to 1 hour).';
        END;
    END LOOP;
    RETURN written;
END
$$;
COMMENT ON FUNCTION audit.run_due_reports() IS
    'Internal: the maintenance worker''s step that writes the due scheduled reports; returns how many were written';

-- ---------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------
REVOKE ALL ON FUNCTION audit.html(text),
                       audit.report_number(bigint),
                       audit.csv_field(text),
                       audit.svg_bar_chart(text, text, text[], bigint[]),
                       audit.svg_time_chart(text, text, text[], bigint[], bigint[]),
                       audit.report_page(text, text),
                       audit.report_figure(text, text, text),
                       audit.report_table(text[], json, text),
                       audit.report_columns(text),
                       audit.report_integrity(timestamptz, timestamptz),
                       audit.build_report(text, timestamptz, timestamptz, text[], boolean, boolean, text),
                       audit.write_report_file(text, text),
                       audit.report_due(text, time, text, timestamptz, boolean),
                       audit.run_due_reports() FROM PUBLIC;
