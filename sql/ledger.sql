-- The queries reconcile runs on its own state schema ({schema}: litellm_reconcile unless
-- --state-schema says otherwise), one per "-- name:" block. See sql/ledger/ for the tables.

-- name: schema_exists
SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = %(schema)s);

-- name: create_schema
-- Only when it is missing: CREATE SCHEMA IF NOT EXISTS needs the right to create schemas even
-- when the schema is there, and a role given its own schema by a DBA has no such right.
CREATE SCHEMA {schema};

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
    name       text        PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: applied_migrations
SELECT name FROM {schema}.schema_migrations;

-- name: record_migration
INSERT INTO {schema}.schema_migrations (name) VALUES (%(name)s);

-- name: migrate_lock
-- Concurrent `reconcile migrate`s take turns: a transaction lock (it holds through PgBouncer's
-- transaction pooling too), released when the migration transaction ends.
SELECT pg_advisory_xact_lock(%(key)s);

-- name: try_lock
-- One run at a time per (spend-log database, event code, charge-by): a session lock, held
-- by the run's connection until it ends, whatever way it ends.
SELECT pg_try_advisory_lock(%(key)s);

-- name: last_coverage
-- Where the nightly job's own full coverage ends: succeeded runs of mode `run` over every
-- customer, not dry runs (only those record covered_until). Runs from before migration 002
-- have no source_id: their URL label stands in for it.
SELECT max(coalesce(covered_until, window_until))
FROM {schema}.runs
WHERE mode = 'run' AND status = 'succeeded'
  AND event_code = %(code)s AND charge_by = %(charge_by)s
  AND (covered_until IS NOT NULL OR source_id IS NULL)
  AND (source_id = %(source_id)s OR (source_id IS NULL AND source = %(source)s))
  AND NOT coalesce((settings ->> 'dry_run')::boolean, false)
  AND coalesce(jsonb_array_length(settings -> 'customers'), 0) = 0;

-- name: first_attempt
-- Where the nightly job's earliest run began (whatever became of it): before the nightly job
-- has covered anything, it starts there, so a first run that failed is never skipped over.
SELECT min(window_since)
FROM {schema}.runs
WHERE mode = 'run'
  AND event_code = %(code)s AND charge_by = %(charge_by)s
  AND (source_id = %(source_id)s OR (source_id IS NULL AND source = %(source)s));

-- name: start_run
INSERT INTO {schema}.runs (mode, source, source_id, event_code, charge_by, window_since,
                           window_until, settings)
VALUES (%(mode)s, %(source)s, %(source_id)s, %(code)s, %(charge_by)s, %(since)s, %(until)s,
        %(settings)s)
RETURNING id;

-- name: finish_run
UPDATE {schema}.runs
SET finished_at = now(), status = %(status)s, counts = %(counts)s, error = %(error)s,
    covered_until = %(covered_until)s
WHERE id = %(run_id)s;

-- name: create_incoming
CREATE TEMPORARY TABLE incoming (LIKE {schema}.sent_events INCLUDING DEFAULTS) ON COMMIT DROP;

-- name: copy_incoming
COPY incoming (transaction_id, external_subscription_id, event_code, request_id,
               event_timestamp, response_cost, run_id, status)
FROM STDIN;

-- name: merge_incoming
-- An event already recorded keeps its row, unless it is still 'sending' (an interrupted
-- run): then this run takes it over.
INSERT INTO {schema}.sent_events
SELECT * FROM incoming
ON CONFLICT (transaction_id, external_subscription_id) DO UPDATE
SET run_id = excluded.run_id, recorded_at = now()
WHERE sent_events.status = 'sending';

-- name: set_status
UPDATE {schema}.sent_events
SET status = %(status)s, sent_at = now(), run_id = %(run_id)s
WHERE (transaction_id, external_subscription_id) IN (
    SELECT * FROM unnest(%(transaction_ids)s::text[], %(subscriptions)s::text[]));

-- name: forget_unsent
-- Events a run wrote 'sending' and then never sent (it was interrupted before their batch):
-- no trace to keep, the next run sends them.
DELETE FROM {schema}.sent_events
WHERE run_id = %(run_id)s AND status = 'sending'
  AND (transaction_id, external_subscription_id) IN (
      SELECT * FROM unnest(%(transaction_ids)s::text[], %(subscriptions)s::text[]));

-- name: sending
-- Events an interrupted run may or may not have sent: few, usually none.
SELECT transaction_id, external_subscription_id
FROM {schema}.sent_events
WHERE status = 'sending' AND event_code = %(code)s;

-- name: confirm_in_lago
UPDATE {schema}.sent_events
SET status = 'sent', sent_at = coalesce(sent_at, now())
WHERE status = 'sending'
  AND (transaction_id, external_subscription_id) IN (
      SELECT * FROM unnest(%(transaction_ids)s::text[], %(subscriptions)s::text[]));
