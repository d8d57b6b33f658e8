#!/usr/bin/env bash
# ci-up.sh: brings the real NetBox up for .ci/run and prints its environment lines.
#
#   eval "$(bash tests/real-netbox/ci-up.sh)" || exit 1     # then NETBOX_URL, NETBOX_TOKEN... are set
#   NETBOX_CI_INSTANCES=2 bash tests/real-netbox/ci-up.sh  # also instance 2, for tier.sh 2
#
# stdout carries only instance 1's KEY=value lines (NETBOX_URL, NETBOX_TOKEN, NETBOX_TOKEN_V1,
# NETBOX_TOKEN_RO); progress and errors go to stderr. With NETBOX_CI_INSTANCES=N it then brings
# up instances 2..N on the same install (`NETBOX_INSTANCE=n netbox.sh up`: a copy of the
# template database and a gunicorn each). It never skips: if NetBox cannot be brought up (e.g.
# no package registry reachable on a fresh machine) it says why and exits 1, so .ci/run fails
# instead of silently running without the real tier.
set -Euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Whole bring-up bound: a fresh machine needs ~7-10 min (mostly migrations), a kept install
# ~20 s; past this something hangs and CI should fail with a message, not wait for its limit.
CI_UP_TIMEOUT_S="${NETBOX_CI_UP_TIMEOUT:-1500}"
INSTANCES="${NETBOX_CI_INSTANCES:-1}"
case "$INSTANCES" in [1-8]) ;; *)
    echo "[ci-up] FAILED: NETBOX_CI_INSTANCES must be 1-8 (got $INSTANCES)" >&2
    exit 1
    ;;
esac

t0=$(date +%s)
echo "[ci-up] bringing up the real NetBox (tests/real-netbox/netbox.sh up, at most ${CI_UP_TIMEOUT_S} s)" >&2
# Instance 1 installs and migrates; the others are its template database's copies.
up_all() {
    NETBOX_INSTANCE=1 bash "$HERE/netbox.sh" up || return 1
    local n
    for n in $(seq 2 "$INSTANCES"); do
        NETBOX_INSTANCE="$n" bash "$HERE/netbox.sh" up || return 1
    done
}
export -f up_all
export HERE INSTANCES
timeout --kill-after=15 "$CI_UP_TIMEOUT_S" bash -c up_all >&2
rc=$?
if [ "$rc" != 0 ]; then
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        echo "[ci-up] FAILED: the real NetBox did not come up within ${CI_UP_TIMEOUT_S} s; the real-NetBox tier cannot run" >&2
    else
        echo "[ci-up] FAILED: the real NetBox could not be brought up (see the ERROR line above; on a fresh machine this needs the Debian mirror and PyPI); the real-NetBox tier cannot run" >&2
    fi
    exit 1
fi
echo "[ci-up] real NetBox up in $(($(date +%s) - t0)) s ($INSTANCES instance(s))" >&2
NETBOX_INSTANCE=1 bash "$HERE/netbox.sh" env
