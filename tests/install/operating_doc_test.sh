#!/usr/bin/env bash
# Follows docs/operating.md literally: extracts every ```sh block that follows a
# `<!-- procedure -->` line, in order, and runs them as one bash script (set -euo pipefail) with
# the variables the document describes: BUILD (the build tree), PREFIX (a temporary install
# prefix) and WORK (an empty temporary folder). Every process the procedure starts in the
# background is stopped on exit (SIGTERM, then SIGKILL after 5 s); every wait in the document is
# bounded by `timeout`, and ctest bounds the whole run. Before that, every metric name the document
# cites (bud_ip_*, bud_broker_*, bud_registry_*) must occur in the code.
#
#   tests/install/operating_doc_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
BUILD=$(cd "$1" && pwd); src=$(cd "$2" && pwd)
doc=$src/docs/operating.md

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bud-operating-XXXXXX")
WORK=$tmp/work; PREFIX=$tmp/prefix
mkdir -p "$WORK"
export BUILD PREFIX WORK

awk '/^<!-- procedure -->$/ { armed = 1; next }
     armed && /^```sh$/ { inside = 1; armed = 0; n++; print "# --- procedure block " n; next }
     inside && /^```$/ { inside = 0; next }
     inside { print }
     { armed = 0 }' "$doc" > "$tmp/procedure.sh"
blocks=$(grep -c '^# --- procedure block' "$tmp/procedure.sh" || true)
[ "$blocks" -ge 10 ] || { echo "FAIL: found only $blocks procedure blocks in $doc" >&2; exit 1; }

# Every metric (and other bud_* name) the document cites is in the code, as a whole word: a metric
# renamed in the code and not in the document fails here.
missing=""
for name in $(grep -o 'bud_\(ip\|broker\|registry\)_[a-z0-9_]*[a-z0-9]' "$doc" | sort -u); do
  grep -rqwF --include='*.cc' --include='*.h' "$name" "$src/common" "$src/broker" \
    "$src/integration-point" "$src/address-registry" || missing="$missing $name"
done
[ -z "$missing" ] || { echo "FAIL: $doc names what the code does not have:$missing" >&2; exit 1; }
echo "== every bud_* name in docs/operating.md is in the code"
echo "== running $blocks procedure blocks from docs/operating.md (trace in $tmp/trace.log)"

stop_all() {
  local pids
  pids=$(jobs -p)
  if [ -n "$pids" ]; then
    kill $pids 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 $pids 2>/dev/null || break
      sleep 0.1
    done
    kill -9 $pids 2>/dev/null || true
  fi
}
on_exit() {
  rc=$?
  stop_all
  if [ $rc -ne 0 ]; then
    echo "FAIL (exit $rc); last commands:" >&2
    tail -n 15 "$tmp/trace.log" >&2 || true
    for log in "$WORK"/*/*.log; do
      [ -f "$log" ] && { echo "--- $log" >&2; tail -n 15 "$log" >&2; }
    done
  fi
  [ -n "${BUD_KEEP_TEST_DIRS:-}" ] || rm -rf "$tmp"
  exit $rc
}
trap on_exit EXIT

cd "$WORK"
exec 7>"$tmp/trace.log"
BASH_XTRACEFD=7
set -x
# shellcheck disable=SC1090
source "$tmp/procedure.sh"
set +x
echo "operating.md procedure passed ($blocks blocks)"
