#!/usr/bin/env bash
# smoke.sh: checks a running real NetBox (netbox.sh up) with curl: version, the three tokens,
# and that reset empties NetBox while the tokens keep working. Destroys the NetBox's data.
#   tests/real-netbox/smoke.sh        (prints "smoke: N passed, N failed")
set -Euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
eval "$(bash "$HERE/netbox.sh" env)" || exit 1
pass=0
fail=0
check() { # name expected actual
    if [ "$2" = "$3" ]; then
        pass=$((pass + 1))
        echo "ok   $1"
    else
        fail=$((fail + 1))
        echo "FAIL $1: expected '$2', got '$3'"
    fi
}
# api METHOD PATH AUTH [BODY] -> prints "HTTP-code body" (body on the following lines)
api() {
    local data=()
    [ $# -ge 4 ] && data=(-H 'Content-Type: application/json' -d "$4")
    curl -s -m 30 -X "$1" -H "Authorization: $3" -H 'Accept: application/json' "${data[@]}" \
        -w '\n%{http_code}' "$NETBOX_URL$2"
}
code() { api "$@" | tail -n 1; }
body() { api "$@" | sed '$d'; }
jq_count() { python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])'; }
VMS=/api/virtualization/virtual-machines/
RW="Bearer $NETBOX_TOKEN"

check "status reports 4.7.3" 4.7.3 "$(body GET /api/status/ "$RW" | python3 -c 'import json,sys; print(json.load(sys.stdin)["netbox-version"])')"
check "v2 token reads VMs" 200 "$(code GET "$VMS" "$RW")"
check "v1 token reads VMs" 200 "$(code GET "$VMS" "Token $NETBOX_TOKEN_V1")"
check "read-only token reads VMs" 200 "$(code GET "$VMS" "Bearer $NETBOX_TOKEN_RO")"
check "no token is refused" 403 "$(code GET "$VMS" "Basic x")"
check "read-only token cannot POST" 403 "$(code POST /api/dcim/sites/ "Bearer $NETBOX_TOKEN_RO" '{"name":"ro","slug":"ro"}')"
check "v2 token creates a site" 201 "$(code POST /api/dcim/sites/ "$RW" '{"name":"smoke","slug":"smoke"}')"
check "v2 token creates a cluster type" 201 "$(code POST /api/virtualization/cluster-types/ "$RW" '{"name":"pve","slug":"pve"}')"
check "v2 token creates a cluster" 201 "$(code POST /api/virtualization/clusters/ "$RW" '{"name":"c1","type":{"slug":"pve"}}')"
check "v1 token creates a VM" 201 "$(code POST "$VMS" "Token $NETBOX_TOKEN_V1" '{"name":"vm-smoke","cluster":{"name":"c1"},"status":"active"}')"
check "one VM before reset" 1 "$(body GET "$VMS" "$RW" | jq_count)"
bash "$HERE/netbox.sh" reset >/dev/null 2>&1
check "reset exit code" 0 "$?"
check "no VM after reset (v2)" 0 "$(body GET "$VMS" "$RW" | jq_count)"
check "v1 token after reset" 200 "$(code GET "$VMS" "Token $NETBOX_TOKEN_V1")"
check "read-only token after reset" 200 "$(code GET "$VMS" "Bearer $NETBOX_TOKEN_RO")"
check "no site after reset" 0 "$(body GET /api/dcim/sites/ "$RW" | jq_count)"
echo "smoke: $pass passed, $fail failed"
[ "$fail" = 0 ]
