"""The Postgres edge on the LiteLLM side: reading `"LiteLLM_SpendLogs"`."""
