-- LiteLLM's daily rollup and the spend logs summed the same way, for `reconcile report`'s
-- cross-check: one query per "-- name:" block; all read, none write. {rollup}, {rollup_id}
-- and {charge_by} are the daily rollup table, its id column and the spend-log column of the
-- charge-by mode:
--   end_user_id: "LiteLLM_DailyEndUserSpend".end_user_id   "LiteLLM_SpendLogs".end_user
--   user_id:     "LiteLLM_DailyUserSpend".user_id          "LiteLLM_SpendLogs"."user"
--   team_id:     "LiteLLM_DailyTeamSpend".team_id          "LiteLLM_SpendLogs".team_id

-- name: rollup_exists
-- Whether the rollup table is there, and whether this role may read it (sql/readonly_role.sql
-- grants only the spend logs).
SELECT to_regclass(%(table)s) IS NOT NULL,
       coalesce(has_table_privilege(to_regclass(%(table)s), 'SELECT'), false)

-- name: rollup_by_day
-- LiteLLM's daily rollup per id and UTC date (its `date` is 'YYYY-MM-DD' text), every api key
-- and model summed. Spend as exact decimals of the stored doubles.
SELECT {rollup_id} AS customer,
       date,
       sum(api_requests)::bigint AS requests,
       sum(spend::text::numeric) AS spend
FROM {rollup}
WHERE date >= %(first)s
  AND date <= %(last)s
  AND {rollup_id} <> ''
GROUP BY 1, 2

-- name: spend_logs_by_day
-- The same per id and UTC date from the per-request rows, every status included (the rollup
-- counts failures too). NaN and infinite costs are left out of the sum, as everywhere (in
-- Postgres NaN = NaN is true: name it).
SELECT {charge_by} AS customer,
       to_char("startTime", 'YYYY-MM-DD') AS date,
       count(*) AS requests,
       coalesce(sum(spend::text::numeric) FILTER (
           WHERE spend NOT IN ('NaN', 'Infinity', '-Infinity')
       ), 0) AS spend
FROM "LiteLLM_SpendLogs"
WHERE "startTime" >= %(since)s
  AND "startTime" < %(until)s
  AND {charge_by} <> ''
GROUP BY 1, 2
