#!/usr/bin/env bash
# `cmake --install` into a temporary prefix, then checks what an administrator gets:
#   - exactly the three binaries in bin/, each answering --version and --help;
#   - the systemd units (ExecStart= into the prefix, the sandboxing options), passing
#     `systemd-analyze verify` and `systemd-analyze security` when systemd-analyze is there;
#   - the example configs: every key the config parsers read is present and commented with its
#     default (or "Required"); with their paths pointed at real files in a temporary folder and
#     the placeholders filled in, each binary's `run --check-config` accepts them; broken ones
#     are refused with exit 1 and a message naming the key.
#
#   tests/install/install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(cd "$1" && pwd); src=$(cd "$2" && pwd)

work=$(mktemp -d "${TMPDIR:-/tmp}/bud-install-XXXXXX")
cleanup() { [ -n "${BUD_KEEP_TEST_DIRS:-}" ] || rm -rf "$work"; }
trap cleanup EXIT
prefix=$work/prefix
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }

echo "== cmake --install $build --prefix $prefix"
timeout 120 cmake --install "$build" --prefix "$prefix" > "$work/install.log"

# --- binaries -----------------------------------------------------------------------------------
got=$(cd "$prefix/bin" && ls | tr '\n' ' ')
[ "$got" = "bud-broker bud-ip bud-registry " ] && ok "bin/ holds the three binaries" \
  || fail "bin/ holds '$got', want exactly bud-broker bud-ip bud-registry"
version=$(sed -n 's/^project(budstikke VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
for b in bud-registry bud-broker bud-ip; do
  out=$(timeout 10 "$prefix/bin/$b" --version) || fail "$b --version exited non-zero"
  [ "$out" = "$b $version" ] && ok "$b --version: $out" || fail "$b --version said '$out'"
  timeout 10 "$prefix/bin/$b" --help | grep -q "check-config\|run" \
    && ok "$b --help" || fail "$b --help"
done

# --- systemd units ------------------------------------------------------------------------------
units=$prefix/lib/systemd/system
for u in bud-registry bud-broker bud-ip; do
  f=$units/$u.service
  [ -f "$f" ] || { fail "$f missing"; continue; }
  grep -q "^ExecStart=$prefix/bin/$u run --config /etc/budstikke/" "$f" \
    && ok "$u.service starts $prefix/bin/$u" || fail "$u.service ExecStart= does not point into the prefix"
  grep -q '@[A-Z_]*@' "$f" && fail "$u.service has an unsubstituted @VARIABLE@"
  for opt in 'User=budstikke' 'StateDirectory=budstikke/' 'ConfigurationDirectory=budstikke' \
      'ProtectSystem=strict' 'ProtectHome=yes' 'PrivateTmp=yes' 'PrivateDevices=yes' \
      'NoNewPrivileges=yes' 'RestrictAddressFamilies=' 'SystemCallFilter=@system-service' \
      'CapabilityBoundingSet=$' 'MemoryDenyWriteExecute=yes' 'LockPersonality=yes' \
      'Restart=on-failure' 'KillSignal=SIGTERM' 'ExecStartPre=.*--check-config'; do
    grep -q "^$opt" "$f" || fail "$u.service lacks $opt"
  done
done
[ -f "$prefix/lib/sysusers.d/budstikke.conf" ] && ok "sysusers.d/budstikke.conf" \
  || fail "lib/sysusers.d/budstikke.conf missing"
if command -v systemd-analyze >/dev/null; then
  for u in bud-registry bud-broker bud-ip; do
    # verify exits 0 on unknown keys; any output is a finding.
    if out=$(cd "$units" && systemd-analyze verify "./$u.service" 2>&1) && [ -z "$out" ]; then
      ok "systemd-analyze verify $u.service"
    else
      fail "systemd-analyze verify $u.service: $out"
    fi
    if exposure=$(cd "$units" && systemd-analyze security --offline=true --threshold=20 \
        "./$u.service" 2>&1 | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p') \
        && [ -n "$exposure" ]; then
      # 0 (locked down) .. 10 (exposed); systemd calls up to 2 "OK".
      awk -v e="$exposure" 'BEGIN { exit !(e <= 2.0) }' \
        && ok "$u.service exposure $exposure (systemd-analyze security)" \
        || fail "$u.service exposure $exposure > 2.0"
    else
      echo "note: systemd-analyze security --offline unavailable; exposure not measured"
    fi
  done
else
  echo "SKIPPED: systemd-analyze not installed; units not verified (apt-get install systemd)"
fi

# --- example configs: complete and documented ---------------------------------------------------
examples=$prefix/share/budstikke/examples
for pair in registry:address-registry broker:broker ip:integration-point; do
  name=${pair%%:*}; dir=${pair#*:}
  f=$examples/$name.toml
  [ -f "$f" ] || { fail "$f missing"; continue; }
  # The keys its config.cc reads, the [http] keys of common/http_server.cc when it reads those,
  sources=("$src/$dir/config.cc")
  grep -q LoadHttpOptions "$src/$dir/config.cc" && sources+=("$src/common/http_server.cc")
  # ... and the [store] keys of common/storage/store_config.cc when it reads those.
  grep -q LoadStoreConfig "$src/$dir/config.cc" && sources+=("$src/common/storage/store_config.cc")
  grep -ohE 'f\.[A-Za-z]+\("[a-z_]+\.[a-z_]+"' "${sources[@]}" \
    | sed -E 's/.*\("(.*)"/\1/' | sort -u > "$work/$name.parsed"
  awk '/^\[/ { gsub(/[][]/, ""); section = $1; next }
       /^[a-z_]+ *=/ { print section "." $1 }' "$f" | sort -u > "$work/$name.example"
  missing=$(comm -23 "$work/$name.parsed" "$work/$name.example" | tr '\n' ' ')
  extra=$(comm -13 "$work/$name.parsed" "$work/$name.example" | tr '\n' ' ')
  [ -z "$missing" ] && ok "$name.toml has all $(wc -l < "$work/$name.parsed") keys" \
    || fail "$name.toml lacks key(s) the parser reads: $missing"
  [ -z "$extra" ] || fail "$name.toml has key(s) the parser does not read: $extra"
  # Every key directly below its own comment, which gives the default or says it is required.
  undocumented=$(awk '/^#/ { block = block $0 "\n"; next }
    /^[a-z_]+ *=/ { if (block !~ /Default|Required/) print $1; block = ""; next }
    { block = "" }' "$f" | tr '\n' ' ')
  [ -z "$undocumented" ] && ok "$name.toml: every key commented with its default" \
    || fail "$name.toml: key(s) without a comment giving the default: $undocumented"
done

# --- example configs pass --check-config once their files exist ---------------------------------
root=$work/root
mkdir -p "$root/etc/budstikke"/{registry,broker,ip/keys} "$root/var/lib/budstikke"/{registry,broker,ip}
dev_ca=$prefix/share/budstikke/dev-ca
"$dev_ca" init "$work/ca" > /dev/null
cp "$work/ca/ca.pem" "$root/etc/budstikke/ca.pem"
cp "$work/ca/ca.pem" "$root/etc/budstikke/ip/ca.pem"
"$dev_ca" issue "$work/ca" 910076787 "$root/etc/budstikke/ip/keys" --sign ec --enc ec > /dev/null
pub() { "$prefix/bin/$1" keygen --out "$2" | sed -n 's/^public key: //p'; }
registry_key=$(pub bud-registry "$root/etc/budstikke/registry/curve.key")
broker_key=$(pub bud-broker "$root/etc/budstikke/broker/curve.key")
pub bud-ip "$root/etc/budstikke/ip/keys/curve.key" > /dev/null
for name in registry broker ip; do
  sed -e "s|/etc/budstikke|$root/etc/budstikke|g" -e "s|/var/lib/budstikke|$root/var/lib/budstikke|g" \
    "$examples/$name.toml" > "$root/etc/budstikke/$name/$name.toml"
done
check() {  # check BINARY CONFIG -> sets out, rc
  set +e; out=$(timeout 20 "$prefix/bin/$1" run --check-config --config "$2" 2>&1); rc=$?; set -e
}
# As installed, the placeholders are refused, naming the key to fill in.
check bud-broker "$root/etc/budstikke/broker/broker.toml"
[ $rc = 1 ] && [[ "$out" == *"key 'registry.server_key'"* ]] \
  && ok "broker.toml with its placeholder is refused: $out" \
  || fail "broker.toml with its placeholder: rc=$rc $out"
# (Z85 keys may hold '&', which sed's replacement reads as "the match".)
for name in registry broker ip; do
  sed -i -e "s|<registry CURVE public key>|${registry_key//&/\\&}|" \
    -e "s|<broker CURVE public key>|${broker_key//&/\\&}|" "$root/etc/budstikke/$name/$name.toml"
done
for name in registry broker ip; do
  check "bud-$name" "$root/etc/budstikke/$name/$name.toml"
  if [ $rc = 0 ] && [[ "$out" == "config OK: $root/etc/budstikke/$name/$name.toml"* ]]; then
    ok "bud-$name run --check-config accepts the example"
  else
    fail "bud-$name --check-config on the example: rc=$rc $out"
  fi
done
[ -z "$(ls "$root/var/lib/budstikke/ip")" ] && ok "--check-config created nothing" \
  || fail "--check-config created $(ls "$root/var/lib/budstikke/ip")"

# --- broken configs are refused, naming the key -------------------------------------------------
refused() {  # refused BINARY CONFIG PHRASE WHAT
  check "$1" "$2"
  if [ $rc = 1 ] && [[ "$out" == *"$3"* ]]; then ok "refused $4: $out"
  else fail "$4: want exit 1 and '$3', got rc=$rc: $out"; fi
}
ip=$root/etc/budstikke/ip/ip.toml
chmod 644 "$root/etc/budstikke/ip/keys/signing.key"
refused bud-ip "$ip" "chmod 600" "a signing key others can read"
chmod 600 "$root/etc/budstikke/ip/keys/signing.key"
sed 's/^orgnr = .*/orgnr = "910075918"/' "$ip" > "$work/other-org.toml"
refused bud-ip "$work/other-org.toml" "belongs to organisation 910076787, not 910075918" \
  "certificates of another organisation"
sed 's/^credit = /credt = /' "$ip" > "$work/typo.toml"
refused bud-ip "$work/typo.toml" "unknown key(s): broker.credt" "a misspelt key"
mv "$root/etc/budstikke/ca.pem" "$work/ca-moved.pem"
refused bud-registry "$root/etc/budstikke/registry/registry.toml" \
  "key 'registry.trust_anchor'" "a missing trust anchor"
mv "$work/ca-moved.pem" "$root/etc/budstikke/ca.pem"
rmdir "$root/var/lib/budstikke/broker"
refused bud-broker "$root/etc/budstikke/broker/broker.toml" "key 'store.path'" \
  "a store in a missing folder"

# --- the rest of the install ----------------------------------------------------------------------
for f in share/budstikke/dev-ca share/doc/budstikke/operating.md share/doc/budstikke/README.md; do
  [ -e "$prefix/$f" ] && ok "$f installed" || fail "$f missing"
done
if find "$prefix" -name '*_tests' -o -name 'fuzz_*' | grep -q .; then
  fail "tests or fuzzers were installed"
fi

if [ $failures -gt 0 ]; then echo "$failures failure(s)" >&2; exit 1; fi
echo "install test passed"
