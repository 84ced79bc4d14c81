#!/usr/bin/env bash
# scripts/demo --ha --keep, then scripts/demo --stop: the demo exits 0 (the message arrived byte
# for byte, the sender saw MOTTATT, every process reported itself healthy), leaves its seven
# processes and three PostgreSQL nodes running, and --stop ends every one of them and removes the
# nodes' folders.
#
#   tests/install/demo_ha_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(cd "$1" && pwd); src=$(cd "$2" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/bud-demo-ha-XXXXXX")
demo=$work/demo
cleanup() {
  timeout 120 "$src/scripts/demo" --stop "$demo" >/dev/null 2>&1 || true
  [ -n "${BUD_KEEP_TEST_DIRS:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

BUD_BUILD_DIR=$build timeout 540 "$src/scripts/demo" --ha --keep --workdir "$demo" \
  || fail "scripts/demo --ha exited $?"

pids=()
for f in "$demo"/registry*/*.pid "$demo"/broker*/*.pid "$demo"/agencies/*/*.pid; do
  [ -f "$f" ] && pids+=("$(cat "$f")")
done
[ ${#pids[@]} = 7 ] || fail "want 7 pid files (2 registries, 3 brokers, 2 points): ${#pids[@]}"
for p in "${pids[@]}"; do
  kill -0 "$p" 2>/dev/null || fail "process $p of the kept demo is not running"
done
nodes=()
while read -r _ dir; do nodes+=("$dir"); done < "$demo/pg-nodes"
[ ${#nodes[@]} = 3 ] || fail "want 3 PostgreSQL nodes in pg-nodes, found ${#nodes[@]}"
postmasters=()
for d in "${nodes[@]}"; do
  postmasters+=("$(head -n 1 "$d/data/postmaster.pid")")
  kill -0 "${postmasters[-1]}" 2>/dev/null || fail "the PostgreSQL node in $d is not running"
done

timeout 180 "$src/scripts/demo" --stop "$demo" || fail "scripts/demo --stop exited $?"
for p in "${pids[@]}" "${postmasters[@]}"; do
  ! kill -0 "$p" 2>/dev/null || fail "process $p still runs after --stop"
done
for d in "${nodes[@]}"; do [ ! -e "$d" ] || fail "$d still exists after --stop"; done
[ ! -e "$demo/pg-nodes" ] || fail "pg-nodes still exists after --stop"
echo "demo --ha: exit 0, 7 processes and 3 PostgreSQL nodes up, all gone after --stop"
