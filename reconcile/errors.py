"""The errors reconcile raises on purpose, and the exit code each one means.

    ReconcileError              exit 1: the run failed; nothing half-done is left behind
    ├── ConfigError             exit 2: a setting or an argument is wrong; the message names it
    ├── SourceError             exit 1: the spend-log database could not be read
    │   └── SourceUnavailable   exit 1: the database did not answer (down, wrong host or port)
    ├── RunLocked               exit 4: another run of the same database, code and charge-by
    └── LagoError               exit 1: Lago failed a request
        ├── LagoUnavailable     exit 1: Lago kept failing (5xx, 429, refused, timeouts) past
        │                       its retry budget (--lago-retry-budget)
        └── LagoRejected        exit 1: Lago refused events; each transaction id and reason named

    Interrupted                 exit 5: SIGINT, SIGTERM or no answer at the prompt: stopped at
                                a batch boundary, the run recorded `interrupted`; run it again.
                                A BaseException, like KeyboardInterrupt: raised from a signal
                                handler, no `except Exception` (logging's own, a library's) may
                                swallow it and carry on.

A wrong Lago key (401, 403) or base URL (404) is a ConfigError, and so are a Lago host name
that does not resolve and a failed TLS handshake or certificate: no retry mends those.

Every message is one line that names the problem and the fix, and never carries a password
or an API key. The CLI prints it without a traceback unless `--debug` is given.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_UNSENT = 3
EXIT_LOCKED = 4
EXIT_INTERRUPTED = 5


class ReconcileError(Exception):
    """A failure reconcile explains itself; `exit_code` is what the CLI exits with."""

    exit_code = EXIT_ERROR


class ConfigError(ReconcileError):
    """A setting, option or argument is missing, malformed or points at the wrong thing."""

    exit_code = EXIT_CONFIG


class SourceError(ReconcileError):
    """The spend-log database refused or failed a read."""


class SourceUnavailable(SourceError):
    """The spend-log database could not be reached; retrying later may succeed."""


class RunLocked(ReconcileError):
    """Another run (another command, window or settings) is under way for this source."""

    exit_code = EXIT_LOCKED


class Interrupted(BaseException):
    """A signal (SIGINT, SIGTERM) or the end of input at the prompt stopped the run cleanly.

    Not a ReconcileError: it is raised inside whatever code runs when the signal comes, and
    `except Exception` there (logging.Handler.emit, for one) would otherwise swallow it.
    """

    exit_code = EXIT_INTERRUPTED


class LagoError(ReconcileError):
    """Lago failed or refused a request."""


class LagoUnavailable(LagoError):
    """Lago did not answer successfully within the retry budget; trying later may succeed."""


class LagoRejected(LagoError):
    """Lago refused events for reasons a retry will not change."""
