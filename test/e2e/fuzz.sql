-- Fuzzing harness for test/e2e/fuzz.sh (run as superuser in the fuzz
-- database).  Builds, from the catalog, calls of every function of schema
-- audit that PUBLIC or audit_admin may execute, with NULLs, empty and huge
-- values, wrong types, quoted and unicode names, missing objects and
-- injection attempts, and a driver that runs them as a given role and keeps
-- each call's outcome (SQLSTATE and message) in fuzz.result.
SET client_min_messages = warning;
CREATE SCHEMA fuzz;
GRANT USAGE ON SCHEMA fuzz TO PUBLIC;

-- 1 MB values, referenced by the calls rather than spelled out in them
CREATE TABLE fuzz.big AS
SELECT repeat('x', 1024 * 1024) AS t,
       repeat('Ü表', 512 * 1024) AS u,
       jsonb_build_object('id', repeat('9', 1000), 'v', repeat('y', 1024 * 1024)) AS j,
       decode(repeat('00', 1024 * 1024), 'hex') AS b;
GRANT SELECT ON fuzz.big TO PUBLIC;

-- Values per argument type.  sane: used for the other arguments while one
-- argument is fuzzed (the first sane value of a type).  Untyped literals
-- ('abc' for a bigint) are implicit casts that fail at the call site.
CREATE TABLE fuzz.value (typ regtype NOT NULL, expr text NOT NULL, sane boolean NOT NULL DEFAULT false, ord serial);
INSERT INTO fuzz.value (typ, expr, sane) VALUES
    ('text', $$'t'::text$$, true),
    ('text', $$''::text$$, false),
    ('text', $$' '::text$$, false),
    ('text', $$(SELECT t FROM fuzz.big)$$, false),
    ('text', $$(SELECT u FROM fuzz.big)$$, false),
    ('text', $$'Ünï "cödé" 表'::text$$, false),
    ('text', $$'"Ünï ""cödé"" 表"'::text$$, false),
    ('text', $$'x''); DROP TABLE fuzz.value; --'::text$$, false),
    ('text', $$'public'::text$$, false),
    ('text', $$'fz'::text$$, false),
    ('text', $$'no_such_thing'::text$$, false),
    ('text', $$E'back\\slash %_ \n line'::text$$, false),
    ('text', $$'INSERT'::text$$, false),
    ('text', $$'data'::text$$, false),
    ('text', $$'SELECT 1'::text$$, false),
    ('text[]', $$'{}'::text[]$$, true),
    ('text[]', $$ARRAY['v']::text[]$$, false),
    ('text[]', $$'{NULL}'::text[]$$, false),
    ('text[]', $$'{""}'::text[]$$, false),
    ('text[]', $$ARRAY['no_such_column']$$, false),
    ('text[]', $$ARRAY['id']$$, false),
    ('text[]', $$ARRAY['v', 'v']$$, false),
    ('text[]', $$ARRAY[(SELECT t FROM fuzz.big)]$$, false),
    ('text[]', $$ARRAY['çøl "x"', 'x''); DROP TABLE fuzz.value; --']$$, false),
    ('text[]', $$'{{v,w},{x,y}}'::text[]$$, false),
    ('text[]', $$'[5:6]={v,w}'::text[]$$, false),
    ('text[]', $$'not an array'$$, false),
    ('regclass', $$'public.fz'::regclass$$, true),
    ('regclass', $$'public."Ünï ""cödé"" 表"'::regclass$$, false),
    ('regclass', $$'public."x''); DROP TABLE fz; --"'::regclass$$, false),
    ('regclass', $$'fz_part'::regclass$$, false),
    ('regclass', $$'fz_part_1'::regclass$$, false),
    ('regclass', $$'fz_view'::regclass$$, false),
    ('regclass', $$'fz_seq'::regclass$$, false),
    ('regclass', $$'fz_pkey'::regclass$$, false),
    ('regclass', $$'audit.event'::regclass$$, false),
    ('regclass', $$'audit.statement'::regclass$$, false),
    ('regclass', $$'pg_catalog.pg_class'::regclass$$, false),
    ('regclass', $$0::oid::regclass$$, false),
    ('regclass', $$4294967295::oid::regclass$$, false),
    ('regclass', $$'no_such_table'$$, false),
    ('integer', $$2::integer$$, true),
    ('integer', $$0::integer$$, false),
    ('integer', $$(-1)::integer$$, false),
    ('integer', $$2147483647::integer$$, false),
    ('integer', $$(-2147483648)::integer$$, false),
    ('integer', $$'abc'$$, false),
    ('integer', $$'1e30'$$, false),
    ('bigint', $$1::bigint$$, true),
    ('bigint', $$0::bigint$$, false),
    ('bigint', $$(-1)::bigint$$, false),
    ('bigint', $$9223372036854775807::bigint$$, false),
    ('bigint', $$(-9223372036854775808)::bigint$$, false),
    ('bigint', $$(SELECT max(id) FROM audit.event WHERE class = 'data')$$, false),
    ('bigint', $$'abc'$$, false),
    ('boolean', $$false$$, true),
    ('boolean', $$true$$, false),
    ('boolean', $$'maybe'$$, false),
    ('timestamptz', $$now() - interval '1 day'$$, true),
    ('timestamptz', $$'infinity'::timestamptz$$, false),
    ('timestamptz', $$'-infinity'::timestamptz$$, false),
    ('timestamptz', $$'4713-01-01 BC'::timestamptz$$, false),
    ('timestamptz', $$'294276-12-31'::timestamptz$$, false),
    ('timestamptz', $$'not a time'$$, false),
    ('jsonb', $$'{"id": 1}'::jsonb$$, true),
    ('jsonb', $$'{}'::jsonb$$, false),
    ('jsonb', $$'[]'::jsonb$$, false),
    ('jsonb', $$'null'::jsonb$$, false),
    ('jsonb', $$'"x"'::jsonb$$, false),
    ('jsonb', $$'1'::jsonb$$, false),
    ('jsonb', $$'{"id": "abc"}'::jsonb$$, false),
    ('jsonb', $$'{"id": null}'::jsonb$$, false),
    ('jsonb', $$'{"id": 1e400}'::jsonb$$, false),
    ('jsonb', $$'{"id": [1, {"x": 2}]}'::jsonb$$, false),
    ('jsonb', $$'{"id": 1, "other": 2}'::jsonb$$, false),
    ('jsonb', $$'{"k 1": 1, "k 2": "Ünï"}'::jsonb$$, false),
    ('jsonb', $$'{"çøl \"x\"": "x''); DROP TABLE fuzz.value; --"}'::jsonb$$, false),
    ('jsonb', $$(SELECT j FROM fuzz.big)$$, false),
    ('jsonb', $$'{not json'$$, false),
    ('bytea', $$'\x00'::bytea$$, true),
    ('bytea', $$'\x'::bytea$$, false),
    ('bytea', $$decode(repeat('00', 32), 'hex')$$, false),
    ('bytea', $$(SELECT b FROM fuzz.big)$$, false),
    ('bytea', $$'\xzz'$$, false),
    ('oid', $$0::oid$$, true),
    ('oid', $$'fz'::regclass::oid$$, false),
    ('oid', $$4294967295::oid$$, false),
    ('tid', $$'(0,1)'::tid$$, true),
    ('tid', $$'(4294967295,65535)'::tid$$, false),
    ('tid', $$'(-1,0)'$$, false),
    ('audit.event', $$(SELECT e FROM audit.event e ORDER BY e.id LIMIT 1)$$, true),
    ('audit.event', $$ROW(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 1, 1, NULL)::audit.event$$, false),
    ('audit.event', $$'not a row'$$, false);

-- The functions under test: schema audit, executable by PUBLIC or
-- audit_admin, callable from SQL (trigger functions cannot be).
CREATE VIEW fuzz.target AS
SELECT p.oid::regprocedure AS fn, p.oid, p.proname, p.prokind,
       ARRAY(SELECT unnest(p.proargtypes::oid[])) AS argtypes   -- from 1, not 0
  FROM pg_proc p
 WHERE p.pronamespace = 'audit'::regnamespace
   AND p.prokind IN ('f', 'p')
   AND p.prorettype NOT IN ('trigger'::regtype, 'event_trigger'::regtype)
   AND (has_function_privilege('public', p.oid, 'EXECUTE')
        OR has_function_privilege('audit_admin', p.oid, 'EXECUTE'));

-- Outcomes that are allowed although they look like a bug, and why.
CREATE TABLE fuzz.allow (proname name, sqlstate text, reason text);
INSERT INTO fuzz.allow VALUES
    ('undo_change_row', '42601', 'executes the SQL text it is given (internal to audit.undo, granted to audit_admin, runs as the caller)'),
    ('undo_change_row', '22004', 'executes the SQL text it is given: NULL is "query string argument of EXECUTE is null"');

CREATE TABLE fuzz.call (n serial PRIMARY KEY, fn regprocedure NOT NULL, sql text NOT NULL);
CREATE TABLE fuzz.result (n integer, role text, sqlstate text, message text);

-- The calls: all NULLs; each argument in turn with every value of its type
-- (the others sane); and seeded random combinations.
CREATE FUNCTION fuzz.make_calls(combos integer) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    f      record;
    i      integer;
    v      record;
    args   text[];
    sane   text[];
    n      integer := 0;
    stmt   text;
BEGIN
    PERFORM setseed(0.4242);
    FOR f IN SELECT * FROM fuzz.target ORDER BY fn::text LOOP
        sane := ARRAY(SELECT coalesce((SELECT x.expr FROM fuzz.value x WHERE x.typ = t.typ AND x.sane ORDER BY x.ord LIMIT 1),
                                      format('NULL::%s', t.typ::regtype))
                        FROM unnest(f.argtypes) WITH ORDINALITY t(typ, o) ORDER BY t.o);
        -- a parameter that takes one of a few words (audit.enable's capture,
        -- issue 22): its sane value is its default word, or every call that
        -- fuzzes another argument would fail on it
        FOR i IN 1 .. coalesce(array_length(f.argtypes, 1), 0) LOOP
            IF (SELECT p.proargnames[i] FROM pg_proc p WHERE p.oid = f.oid) = 'capture' THEN
                sane[i] := quote_literal('trigger');
            END IF;
        END LOOP;
        stmt := CASE WHEN f.prokind = 'p' THEN 'CALL %s(%s)'
                     ELSE 'SELECT count(*) FROM (SELECT * FROM %s(%s)) s' END;
        -- all NULL
        args := ARRAY(SELECT format('NULL::%s', t.typ::regtype) FROM unnest(f.argtypes) WITH ORDINALITY t(typ, o) ORDER BY t.o);
        INSERT INTO fuzz.call (fn, sql) VALUES (f.fn, format(stmt, f.oid::regproc, array_to_string(args, ', ')));
        -- one argument at a time
        FOR i IN 1 .. coalesce(array_length(f.argtypes, 1), 0) LOOP
            FOR v IN SELECT x.expr FROM fuzz.value x WHERE x.typ = f.argtypes[i] ORDER BY x.ord LOOP
                args := sane;
                args[i] := v.expr;
                INSERT INTO fuzz.call (fn, sql) VALUES (f.fn, format(stmt, f.oid::regproc, array_to_string(args, ', ')));
            END LOOP;
            IF NOT EXISTS (SELECT 1 FROM fuzz.value x WHERE x.typ = f.argtypes[i]) THEN
                args := sane;
                args[i] := quote_literal('x''); DROP TABLE fuzz.value; --');
                INSERT INTO fuzz.call (fn, sql) VALUES (f.fn, format(stmt, f.oid::regproc, array_to_string(args, ', ')));
            END IF;
        END LOOP;
        -- random combinations (deterministic: seeded)
        FOR i IN 1 .. CASE WHEN coalesce(array_length(f.argtypes, 1), 0) > 1 THEN combos ELSE 0 END LOOP
            args := ARRAY(SELECT coalesce((SELECT x.expr FROM fuzz.value x WHERE x.typ = t.typ
                                            ORDER BY random() LIMIT 1), format('NULL::%s', t.typ::regtype))
                            FROM unnest(f.argtypes) WITH ORDINALITY t(typ, o) ORDER BY t.o);
            INSERT INTO fuzz.call (fn, sql) VALUES (f.fn, format(stmt, f.oid::regproc, array_to_string(args, ', ')));
        END LOOP;
    END LOOP;
    SELECT count(*) INTO n FROM fuzz.call;
    RETURN n;
END $$;

-- Run the calls of one function as one role; every call in its own
-- subtransaction, its outcome kept.
CREATE PROCEDURE fuzz.run(p_fn regprocedure, p_role text) LANGUAGE plpgsql AS $$
DECLARE
    c      record;
    st     text;
    msg    text;
    states text[] := '{}';
    msgs   text[] := '{}';
    ns     integer[] := '{}';
BEGIN
    FOR c IN SELECT * FROM fuzz.call WHERE fn = p_fn ORDER BY n LOOP
        BEGIN
            IF p_role IS NOT NULL THEN
                EXECUTE format('SET LOCAL ROLE %I', p_role);
            END IF;
            EXECUTE c.sql;
            RESET ROLE;
            st := '00000';
            msg := NULL;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
        END;
        RESET ROLE;
        ns := ns || c.n;
        states := states || st;
        msgs := msgs || left(msg, 300);
    END LOOP;
    INSERT INTO fuzz.result SELECT u.n, coalesce(p_role, 'superuser'), u.s, u.m FROM unnest(ns, states, msgs) u(n, s, m);
    COMMIT;
END $$;
