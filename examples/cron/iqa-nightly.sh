#!/usr/bin/env bash
# Audit a drop folder every night into one output folder, whose results store means only new and changed
# files are decoded, then keep a dated copy of the night's reports and mail the flagged files.
#
# Usage: iqa-nightly.sh [IQA AUDIT OPTION...]
# The options are passed to `iqa audit` after the script's own, so they win (e.g. --engine signal --workers 2);
# leave --out and --format to the script, which copies the reports from its own output folder.
#
# Settings come from the environment (crontab.example shows them):
#   DROP_DIR      folder to audit (required)
#   IQA           the iqa executable; cron's PATH is /usr/bin:/bin, so set it there [default: iqa on PATH]
#   REPORT_ROOT   where the output folder and the dated copies go  [default: /var/lib/iqa/reports]
#   MAIL_TO       who gets the list of flagged files               [default: none: printed, for cron's MAILTO]
#   FAIL_ON       bad, degraded or review                          [default: bad]
#   KEEP_DAYS     delete dated copies older than this many days    [default: keep everything]
#   RUN_DATE      the night's name, YYYY-MM-DD                     [default: today]
# iqa's own options can also come from IQA_* variables or the cron user's ~/.config/iqa/iqa.toml
# (docs/configuration.md).
#
# What $REPORT_ROOT holds:
#   latest/       every night's --out: iqa-store.sqlite (the results store) and the latest report.parquet/.csv
#   YYYY-MM-DD/   that night's copy of the reports, summary.json and iqa.log (one line per skipped file);
#                 errors.paths0 (files that could not be assessed) and, when some image met FAIL_ON,
#                 flagged.paths0 and flagged.txt (the mail); *.paths0 end each name with NUL, for xargs -0
#   nightly.log   a line per night from this script (also sent to syslog when `logger` is there)
#
# Exit codes: iqa audit's, passed on: 0 done; 3 some image met FAIL_ON; 4 no image found in DROP_DIR (the
# earlier reports are kept, no dated copy); 130 interrupted (the dated copy holds what finished); 1 runtime
# failure (a full disk, a locked output folder); 2 usage error (an option, iqa.toml or IQA_* variable). And
# the script's own: 2 a setting is missing or malformed (IQA not set and no iqa on PATH, say); 75 the
# previous night's run still holds the lock, so this night is skipped. Plain cron mails what a job prints,
# not its exit code, so every non-zero exit also prints a line on stderr; the code is for systemd timers,
# chronic or a monitoring check.
set -euo pipefail

say() { printf 'iqa-nightly: %s\n' "$*" >&2; }
die() {
    local code=$1
    shift
    say "$*"
    exit "$code"
}

[[ -n ${DROP_DIR:-} ]] || die 2 "set DROP_DIR to the folder to audit (see crontab.example)"
REPORT_ROOT=${REPORT_ROOT:-/var/lib/iqa/reports}
MAIL_TO=${MAIL_TO:-}
FAIL_ON=${FAIL_ON:-bad}
KEEP_DAYS=${KEEP_DAYS:-}
RUN_DATE=${RUN_DATE:-$(date +%Y-%m-%d)}

# cron runs jobs with PATH=/usr/bin:/bin, where pip rarely puts iqa: IQA says where it is.
if [[ -z ${IQA:-} ]]; then
    IQA=$(command -v iqa || true)
    [[ -n $IQA ]] || die 2 "iqa is not on PATH ($PATH); set IQA to the iqa executable in the crontab," \
        "e.g. IQA=/opt/iqa/venv/bin/iqa (see crontab.example)"
elif ! command -v -- "$IQA" >/dev/null; then
    die 2 "IQA=$IQA is not an executable; set IQA to the iqa executable, e.g. IQA=/opt/iqa/venv/bin/iqa"
fi

# The images that meet FAIL_ON, as `iqa report` filters them.
case $FAIL_ON in
    bad) flagged=(--verdict bad) ;;
    degraded) flagged=(--verdict degraded --verdict bad) ;;
    review) flagged=(--needs-review) ;;
    *) die 2 "FAIL_ON must be bad, degraded or review, not '$FAIL_ON'" ;;
esac
[[ $RUN_DATE =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$ ]] || die 2 "RUN_DATE must be a date like 2024-05-31, not '$RUN_DATE'"
[[ -z $KEEP_DAYS || $KEEP_DAYS =~ ^[0-9]+$ ]] || die 2 "KEEP_DAYS must be a number of days, not '$KEEP_DAYS'"

out="$REPORT_ROOT/latest" # the same --out every night: its results store replays unchanged files
night="$REPORT_ROOT/$RUN_DATE"
notes="$REPORT_ROOT/nightly.log"
mkdir -p -- "$out"

note() {
    printf '%s iqa-nightly: %s\n' "$(date '+%F %T')" "$*" >>"$notes"
    if command -v logger >/dev/null 2>&1; then
        logger -t iqa-nightly -- "$*" 2>/dev/null || true
    fi
}

# One run at a time: a night with a huge drop must not overlap the next one.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$REPORT_ROOT/.iqa-nightly.lock"
    if ! flock -n 9; then
        note "previous run still going; $RUN_DATE skipped"
        die 75 "a previous run still holds $REPORT_ROOT/.iqa-nightly.lock; $RUN_DATE skipped"
    fi
fi

# The night's files gather here and become $night only when complete.
stage=$(mktemp -d "$REPORT_ROOT/.$RUN_DATE.XXXXXX")
trap 'rm -rf -- "$stage"' EXIT

# --quiet: nothing on the terminal unless something fails; the summary goes to a file for the record.
status=0
"$IQA" audit --out "$out" --format parquet,csv --quiet --json --fail-on "$FAIL_ON" --log-file "$stage/iqa.log" \
    "$@" -- "$DROP_DIR" >"$stage/summary.json" || status=$?

# Lists of paths from the reports just written (`iqa report` reads them; it runs nothing).
listed() {
    local file=$1
    shift
    "$IQA" report "$out" "$@" --export "$file" --export0
}
count() { tr -cd '\0' <"$1" | wc -c | tr -d ' '; }

case $status in
    0 | 3 | 130)
        for report in "$out"/report.*; do
            if [[ -f $report ]]; then
                cp -p -- "$report" "$stage/"
            fi
        done
        if listed "$stage/errors.paths0" --errors >/dev/null; then
            errors=$(count "$stage/errors.paths0")
        else
            errors="?"
            say "iqa report could not list the files that were not assessed"
        fi
        if ((status == 3)); then
            subject="iqa: images in $DROP_DIR met --fail-on $FAIL_ON ($RUN_DATE)"
            {
                echo "$subject"
                echo "reports: $night (results store: $out)"
                echo
                # The filtered summary, then every flagged path, one per line (for people; flagged.paths0 is exact).
                if listed "$stage/flagged.paths0" "${flagged[@]}"; then
                    echo
                    echo "flagged files:"
                    tr '\0' '\n' <"$stage/flagged.paths0"
                else
                    echo "(iqa report could not list them: see the reports)"
                fi
            } >"$stage/flagged.txt"
        fi
        rm -rf -- "$night"
        mv -- "$stage" "$night"
        case $status in
            0) note "ok: $DROP_DIR, $errors not assessed; reports in $night" ;;
            130)
                note "interrupted; partial reports in $night"
                say "interrupted; the reports in $night hold what finished"
                ;;
            3)
                if [[ -n $MAIL_TO ]] && command -v mail >/dev/null 2>&1; then
                    mail -s "$subject" "$MAIL_TO" <"$night/flagged.txt"
                    note "flagged images mailed to $MAIL_TO: $night/flagged.txt ($errors not assessed)"
                else
                    note "flagged images listed in $night/flagged.txt ($errors not assessed)"
                    cat "$night/flagged.txt" >&2
                fi
                ;;
        esac
        ;;
    4)
        note "no image found in $DROP_DIR; the reports in $out are unchanged, no dated copy"
        say "no image found in $DROP_DIR; nothing assessed"
        ;;
    *)
        # 1: runtime failure, 2: usage error (an option, iqa.toml or IQA_* variable); iqa said which on stderr.
        if [[ -s $stage/iqa.log ]]; then
            cat -- "$stage/iqa.log" >>"$notes"
        fi
        note "iqa audit failed with exit code $status; its error went to stderr (cron's mail)"
        say "iqa audit failed with exit code $status"
        ;;
esac

if [[ -n $KEEP_DAYS ]]; then
    find "$REPORT_ROOT" -mindepth 1 -maxdepth 1 -type d -name '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]' \
        -mtime +"$KEEP_DAYS" -exec rm -rf -- {} +
fi

exit "$status"
