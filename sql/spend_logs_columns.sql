-- The columns of the "LiteLLM_SpendLogs" table the search_path resolves to (no rows: no table).
-- Works for a plain table and for a partitioned one.
SELECT attribute.attname
FROM pg_catalog.pg_attribute AS attribute
WHERE attribute.attrelid = to_regclass('"LiteLLM_SpendLogs"')
  AND attribute.attnum > 0
  AND NOT attribute.attisdropped
