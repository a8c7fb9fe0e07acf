"""`reconcile demo`: its orchestration (the rows, servers and schema it uses are in testing/)."""
