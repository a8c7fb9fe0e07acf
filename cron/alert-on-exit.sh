#!/bin/sh
# alert-on-exit: run a command and turn its exit code (reconcile's contract) into one line on
# stdout. cron mails a job's stdout to MAILTO, so: no mail on success, one mail per problem.
# The command's own stderr (reconcile's summary) goes wherever the caller sends it: the log.
#
#   install -o root -m 0755 cron/alert-on-exit.sh /opt/reconcile/bin/alert-on-exit
#   usage: alert-on-exit COMMAND [ARG...]      (exits with the command's own code)
#
# Exit codes 1, 4 and 5 are fine once and worth an alert when they repeat, so the last code and
# how many runs in a row ended with it are kept in $RECONCILE_ALERT_STATE.
state=${RECONCILE_ALERT_STATE:-/var/lib/reconcile/last-exit}
log=${RECONCILE_LOG:-the log}

echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) start: $*" >&2
"$@"
rc=$?
echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) exit $rc" >&2

prev=0 count=0
[ -r "$state" ] && read -r prev count <"$state"
case $count in '' | *[!0-9]*) count=0 ;; esac
if [ "$rc" = "$prev" ]; then count=$((count + 1)); else count=1; fi
printf '%s %s\n' "$rc" "$count" >"$state" || echo "reconcile: cannot write $state (exit codes 1, 4 and 5 will alert every time)"

case $rc in
0) ;;
1) if [ "$count" -ge 2 ]; then
       echo "ALERT reconcile run failed $count runs in a row (exit 1: database or Lago error). See $log."
   else
       echo "WARNING reconcile run failed (exit 1: database or Lago error). Safe to rerun; the next run catches up. See $log."
   fi ;;
2) echo "ALERT reconcile run: a setting is wrong (exit 2). The last lines of $log name it and the fix." ;;
3) echo "ACTION reconcile run: missing events remain unsent (exit 3: dry run or --max-events reached). Run again or raise the limit. See $log." ;;
4) if [ "$count" -ge 2 ]; then
       echo "ALERT reconcile run found another run holding the lock $count times in a row (exit 4): a stuck run? See $log."
   fi ;;  # once: the previous run was still going; stay quiet
5) if [ "$count" -ge 2 ]; then
       echo "ALERT reconcile run was interrupted $count runs in a row (exit 5: SIGTERM or SIGINT): is something stopping it every time (a deploy, a too short timeout)? See $log."
   else
       echo "WARNING reconcile run was interrupted (exit 5: SIGTERM or SIGINT, e.g. a shutdown); what it sent is recorded and the next run sends the rest. See $log."
   fi ;;
130 | 143) echo "WARNING reconcile run was stopped at once by a second signal (exit $rc); the next run confirms what was under way and sends the rest. See $log." ;;
*) echo "ALERT reconcile run ended with unexpected exit $rc (killed, not installed, flock failed?). See $log." ;;
esac
exit "$rc"
