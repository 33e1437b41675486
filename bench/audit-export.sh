#!/usr/bin/env bash
# Measures `attachgate audit export` over a large audit log: wall time and
# the exporting process's peak RSS (GNU time), for JSONL and CSV.
#   bench/audit-export.sh [EVENTS]     (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
command -v /usr/bin/time >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; }
make -s build
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf 'storage:\n  dir: %q\n' "$work/data" > "$work/attachgate.yaml"
go run ./bench/cmd/auditgen -storage "$work/data" -n "$n"
from=$(date -d '-31 days' +%F); to=$(date +%F)
for format in jsonl csv; do
  /usr/bin/time -f "$format: %e s wall, peak RSS %M KiB" \
    ./bin/attachgate audit export -config "$work/attachgate.yaml" -from "$from" -to "$to" -format "$format" \
    | wc -l | sed "s/^/$format: lines /"
done
