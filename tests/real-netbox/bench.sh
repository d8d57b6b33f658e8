#!/usr/bin/env bash
# First sync and zero-change rerun of N guests (Proxmox simulator, realistic latency) into the
# real NetBox of `netbox.sh`, reset to empty first. Prints one JSON line per run with the wall
# time, the run report's request counts and the writes NetBox itself logged (its changelog, so
# a write the product did not count still shows). A measurement, not a test: it stops at the
# first run that does not exit 0, since a failed run's figures mean nothing.
#
#   tests/real-netbox/bench.sh [N ...]        (default: 100 500)
#
# Needs `netbox.sh up` and release binaries (`cargo build --release --workspace`). Extra sync
# options go in PVE2NETBOX_BENCH_ARGS (e.g. "--bulk").
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${CARGO_TARGET_DIR:-$root/target}/release"
work="$(mktemp -d)"
sim_pid=""
cleanup() { [[ -n "$sim_pid" ]] && kill "$sim_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

eval "$("$here/netbox.sh" env | grep '^NETBOX_\(URL\|TOKEN\)=')"

changes_after() { # the number of changelog entries after id $1 (0: the last id so far)
  python3 - "$NETBOX_URL" "$NETBOX_TOKEN" "$1" <<'PY'
import json, sys, urllib.request
url, token, after = sys.argv[1].rstrip("/"), sys.argv[2], int(sys.argv[3])
def get(query):
    req = urllib.request.Request(f"{url}/api/core/object-changes/?{query}",
                                 headers={"Authorization": f"Bearer {token}",
                                          "Accept": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)
if after == 0:
    page = get("limit=1&ordering=-id")
    print(page["results"][0]["id"] if page["results"] else 0)
else:
    print(get(f"limit=1&id__gt={after}")["count"])
PY
}

run() { # label, then the sync command line; prints a JSON line
  local label="$1"; shift
  local t0 t1 mark logged
  mark=$(changes_after 0)
  t0=$(date +%s.%N)
  set +e
  "$@" >"$work/report.json" 2>"$work/stderr"
  local rc=$?
  set -e
  t1=$(date +%s.%N)
  if [[ $rc -ne 0 ]]; then
    echo "bench.sh: '$label' exited $rc; its figures would mean nothing. Its stderr:" >&2
    cat "$work/stderr" >&2
    exit 1
  fi
  # With mark 0 (an empty changelog) every entry counts.
  if [[ $mark -eq 0 ]]; then logged=$(changes_after -1); else logged=$(changes_after "$mark"); fi
  python3 - "$label" "$rc" "$t0" "$t1" "$work/report.json" "$logged" <<'PY'
import json, sys
label, rc, t0, t1, path, logged = (sys.argv[1], int(sys.argv[2]), float(sys.argv[3]),
                                   float(sys.argv[4]), sys.argv[5], int(sys.argv[6]))
r = json.load(open(path))
print(json.dumps({"run": label, "exit": rc, "wall_s": round(t1 - t0, 2),
                  "counts": r["counts"], "requests": r["requests"],
                  "netbox_changelog_writes": logged, "phases_ms": r["phases_ms"]}))
PY
}

for n in "${@:-100 500}"; do
  for vms in $n; do
    "$here/netbox.sh" reset >/dev/null
    "$bin/pve2netbox-sim" --vms "$vms" --profile realistic >"$work/sim.env" 2>"$work/sim.log" &
    sim_pid=$!
    for _ in $(seq 100); do grep -q '^CONTROL_URL=' "$work/sim.env" && break; sleep 0.1; done
    pve_url=$(grep -m1 '^PVE_URL=' "$work/sim.env" | cut -d= -f2-)
    pve_fp=$(grep -m1 '^PVE_FINGERPRINT=' "$work/sim.env" | cut -d= -f2-)
    export PVE_TOKEN; PVE_TOKEN=$(grep -m1 '^PVE_TOKEN=' "$work/sim.env" | cut -d= -f2-)
    export NETBOX_TOKEN
    cat >"$work/pve2netbox.toml" <<TOML
[netbox]
url = "$NETBOX_URL"
token_env = "NETBOX_TOKEN"

[[proxmox]]
name = "pve-cl1"
url = "$pve_url"
token_env = "PVE_TOKEN"
fingerprint = "$pve_fp"
TOML
    # shellcheck disable=SC2086
    run "first sync, $vms VMs" "$bin/pve2netbox" sync --config "$work/pve2netbox.toml" --output json --quiet ${PVE2NETBOX_BENCH_ARGS:-}
    # shellcheck disable=SC2086
    run "rerun, $vms VMs" "$bin/pve2netbox" sync --config "$work/pve2netbox.toml" --output json --quiet ${PVE2NETBOX_BENCH_ARGS:-}
    kill "$sim_pid"; wait "$sim_pid" 2>/dev/null || true; sim_pid=""
  done
done
