-- reconcile's own state: every run, and every event it sent to Lago (the audit trail).
-- Applied by `reconcile migrate` (idempotent: safe to run again); `--print-sql` shows it.
-- {schema} is the state schema, litellm_reconcile unless --state-schema says otherwise;
-- `reconcile migrate` creates it first if it is missing.

-- One row per `reconcile run` or `reconcile backfill`, written when it starts, completed when
-- it ends. The last succeeded run of a (source, event_code, charge_by) is where the next
-- nightly window starts.
CREATE TABLE IF NOT EXISTS {schema}.runs (
    id            bigserial   PRIMARY KEY,
    mode          text        NOT NULL CHECK (mode IN ('run', 'backfill')),
    source        text        NOT NULL,  -- the spend-log database, without its password
    event_code    text        NOT NULL,
    charge_by     text        NOT NULL,
    window_since  timestamptz NOT NULL,  -- [since, until) on "startTime"
    window_until  timestamptz NOT NULL,
    settings      jsonb       NOT NULL,  -- skew, max delay, dry run, limits, Lago URL, version
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    status        text        NOT NULL DEFAULT 'running'
                  CHECK (status IN ('running', 'succeeded', 'incomplete', 'failed')),
    counts        jsonb,                 -- rows and spend per class, matches, missing, sent
    error         text
);
CREATE INDEX IF NOT EXISTS runs_last_success
    ON {schema}.runs (source, event_code, charge_by, window_until DESC)
    WHERE status = 'succeeded';

-- One row per event reconcile sent (or was about to send: 'sending' is written first, so an
-- interrupted run leaves a trace the next run confirms against what Lago holds).
CREATE TABLE IF NOT EXISTS {schema}.sent_events (
    transaction_id           text        NOT NULL,
    external_subscription_id text        NOT NULL,
    event_code               text        NOT NULL,
    request_id               text        NOT NULL,  -- "LiteLLM_SpendLogs".request_id
    event_timestamp          timestamptz NOT NULL,  -- the event's timestamp: "endTime"
    response_cost            numeric     NOT NULL,  -- USD, every digit LiteLLM stored
    run_id                   bigint      NOT NULL REFERENCES {schema}.runs (id),
    status                   text        NOT NULL
                             CHECK (status IN ('sending', 'sent', 'already_in_lago')),
    recorded_at              timestamptz NOT NULL DEFAULT now(),
    sent_at                  timestamptz,
    PRIMARY KEY (transaction_id, external_subscription_id)
);
CREATE INDEX IF NOT EXISTS sent_events_run ON {schema}.sent_events (run_id);
CREATE INDEX IF NOT EXISTS sent_events_time ON {schema}.sent_events (event_timestamp);
