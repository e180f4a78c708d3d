-- pgTAP: tables with unusual columns (rolled back).  Names with quotes,
-- unicode, spaces, commas and braces; arrays (multidimensional, NULL
-- elements), json/jsonb, bytea, huge numerics, NaN and infinities,
-- TOASTed values of megabytes, a generated column, dropped columns (before
-- and after enable), domains, an enum, a composite, ranges, network and
-- time types, hstore (an extension type with a cast to json); a column
-- renamed and one dropped after audit.enable().  Every
-- event must hold exactly to_jsonb() of the row, minus excluded columns and
-- with masked ones as "[masked]"; the reading functions work on such a table
-- (composite primary key with quoted unicode names); the chains verify.
BEGIN;
SELECT plan(38);
SET LOCAL client_min_messages = warning;
-- events are written in canonical settings (timestamptz in UTC, ISO 8601
-- intervals); to_jsonb() gives the same JSON in them
SET LOCAL TimeZone = 'UTC';
SET LOCAL IntervalStyle = 'iso_8601';

CREATE TYPE "Mööd ""x""" AS ENUM ('sad', 'ok', 'häppy ''q''');
CREATE DOMAIN pos_int AS int CHECK (VALUE > 0);
CREATE DOMAIN short_text AS text CHECK (length(VALUE) < 100);
CREATE TYPE addr AS (street text, "Nr." int, tags text[]);

CREATE TABLE "Ünï ""cödé"" 表" (
    "ïd ""1"""     int,
    "Kéy 2"        text,
    "Mixed Case"   text,
    "with space"   int,
    "çøl ""x"""    text,            -- excluded
    "sécret, {x}"  text,            -- masked (comma and braces: array-literal syntax)
    "back\slash"   text,
    dropped_before text,
    int_arr        int[],
    md_arr         int[],
    txt_arr        text[],
    js             jsonb,
    jn             json,
    bin            bytea,
    num            numeric,
    f8             float8,
    f4             real,
    big_text       text,
    big_bin        bytea,
    big_js         jsonb,
    gen            int GENERATED ALWAYS AS ("with space" * 2) STORED,
    dom            pos_int,
    dom_t          short_text,
    mood           "Mööd ""x""",
    adr            addr,
    adrs           addr[],
    rng            int4range,
    trng           tstzrange,
    mrng           int4multirange,
    ip             inet,
    net            cidr,
    mac            macaddr,
    ivl            interval,
    ts             timestamp,
    tstz           timestamptz,
    d              date,
    tm             time,
    tmtz           timetz,
    u              uuid,
    b              bit(3),
    vb             varbit,
    ch             char(5),
    pt             point,
    tsv            tsvector,
    drop_after     text,
    rename_me      text,
    PRIMARY KEY ("ïd ""1""", "Kéy 2")
);
ALTER TABLE "Ünï ""cödé"" 表" DROP COLUMN dropped_before;
SELECT audit.enable('"Ünï ""cödé"" 表"', exclude_columns => ARRAY['çøl "x"'], mask_columns => ARRAY['sécret, {x}']);
CREATE TEMP TABLE mark AS SELECT max(id) AS id FROM audit.event;

-- The event of a row must be to_jsonb() of the row, minus the excluded
-- column, with the masked one as "[masked]".
CREATE FUNCTION pg_temp.expected(r "Ünï ""cödé"" 表", excluded text, masked text) RETURNS jsonb
LANGUAGE sql AS $$ SELECT (to_jsonb(r) - excluded) || jsonb_build_object(masked, '[masked]') $$;
CREATE FUNCTION pg_temp.ev(k int, act text) RETURNS audit.event
LANGUAGE sql AS $$
    SELECT e FROM audit.event e
     WHERE e.id > (SELECT id FROM mark) AND e.class = 'data' AND e.action = act
       AND e.table_name = 'Ünï "cödé" 表' AND (e.record_id ->> 'ïd "1"')::int = k
     ORDER BY e.id DESC LIMIT 1 $$;

-- Megabytes that do not compress away
CREATE TEMP TABLE bigv AS
SELECT (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 100000) g) AS t,            -- 3.2 MB
       (SELECT decode(string_agg(md5(g::text), ''), 'hex') FROM generate_series(1, 150000) g) AS b,  -- 2.4 MB
       (SELECT jsonb_agg(jsonb_build_object('i', g, 'h', md5(g::text), 'ü', 'Ünï')) FROM generate_series(1, 50000) g) AS j;

INSERT INTO "Ünï ""cödé"" 表"
    ("ïd ""1""", "Kéy 2", "Mixed Case", "with space", "çøl ""x""", "sécret, {x}", "back\slash",
     int_arr, md_arr, txt_arr, js, jn, bin, num, f8, f4, big_text, big_bin, big_js, dom, dom_t, mood,
     adr, adrs, rng, trng, mrng, ip, net, mac, ivl, ts, tstz, d, tm, tmtz, u, b, vb, ch, pt, tsv,
     drop_after, rename_me)
VALUES
    (1, 'ä "k" 表', 'MiXeD', 21, 'hidden', 'the secret', E'back\\slash \n "q"',
     ARRAY[1, NULL, 3], '{{1,2},{3,NULL}}', ARRAY['a', NULL, '', 'ü "q" ,{}'],
     '{"nested": {"a": [1, 2.5, null, true]}, "ü": "\u00e9"}', '{"b": 2, "a": 1, "a": 3}',
     '\x00ff10', (repeat('9', 500) || '.' || repeat('1', 500))::numeric, 1.5e300, 3.25,
     (SELECT t FROM bigv), (SELECT b FROM bigv), (SELECT j FROM bigv),
     7, 'domain text', 'häppy ''q''',
     ROW('Straße "1"', 12, ARRAY['x', NULL])::addr, ARRAY[ROW('a', 1, NULL)::addr, NULL],
     '[1,10)', '[2024-01-01 00:00+00,infinity)', '{[1,3), [5,7)}',
     '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', '1 year 2 mons -3 days 04:05:06.789',
     '2024-02-29 12:34:56.789', '2024-02-29 12:34:56.789+01', '2024-02-29', '23:59:59.999999', '12:00+05:30',
     'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', B'101', B'1101101', 'ab', '(1.5,-2)', 'fat:2 cat:1 ü',
     'to drop', 'to rename'),
    (2, '', NULL, 1, NULL, NULL, NULL,
     '{}', '{{NULL,NULL}}', '{}', '[]', '"just a string"',
     '\x', 'NaN', 'NaN', '-Infinity',
     '', '\x', '{}', 1, '', 'sad',
     ROW(NULL, NULL, '{}')::addr, '{}',
     'empty', '(,)', '{}',
     '::1', '::/0', '00:00:00:00:00:00', '-178000000 years', 'infinity', '-infinity', '-infinity', '00:00', '00:00-15:59',
     '00000000-0000-0000-0000-000000000000', B'000', B'', '', '(0,0)', '',
     NULL, NULL),
    (3, 'x', 'y', 3, 'h', 's', 'z',
     NULL, NULL, NULL, 'null', 'null',
     NULL, 'Infinity', 'Infinity', '-0', NULL, NULL, NULL, NULL, NULL, NULL,
     NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '-infinity', 'infinity', 'infinity', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
     NULL, NULL);

SELECT is((SELECT count(*) FROM audit.event WHERE id > (SELECT id FROM mark) AND class = 'data'), 3::bigint,
          'three rows inserted, three events');
SELECT is((pg_temp.ev(1, 'INSERT')).new_data, pg_temp.expected(t, 'çøl "x"', 'sécret, {x}'),
          'row 1: the INSERT event is to_jsonb() of the row (all types), excluded column absent, masked column "[masked]"')
  FROM "Ünï ""cödé"" 表" t WHERE "ïd ""1""" = 1;
SELECT is((pg_temp.ev(2, 'INSERT')).new_data, pg_temp.expected(t, 'çøl "x"', 'sécret, {x}'),
          'row 2: empty values, NaN, infinities, empty ranges and arrays round-trip')
  FROM "Ünï ""cödé"" 表" t WHERE "ïd ""1""" = 2;
SELECT is((pg_temp.ev(3, 'INSERT')).new_data, pg_temp.expected(t, 'çøl "x"', 'sécret, {x}'),
          'row 3: NULLs, infinite timestamps and dates, -0 round-trip')
  FROM "Ünï ""cödé"" 表" t WHERE "ïd ""1""" = 3;
SELECT is((pg_temp.ev(1, 'INSERT')).record_id, jsonb_build_object('ïd "1"', 1, 'Kéy 2', 'ä "k" 表'),
          'record_id: the composite key under its quoted unicode names');
SELECT ok(NOT ((pg_temp.ev(1, 'INSERT')).new_data ? 'dropped_before')
          AND NOT EXISTS (SELECT 1 FROM audit.event e, jsonb_each_text(e.new_data) kv
                           WHERE e.id > (SELECT id FROM mark) AND kv.value IN ('hidden', 'the secret')),
          'a column dropped before enable is not in the events; excluded and masked values appear nowhere');
SELECT is((pg_temp.ev(1, 'INSERT')).new_data -> 'gen', '42'::jsonb, 'the generated column is recorded with its computed value');
SELECT is(((pg_temp.ev(1, 'INSERT')).new_data ->> 'big_text'), (SELECT t FROM bigv),
          'a 3.2 MB text value is recorded in full');
SELECT is(((pg_temp.ev(1, 'INSERT')).new_data ->> 'big_bin'), (SELECT b::text FROM bigv),
          'a 2.4 MB bytea value is recorded in full (as its text form)');
SELECT is(((pg_temp.ev(1, 'INSERT')).new_data -> 'big_js'), (SELECT j FROM bigv),
          'a multi-MB jsonb value is recorded in full');
SELECT cmp_ok(octet_length((pg_temp.ev(1, 'INSERT')).new_data::text), '>', 9000000,
              'the event''s new_data holds more than 9 MB of JSON');
SELECT is(((pg_temp.ev(1, 'INSERT')).new_data ->> 'num')::numeric, (repeat('9', 500) || '.' || repeat('1', 500))::numeric,
          'a numeric of 1000 digits is kept exactly');
SELECT is((pg_temp.ev(2, 'INSERT')).new_data -> 'num', '"NaN"'::jsonb, 'numeric NaN is the string "NaN", as to_jsonb() has it');

-- json that jsonb cannot hold: the type accepts "\u0000", jsonb does not.
-- The change must not fail because it is audited; the value is kept as text.
INSERT INTO "Ünï ""cödé"" 表" ("ïd ""1""", "Kéy 2", jn) VALUES (4, 'nul', '{"a": "\u0000"}');
SELECT is((pg_temp.ev(4, 'INSERT')).new_data -> 'jn', to_jsonb('{"a": "\u0000"}'::text),
          'a json value with \u0000 does not make the audited INSERT fail; it is recorded as its text');

-- UPDATE: only the changed columns, old and new, also megabytes.
CREATE TEMP TABLE before_upd AS SELECT to_jsonb(t) AS r FROM "Ünï ""cödé"" 表" t WHERE "ïd ""1""" = 1;
UPDATE "Ünï ""cödé"" 表"
   SET big_text = big_text || 'ü', md_arr = '{{9,NULL},{NULL,9}}', "with space" = 22, "Mixed Case" = NULL,
       adr = ROW('neu', NULL, '{}')::addr, f4 = 'NaN', tstz = 'infinity'
 WHERE "ïd ""1""" = 1;
SELECT is((pg_temp.ev(1, 'UPDATE')).changed_columns,
          ARRAY['Mixed Case', 'with space', 'md_arr', 'f4', 'big_text', 'gen', 'adr', 'tstz'],
          'UPDATE: the changed columns, the generated one included, unchanged TOASTed values left out');
SELECT is((pg_temp.ev(1, 'UPDATE')).new_data,
          (SELECT jsonb_object_agg(k, to_jsonb(t) -> k) FROM unnest((pg_temp.ev(1, 'UPDATE')).changed_columns) k),
          'UPDATE: new_data is to_jsonb() of the new values')
  FROM "Ünï ""cödé"" 表" t WHERE "ïd ""1""" = 1;
SELECT is((pg_temp.ev(1, 'UPDATE')).old_data,
          (SELECT jsonb_object_agg(k, (SELECT r FROM before_upd) -> k) FROM unnest((pg_temp.ev(1, 'UPDATE')).changed_columns) k),
          'UPDATE: old_data is to_jsonb() of the old values, the 3.2 MB text included');
UPDATE "Ünï ""cödé"" 表" SET "çøl ""x""" = 'still hidden' WHERE "ïd ""1""" = 3;
SELECT is(pg_temp.ev(3, 'UPDATE'), NULL, 'an UPDATE of only the excluded column records nothing');
UPDATE "Ünï ""cödé"" 表" SET "sécret, {x}" = 'new secret' WHERE "ïd ""1""" = 3;
SELECT is(((pg_temp.ev(3, 'UPDATE')).old_data, (pg_temp.ev(3, 'UPDATE')).new_data)::text,
          ('{"sécret, {x}": "[masked]"}'::jsonb, '{"sécret, {x}": "[masked]"}'::jsonb)::text,
          'an UPDATE of the masked column shows that it changed, not to what');

-- Reading functions on this table
SELECT is((SELECT string_agg(action, ',' ORDER BY id) FROM audit.record_history('"Ünï ""cödé"" 表"', '{"ïd \"1\"": 1, "Kéy 2": "ä \"k\" 表"}')),
          'INSERT,UPDATE', 'record_history(regclass, record_id) with quoted unicode key names');
SELECT is((SELECT count(*) FROM audit.record_history('public', 'Ünï "cödé" 表', '{"ïd \"1\"": "1", "Kéy 2": "ä \"k\" 表"}')),
          2::bigint, 'record_history(schema, table, record_id), key value given as text');
SELECT is(audit.row_as_of('"Ünï ""cödé"" 表"', '{"ïd \"1\"": 1, "Kéy 2": "ä \"k\" 表"}', clock_timestamp()),
          pg_temp.expected(t, 'çøl "x"', 'sécret, {x}'), 'row_as_of() now is the current row, as audited')
  FROM "Ünï ""cödé"" 表" t WHERE "ïd ""1""" = 1;
SELECT is((SELECT string_agg(column_name || '=' || coalesce(new_value::text, 'null'), ' ' ORDER BY column_name)
             FROM audit.changes WHERE event_id = (pg_temp.ev(1, 'UPDATE')).id AND column_name IN ('with space', 'Mixed Case', 'f4')),
          'Mixed Case=null f4="NaN" with space=22', 'audit.changes: one row per changed column, unicode and spaced names');
SELECT matches(audit.undo((pg_temp.ev(1, 'UPDATE')).id), '^undid UPDATE event', 'undo() of the UPDATE on the unicode table');
SELECT is(to_jsonb(t), (SELECT r FROM before_upd), 'the row is back as it was, megabytes and all')
  FROM "Ünï ""cödé"" 表" t WHERE "ïd ""1""" = 1;

-- Renamed and dropped after enable: hidden columns stay hidden.
ALTER TABLE "Ünï ""cödé"" 表" RENAME COLUMN "çøl ""x""" TO "çøl ""y"" neu";
ALTER TABLE "Ünï ""cödé"" 表" RENAME COLUMN "sécret, {x}" TO "sécret ✓";
ALTER TABLE "Ünï ""cödé"" 表" RENAME COLUMN rename_me TO "renamed ✓";
ALTER TABLE "Ünï ""cödé"" 表" DROP COLUMN drop_after;
SELECT is((SELECT exclude_columns || mask_columns FROM audit.audited_tables WHERE table_name = 'Ünï "cödé" 表'),
          ARRAY['çøl "y" neu', 'sécret ✓'], 'the options follow the renamed excluded and masked columns');
INSERT INTO "Ünï ""cödé"" 表" ("ïd ""1""", "Kéy 2", "çøl ""y"" neu", "sécret ✓", "renamed ✓", num)
VALUES (5, 'after', 'hidden', 'the secret', 'new name', 5);
SELECT is((pg_temp.ev(5, 'INSERT')).new_data, pg_temp.expected(t, 'çøl "y" neu', 'sécret ✓'),
          'after the renames and the drop: the event is the row, renamed excluded column absent, renamed masked column masked')
  FROM "Ünï ""cödé"" 表" t WHERE "ïd ""1""" = 5;
SELECT ok(NOT ((pg_temp.ev(5, 'INSERT')).new_data ? 'drop_after') AND (pg_temp.ev(5, 'INSERT')).new_data ? 'renamed ✓',
          'the dropped column is gone from new events, the renamed one is there under its new name');
UPDATE "Ünï ""cödé"" 表" SET "çøl ""y"" neu" = 'h2', "sécret ✓" = 's2', "renamed ✓" = 'n2' WHERE "ïd ""1""" = 5;
SELECT is(((pg_temp.ev(5, 'UPDATE')).changed_columns, (pg_temp.ev(5, 'UPDATE')).new_data)::text,
          (ARRAY['sécret ✓', 'renamed ✓'], '{"sécret ✓": "[masked]", "renamed ✓": "n2"}'::jsonb)::text,
          'UPDATE after the renames: excluded column not recorded, masked one masked');
ALTER TABLE "Ünï ""cödé"" 表" DROP COLUMN "sécret ✓";
SELECT is((SELECT mask_columns FROM audit.audited_tables WHERE table_name = 'Ünï "cödé" 表'), '{}'::text[],
          'a masked column dropped after enable leaves the options');
UPDATE "Ünï ""cödé"" 表" SET "renamed ✓" = 'n3' WHERE "ïd ""1""" = 5;
SELECT is((pg_temp.ev(5, 'UPDATE')).new_data, '{"renamed ✓": "n3"}'::jsonb, 'and capture goes on');

-- DELETE: the whole old row
CREATE TEMP TABLE before_del AS SELECT t AS r FROM "Ünï ""cödé"" 表" t WHERE "ïd ""1""" = 2;
DELETE FROM "Ünï ""cödé"" 表" WHERE "ïd ""1""" = 2;
SELECT is((pg_temp.ev(2, 'DELETE')).old_data, to_jsonb((SELECT r FROM before_del)) - 'çøl "y" neu',
          'DELETE: old_data is the whole row as to_jsonb() has it (minus the excluded column)');
SELECT throws_ok(format('SELECT audit.undo(%s)', (pg_temp.ev(2, 'DELETE')).id), '55000', NULL,
                 'undo() of the DELETE is refused: the excluded column was not recorded');

-- A type of an extension with a cast to json: to_jsonb() uses the cast
CREATE EXTENSION hstore;
CREATE DOMAIN hs_dom AS hstore;
CREATE TABLE "hs tbl" (id int PRIMARY KEY, h hstore, hd hs_dom, ha hstore[]);
SELECT audit.enable('"hs tbl"');
INSERT INTO "hs tbl" VALUES (1, 'a=>1, "b c"=>"x \"y\"", n=>NULL', 'k=>v', ARRAY['z=>9'::hstore]);
SELECT is(e.new_data, to_jsonb(t), 'hstore (cast to json), a domain over it and an array of it are recorded as to_jsonb() has them')
  FROM audit.event e, "hs tbl" t WHERE e.id > (SELECT id FROM mark) AND e.table_name = 'hs tbl' AND e.class = 'data';

-- A table without a key: the whole row is its record_id
CREATE TABLE "nö kéy" ("a b" int[], "c""d" jsonb, e numeric);
SELECT audit.enable('"nö kéy"');
INSERT INTO "nö kéy" VALUES ('{{1,2},{3,4}}', '{"x": [null]}', 'NaN'), ('{}', '{}', 1);
SELECT is(e.record_id, to_jsonb(t), 'a keyless table: record_id is the whole row')
  FROM audit.event e, "nö kéy" t
 WHERE e.id > (SELECT id FROM mark) AND e.table_name = 'nö kéy' AND e.class = 'data'
   AND e.new_data ->> 'e' = 'NaN' AND t.e = 'NaN';
DELETE FROM "nö kéy" WHERE e = 'NaN';
SELECT matches(audit.undo((SELECT max(id) FROM audit.event WHERE table_name = 'nö kéy' AND action = 'DELETE')),
               '^undid DELETE event', 'undo() of a DELETE on a keyless table with arrays, jsonb and NaN');
SELECT is((SELECT array_agg(to_jsonb(t) ORDER BY e) FROM "nö kéy" t),
          ARRAY['{"e": 1, "a b": [], "c\"d": {}}', '{"e": "NaN", "a b": [[1, 2], [3, 4]], "c\"d": {"x": [null]}}']::jsonb[],
          'the row is back, values exact');

SELECT is((SELECT verified::text || '|' || breaks FROM audit.verify()), 'true|0', 'audit.verify(): every chain intact');

SELECT * FROM finish();
ROLLBACK;
