#!/usr/bin/env bash
# Audit a drop folder every night: a dated report folder, failures mailed (or logged when there is no `mail`).
#
# Settings come from the environment (crontab.example shows them); iqa's own options can also come from
# an iqa.toml in $REPORT_ROOT or IQA_* variables (see docs/configuration.md).
#   DROP_DIR      folder to audit (required)
#   REPORT_ROOT   where the dated report folders go           [default: /var/lib/iqa/reports]
#   MAIL_TO       who gets the failure mail                    [default: none: log only]
#   FAIL_ON       bad, degraded or review                      [default: bad]
#   KEEP_DAYS     delete report folders older than this        [default: keep everything]
#   IQA           the iqa executable                           [default: iqa on PATH]
set -euo pipefail

DROP_DIR=${DROP_DIR:?set DROP_DIR to the folder to audit}
REPORT_ROOT=${REPORT_ROOT:-/var/lib/iqa/reports}
MAIL_TO=${MAIL_TO:-}
FAIL_ON=${FAIL_ON:-bad}
KEEP_DAYS=${KEEP_DAYS:-}
IQA=${IQA:-iqa}

day=$(date +%Y-%m-%d)
out="$REPORT_ROOT/$day"
mkdir -p "$out"
log="$out/iqa.log"          # iqa's own log (--log-file)
notes="$out/nightly.log"    # this script's lines

# Say it where cron's MAILTO and syslog will see it.
note() {
    printf '%s iqa-nightly: %s\n' "$(date '+%F %T')" "$*" >>"$notes"
    if command -v logger >/dev/null 2>&1; then
        logger -t iqa-nightly -- "$*" || true
    fi
}

# One run at a time: a night with a huge drop must not overlap the next one.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$REPORT_ROOT/.iqa-nightly.lock"
    if ! flock -n 9; then
        note "previous run still going; skipping $day"
        exit 0
    fi
fi

# --quiet: nothing on the terminal unless something fails; the summary goes to a file for the record.
status=0
"$IQA" audit "$DROP_DIR" --out "$out" --format parquet,csv --quiet --json \
    --fail-on "$FAIL_ON" --log-file "$log" >"$out/summary.json" || status=$?

case $status in
    0)
        note "ok: $DROP_DIR, reports in $out"
        ;;
    3)
        subject="iqa: images in $DROP_DIR met --fail-on $FAIL_ON ($day)"
        body="$out/failures.txt"
        {
            echo "$subject"
            echo "reports: $out"
            echo
            # The CSV report lists every image; keep the ones that are not ok.
            python3 - "$out/report.csv" <<'PY'
import csv, sys
with open(sys.argv[1], newline="", encoding="utf-8") as f:
    for row in csv.DictReader(f):
        if row["status"] != "ok" or row["verdict"] != "ok" or row["needs_review"] == "True":
            print(f"{row['verdict'] or row['status']:9} {row['answer'] or row['error_code']:28} {row['path']}")
PY
        } >"$body"
        if [[ -n $MAIL_TO ]] && command -v mail >/dev/null 2>&1; then
            mail -s "$subject" "$MAIL_TO" <"$body"
            note "failures mailed to $MAIL_TO: $body"
        else
            note "failures listed in $body"
            cat "$body" >&2
        fi
        ;;
    130)
        note "interrupted; partial reports in $out"
        ;;
    *)
        # 1: runtime failure, 2: usage error (bad option, iqa.toml or IQA_* variable); the log says which.
        note "iqa failed with exit code $status; see $log"
        ;;
esac

if [[ -n $KEEP_DAYS ]]; then
    find "$REPORT_ROOT" -mindepth 1 -maxdepth 1 -type d -name '20??-??-??' -mtime +"$KEEP_DAYS" \
        -exec rm -rf -- {} +
fi

# Cron mails non-zero exits to MAILTO: flagged images are news (3), and so is a broken run.
exit "$status"
