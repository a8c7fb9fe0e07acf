-- A run stopped by SIGINT or SIGTERM (or left without an answer at its prompt) ends
-- 'interrupted': it stopped between two batches, recorded what it sent, and removed the
-- 'sending' rows of the events it never sent. Like 'failed', it covers nothing: the next run
-- sends the rest.
ALTER TABLE {schema}.runs DROP CONSTRAINT IF EXISTS runs_status_check;
ALTER TABLE {schema}.runs ADD CONSTRAINT runs_status_check
    CHECK (status IN ('running', 'succeeded', 'incomplete', 'failed', 'interrupted'));
