-- A small trail for the reports (test/e2e/reports.sh, scripts/report-images.sh):
-- two audited tables, one with a hostile schema and table name, changes by
-- several actors (one of them hostile: <script>, quotes, ampersands), reads,
-- an export (COPY TO), grants and role changes, a retention change.  Run as a
-- superuser in the database named by audit_ext.database (security and read
-- events are written there).  Failed logins and refused statements are made
-- by the caller (they need other sessions).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE ROLE rep_alice LOGIN;
CREATE ROLE rep_bob LOGIN;
CREATE SCHEMA "sales&<i>";
CREATE TABLE "sales&<i>"."Orders<script>" (id int PRIMARY KEY, customer text, amount numeric, note text);
CREATE TABLE public.customers (id int PRIMARY KEY, name text, email text);
SELECT audit.enable('"sales&<i>"."Orders<script>"', log_reads => true);
SELECT audit.enable('public.customers', log_reads => true);
GRANT USAGE ON SCHEMA "sales&<i>" TO rep_alice;
GRANT SELECT, INSERT, UPDATE ON "sales&<i>"."Orders<script>", public.customers TO rep_alice;

SET audit_ext.actor = '<script>alert("x")</script> & ''co''';
INSERT INTO "sales&<i>"."Orders<script>"
SELECT g, 'customer ' || g, g * 10, CASE WHEN g = 1 THEN '<img src=x onerror="alert(1)"> & "quoted"' END
  FROM generate_series(1, 12) g;
UPDATE "sales&<i>"."Orders<script>" SET amount = amount + 1, note = '<b onmouseover="alert(2)">bold</b>' WHERE id <= 3;
DELETE FROM "sales&<i>"."Orders<script>" WHERE id = 12;
SET audit_ext.actor = 'alice@example.com';
INSERT INTO public.customers SELECT g, 'name ' || g, 'c' || g || '@example.com' FROM generate_series(1, 1500) g;
UPDATE public.customers SET email = 'new-' || email WHERE id <= 5;
SELECT count(*) FROM public.customers WHERE id < 10;
SELECT * FROM public.customers \g /dev/null
COPY public.customers TO STDOUT \g /dev/null
SET audit_ext.actor = 'bob@example.com';
SELECT * FROM "sales&<i>"."Orders<script>" WHERE id = 1 \g /dev/null
DELETE FROM public.customers WHERE id > 1490;
RESET audit_ext.actor;
CREATE ROLE rep_auditor LOGIN IN ROLE audit_reader;
GRANT rep_alice TO rep_bob;
ALTER ROLE rep_bob CONNECTION LIMIT 5;
SELECT audit.set_retention('read', interval '2 years');
