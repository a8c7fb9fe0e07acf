"""The --help epilogs the commands share: exit codes, and how durations are written."""

EXIT_CODES_HELP = """\
\b
Exit codes:
  0  done
  1  error (the database or Lago failed); nothing half-done is left behind
  2  usage or configuration error; the message names the setting and the fix
  5  interrupted (SIGINT or SIGTERM): stopped where it was, temporary files
     removed, nothing half-written left
"""


EMULATOR_EXIT_CODES_HELP = """\
\b
Exit codes:
  0  stopped by Ctrl-C or SIGTERM, its normal end
  1  error (an unexpected one; --debug shows where)
  2  usage error, or --host/--port cannot be listened on (the port is taken,
     the address is not this machine's); the message names the option and the fix
"""


EXIT_CODES_RUN_HELP = """\
\b
Exit codes:
  0  every billable row of the window is in Lago (unexplained events are
     reported, not an error: `reconcile report --check` alerts on them)
  1  error (the database or Lago failed); safe to run again
  2  usage or configuration error; the message names the setting and the fix
  3  missing events remain unsent (a dry run, --max-events, a no at the prompt,
     or, for backfill, rows held back as too recent)
  4  another run is under way for this database, event code and charge-by
  5  interrupted (SIGINT, SIGTERM, or end of input at the prompt): stopped
     between two batches, what was sent recorded, the run `interrupted`; run it
     again to send the rest (a second signal exits at once, 130 or 143)
"""


DURATION_HELP = """\
\b
DURATION: a number and a unit, s (the default), m, h or d: 90s, 20m, 6h, 1.5d.
"""


ALL_EXIT_CODES_HELP = """\
\b
Exit codes (each command's --help says which it uses):
  0  done
  1  error (the database or Lago failed); safe to run again
  2  usage or configuration error; the message names the setting and the fix
  3  run, backfill: missing events remain unsent (dry run, --max-events, held
     back as too recent by backfill); report --check: a line not ok or a rollup gap;
     migrate --check: the ledger is behind
  4  run, backfill: another run is under way for this database, code and charge-by
  5  interrupted (SIGINT, SIGTERM, no answer at the prompt); what was sent is
     recorded; a second signal exits at once with 130 or 143
"""

MIGRATE_EXIT_CODES_HELP = """\
\b
Exit codes:
  0  done (--check: the ledger is up to date)
  1  error (the database failed); nothing half-done is left behind
  2  usage or configuration error; the message names the setting and the fix
  3  --check: the ledger is behind (or missing): run `reconcile migrate`
  5  interrupted (SIGINT or SIGTERM): nothing applied (one transaction)
"""
