-- Runs name their spend-log database by what its server says it is (source_id), so that two
-- spellings of one URL share a history and a lock; `source` stays, as a label. A nightly run
-- records how far it covered the window in full (covered_until): the next one starts there.
ALTER TABLE {schema}.runs ADD COLUMN IF NOT EXISTS source_id text;
ALTER TABLE {schema}.runs ADD COLUMN IF NOT EXISTS covered_until timestamptz;
CREATE INDEX IF NOT EXISTS runs_coverage
    ON {schema}.runs (source_id, event_code, charge_by, covered_until DESC)
    WHERE mode = 'run' AND status = 'succeeded' AND covered_until IS NOT NULL;
-- Events an interrupted run left 'sending': looked for by every run, usually none.
CREATE INDEX IF NOT EXISTS sent_events_sending
    ON {schema}.sent_events (event_code) WHERE status = 'sending';
