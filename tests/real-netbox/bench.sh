#!/usr/bin/env bash
# First sync and zero-change rerun of N guests (Proxmox simulator, realistic latency) into the
# real NetBox of `netbox.sh`, reset to empty first. Prints one JSON line per run with the wall
# time, the run report's request counts and the writes NetBox itself logged (its changelog, so
# a write the product did not count still shows). A measurement, not a test: it stops at the
# first run that does not exit 0, since a failed run's figures mean nothing.
#
#   tests/real-netbox/bench.sh [N ...]        (default: 100 500)
#   tests/real-netbox/bench.sh --write-concurrency "1 2 4" [--repeat R] [N ...]   (default N: 500)
#   tests/real-netbox/bench.sh --children [N ...]
#   tests/real-netbox/bench.sh --children --write-concurrency "1 2 4" [N ...]
#
# With --children: the simulator's children workload (`pve2netbox-sim --children`: every guest a
# running QEMU VM with two NICs, four addresses its agent reports and two disks) and
# `sync.children = true`; the workload's VLANs are created in NetBox after the reset.
#
# With --write-concurrency: per repeat and per N, a first sync of N VMs into an empty NetBox at
# each `sync.write_concurrency` (task history off: the figure is the dispatch), then the
# same-body sequential floor in the same NetBox: the VMs the first of those syncs created are
# read back into the bodies it sent (the fields its plan, made beforehand, lists for each
# create), deleted, and bulk-POSTed again one request at a time, `write_window` (8) per
# request, by a plain client. Each line carries the load average at its start. With
# --children as well, the syncs write the children workload and no floor is taken (the floor's
# client replays VM creates only).
#
# Needs `netbox.sh up` and release binaries (`cargo build --release --workspace`). Extra sync
# options go in PVE2NETBOX_BENCH_ARGS (e.g. "--bulk").
set -euo pipefail
concurrency=""
repeat=1
children=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --write-concurrency) concurrency="$2"; shift 2 ;;
    --repeat) repeat="$2"; shift 2 ;;
    --children) children=1; shift ;;
    --) shift; break ;;
    -*) echo "bench.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
# The floor's requests: as many bodies per bulk POST as the sync's default write window.
floor_window=8
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
    echo "bench.sh: its report's counts, requests and errors (first 20):" >&2
    python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(json.dumps({"counts": r.get("counts"), "requests": r.get("requests"), "errors": r.get("errors", [])[:20]}, indent=1))' "$work/report.json" >&2 || true
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
                  "load": open("/proc/loadavg").read().split()[:3],
                  "counts": r["counts"], "requests": r["requests"],
                  "netbox_changelog_writes": logged, "phases_ms": r["phases_ms"]}))
PY
}

floor() { # label, plan file; replays the plan's creates as the bodies NetBox stored, one request at a time
  local label="$1" plan="$2" mark logged
  python3 "$here/floor.py" prepare "$plan" >"$work/floor.json"
  mark=$(changes_after 0)
  python3 "$here/floor.py" post "$work/floor.json" "$floor_window" >"$work/floor-timed.json"
  logged=$(changes_after "$mark")
  python3 - "$label" "$work/floor-timed.json" "$logged" <<'PY'
import json, sys
label, path, logged = sys.argv[1], sys.argv[2], int(sys.argv[3])
r = json.load(open(path))
print(json.dumps({"run": label, "exit": 0, "wall_s": r["wall_s"],
                  "load": r["load"], "vms": r["vms"], "requests": r["requests"],
                  "ms_per_vm": round(r["wall_s"] * 1000 / r["vms"], 1),
                  "netbox_changelog_writes": logged}))
PY
}

create_vlans() { # the children workload's VLANs (VIDs 10-17, as in the test kit's workload)
  python3 - "$NETBOX_URL" "$NETBOX_TOKEN" <<'PY'
import json, sys, urllib.request
url, token = sys.argv[1].rstrip("/"), sys.argv[2]
body = [{"vid": v, "name": f"v{v}", "status": "active"} for v in range(10, 18)]
req = urllib.request.Request(f"{url}/api/ipam/vlans/", data=json.dumps(body).encode(), method="POST",
                             headers={"Authorization": f"Bearer {token}", "Accept": "application/json",
                                      "Content-Type": "application/json"})
urllib.request.urlopen(req, timeout=60).read()
PY
}

start_sim() { # vms
  "$bin/pve2netbox-sim" --vms "$1" --profile realistic ${children:+--children} >"$work/sim.env" 2>"$work/sim.log" &
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
}

stop_sim() { kill "$sim_pid"; wait "$sim_pid" 2>/dev/null || true; sim_pid=""; }

if [[ -n "$concurrency" ]]; then
  export NETBOX_URL NETBOX_TOKEN
  for r in $(seq "$repeat"); do
    for vms in ${@:-500}; do
      start_sim "$vms"
      first=""
      for c in $concurrency; do
        "$here/netbox.sh" reset >/dev/null
        [[ -n "$children" ]] && create_vlans
        if [[ -z "$first" ]]; then
          first="$c"
          # The plan of a first sync: which fields each create sends (no write).
          set +e
          "$bin/pve2netbox" plan --config "$work/pve2netbox.toml" --task-history false --out "$work/plan.json" --quiet >/dev/null 2>"$work/stderr"
          rc=$?
          set -e
          if [[ $rc -ne 2 ]]; then
            echo "bench.sh: the plan exited $rc (2 expected: changes). Its stderr:" >&2
            cat "$work/stderr" >&2
            exit 1
          fi
        fi
        # shellcheck disable=SC2086
        run "first sync, $vms VMs, write_concurrency $c, repeat $r" "$bin/pve2netbox" sync --config "$work/pve2netbox.toml" --output json --quiet --task-history false --set "sync.write_concurrency=$c" ${PVE2NETBOX_BENCH_ARGS:-}
        if [[ "$c" == "$first" && -z "$children" ]]; then
          floor "same-body sequential floor, $vms VMs, repeat $r" "$work/plan.json"
        fi
      done
      stop_sim
    done
  done
  exit 0
fi

extra=()
what="VMs"
if [[ -n "$children" ]]; then extra=(--set sync.children=true); what="VMs with children"; fi
for n in "${@:-100 500}"; do
  for vms in $n; do
    "$here/netbox.sh" reset >/dev/null
    [[ -n "$children" ]] && create_vlans
    start_sim "$vms"
    # shellcheck disable=SC2086
    run "first sync, $vms $what" "$bin/pve2netbox" sync --config "$work/pve2netbox.toml" --output json --quiet "${extra[@]}" ${PVE2NETBOX_BENCH_ARGS:-}
    # shellcheck disable=SC2086
    run "rerun, $vms $what" "$bin/pve2netbox" sync --config "$work/pve2netbox.toml" --output json --quiet "${extra[@]}" ${PVE2NETBOX_BENCH_ARGS:-}
    stop_sim
  done
done
