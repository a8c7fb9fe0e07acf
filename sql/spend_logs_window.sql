-- Every "LiteLLM_SpendLogs" row whose "startTime" falls in [since, until) and whose "endTime" is
-- not before ended_since (the distant past unless a long request is looked for), in "startTime"
-- order.
--
-- Read by reconcile/spendlogs/read.py inside one READ ONLY, REPEATABLE READ transaction and
-- streamed with COPY ... TO STDOUT (FORMAT csv). Placeholders filled by the reader:
--   %(since)s, %(until)s, %(ended_since)s
--                          bound values: naive UTC timestamps, like the columns they compare to
--   {charge_by}            the charge-by column: end_user, "user" or team_id
--   {status}, {litellm_call_id}, {created_at}, {custom_llm_provider}
--                          the column itself, or NULL on a table from a LiteLLM release that
--                          predates it (status: May 2025; created_at and litellm_call_id: Aug 2026)
-- "startTime" is indexed; the window never filters on an unindexed column.
SELECT
    request_id,
    -- The call id LiteLLM's callbacks see (kwargs["litellm_call_id"]); older rows keep it in metadata.
    COALESCE(NULLIF({litellm_call_id}, ''), NULLIF(metadata ->> 'litellm_call_id', '')) AS call_id,
    round(extract(epoch FROM "startTime") * 1000)::bigint AS start_ms,
    round(extract(epoch FROM "endTime") * 1000)::bigint AS end_ms,
    round(extract(epoch FROM {created_at}) * 1000)::bigint AS created_ms,
    -- LiteLLM bills a request when it succeeded; rows older than May 2025 have no status.
    ({status} IS NULL OR {status} = 'success') AS succeeded,
    -- LiteLLM writes a missing id as '' (sometimes NULL): both mean "no one to bill".
    NULLIF({charge_by}, '') AS charge_by_id,
    model,
    spend,
    prompt_tokens,
    completion_tokens,
    total_tokens,
    -- The provider route LiteLLM's callback strips from the model it reports (bedrock/...).
    {custom_llm_provider} AS custom_llm_provider
FROM "LiteLLM_SpendLogs"
WHERE "startTime" >= %(since)s
  AND "startTime" < %(until)s
  AND "endTime" >= %(ended_since)s
ORDER BY "startTime"
