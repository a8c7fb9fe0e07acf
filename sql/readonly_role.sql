-- A role that can do everything `reconcile` needs on the LiteLLM database, and nothing else:
-- reconcile only ever reads "LiteLLM_SpendLogs", inside READ ONLY transactions.
--
-- Run as the owner of the LiteLLM schema, then set DATABASE_URL to
--   postgresql://reconcile_reader:<password>@<host>:5432/<litellm database>
-- Replace <password>; add ?schema=<name> to the URL if LiteLLM does not use "public".
CREATE ROLE reconcile_reader LOGIN PASSWORD '<password>';
GRANT USAGE ON SCHEMA public TO reconcile_reader;
GRANT SELECT ON "LiteLLM_SpendLogs" TO reconcile_reader;
-- `reconcile report` also compares LiteLLM's daily rollups with the spend logs; without these
-- grants it says so in a note and skips that cross-check (older proxies have no such tables):
--   GRANT SELECT ON "LiteLLM_DailyEndUserSpend", "LiteLLM_DailyUserSpend",
--                   "LiteLLM_DailyTeamSpend" TO reconcile_reader;
-- A window is read by one statement; long windows may need more than a strict default:
-- ALTER ROLE reconcile_reader SET statement_timeout = '15min';

-- reconcile's ledger (its own tables: every run and every event it sent) is written, so the
-- above does not cover it. Either keep it in another database (RECONCILE_STATE_DATABASE_URL),
-- or give the role a schema of its own in this one, then run `reconcile migrate` as the role:
--   CREATE SCHEMA litellm_reconcile AUTHORIZATION reconcile_reader;
-- (or have a DBA apply `reconcile migrate --print-sql`, then grant the role USAGE on the schema,
-- SELECT, INSERT, UPDATE, DELETE on its tables (a stopped run deletes what it never sent) and
-- USAGE on its sequences). A role that only makes reports
-- needs USAGE and SELECT there, to show what reconcile backfilled.
