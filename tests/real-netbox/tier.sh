#!/usr/bin/env bash
# tier.sh: runs the real-NetBox tier (the end-to-end suite against a real NetBox, Proxmox
# simulated), as one run or as two shards at once against two NetBox instances.
#
#   tier.sh      the README's command against the NetBox in the environment (netbox.sh env)
#   tier.sh 2    two shards at once: shard 1 against instance 1, shard 2 against instance 2
#                (both up: `NETBOX_CI_INSTANCES=2 ci-up.sh`, or `netbox.sh up` then
#                `NETBOX_INSTANCE=2 netbox.sh up`); each shard's URL and tokens come from
#                `NETBOX_INSTANCE=n netbox.sh env`
#
# Every e2e_* test binary runs in exactly one shard: shard 1 is the list below, shard 2 every
# other host/tests/e2e_*.rs (so a new test file lands in shard 2, never nowhere). Each shard's
# output goes to a file and is printed whole when the shard ends (the two never interleave),
# with its time; the script exits 1 naming every shard that failed. Run as root (the tests'
# `netbox.sh reset`), from anywhere; NETBOX_STATE_DIR/NETBOX_*_PORT as for netbox.sh.
set -Euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
SHARDS="${1:-1}"

# Shard 1, balanced by the last measured per-file times of the single run (seconds):
# e2e_children_faults ~265, e2e_kill ~226, e2e_sync ~119 and two short ones against
# e2e_faults ~246, e2e_orphans ~128, e2e_write_concurrency ~64, e2e_children_write ~43,
# e2e_changes ~41, e2e_tasks ~28 and the rest (~10-20 each).
SHARD_1=(e2e_children_faults e2e_kill e2e_sync e2e_children_preview e2e_plan)

say() { printf '[tier] %s\n' "$*" >&2; }

# The real tier's test command for some test binaries (`--test 'e2e_*'` when none are named).
run_tests() {
    local args=() t
    if [ $# = 0 ]; then args=(--test 'e2e_*'); fi
    for t in "$@"; do args+=(--test "$t"); done
    cd "$REPO" &&
        PVE2NETBOX_E2E_NETBOX=real cargo test --release -p pve2netbox "${args[@]}" \
            -- --test-threads=1 --skip sim_only_
}

if [ "$SHARDS" = 1 ]; then
    run_tests
    exit
fi
# Internal: one shard's run (started below in its own session).
if [ "$SHARDS" = --shard ]; then
    shift
    run_tests "$@"
    exit
fi
[ "$SHARDS" = 2 ] || { say "usage: tier.sh [1|2]"; exit 2; }

# Shard 2: every e2e test binary not in shard 1.
shard_2=()
for f in "$REPO"/host/tests/e2e_*.rs; do
    t="$(basename "$f" .rs)"
    [[ " ${SHARD_1[*]} " == *" $t "* ]] || shard_2+=("$t")
done
for t in "${SHARD_1[@]}"; do
    [ -f "$REPO/host/tests/$t.rs" ] || { say "shard 1 names $t, which is no host/tests/$t.rs"; exit 2; }
done

# Builds once, before the shards start: two cargo processes would otherwise wait on each
# other's build lock, and a build error is reported once.
say "building the e2e test binaries"
(cd "$REPO" && cargo test --release -p pve2netbox --test 'e2e_*' --no-run) || { say "FAILED: build"; exit 1; }

logs="$(mktemp -d)"
declare -A pid_shard started
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -- "-$p" 2>/dev/null || true; done
}
# On a timeout or ^C: stop the shards and print what each wrote so far.
on_signal() {
    say "interrupted: stopping the shards"
    cleanup
    local n
    for n in 1 2; do
        [ -f "$logs/shard-$n.log" ] && { say "---- shard $n (unfinished) ----"; cat "$logs/shard-$n.log"; }
    done
    rm -rf "$logs"
    exit 1
}
trap on_signal INT TERM

t0=$SECONDS
for n in 1 2; do
    if [ "$n" = 1 ]; then tests=("${SHARD_1[@]}"); else tests=("${shard_2[@]}"); fi
    say "shard $n against instance $n: ${tests[*]}"
    env_lines="$(NETBOX_INSTANCE=$n bash "$HERE/netbox.sh" env)" || { say "FAILED: no environment for instance $n (is it up?)"; cleanup; exit 1; }
    # setsid: each shard in its own process group, so a stop reaches its cargo and tests.
    (
        set -a
        eval "$env_lines"
        NETBOX_INSTANCE=$n
        set +a
        exec setsid bash "$HERE/tier.sh" --shard "${tests[@]}"
    ) >"$logs/shard-$n.log" 2>&1 &
    pid_shard[$!]=$n
    started[$n]=$SECONDS
    pids+=($!)
done

failed=()
running=("${pids[@]}")
while [ "${#running[@]}" != 0 ]; do
    rc=0
    wait -n -p done_pid "${running[@]}" || rc=$?
    n=${pid_shard[$done_pid]}
    rest=()
    for p in "${running[@]}"; do [ "$p" = "$done_pid" ] || rest+=("$p"); done
    running=("${rest[@]}")
    printf '\n==== real tier shard %s (instance %s): exit %s after %ss ====\n' "$n" "$n" "$rc" "$((SECONDS - started[$n]))"
    cat "$logs/shard-$n.log"
    printf '==== end of shard %s ====\n' "$n"
    [ "$rc" = 0 ] || failed+=("shard $n")
done
rm -rf "$logs"
if [ "${#failed[@]}" != 0 ]; then
    say "FAILED: ${failed[*]} (output above)"
    exit 1
fi
say "both shards passed in $((SECONDS - t0)) s"
