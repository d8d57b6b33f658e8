#!/usr/bin/env bash
# What CI runs for packaging, as root on a Debian machine, after the release tests built
# target/release/pve2netbox:
#   1. build the .deb (installs cargo-deb when missing)
#   2. dpkg -i it, run /usr/bin/pve2netbox --version, check the man pages and completions
#   3. systemd-analyze verify the installed units, failing on any finding (verify itself exits 0
#      on unknown keys and bad values), after proving on a broken copy that it finds one; and
#      systemd-analyze security: the service's exposure score stays at most 2.0
#   4. dpkg -r, then dpkg --purge, and check that every file of the package is gone
#   5. build the container image and run `--version` and `demo --vms 20` in it
# Each step runs under a timeout and prints how long it took.
#
#   bash packaging/check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

pkg=pve2netbox
total_start=$SECONDS
step_start=$SECONDS
step() {
    if [ -n "${step_name:-}" ]; then
        printf '[packaging] %-44s %4d s\n' "$step_name" "$((SECONDS - step_start))"
    fi
    step_name=$1
    step_start=$SECONDS
    printf '\n[packaging] == %s\n' "$step_name"
}
fail() { echo "[packaging] FAILED: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "run as root (dpkg -i, buildah)"

step "tools: buildah, systemd-analyze, man"
missing=()
command -v buildah >/dev/null || missing+=(buildah)
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v man >/dev/null || missing+=(man-db)
if [ ${#missing[@]} -gt 0 ]; then
    timeout 120 apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q "${missing[@]}" >/dev/null
fi
systemd-analyze --version | head -n1

step "build the .deb"
deb=$(timeout 1200 bash packaging/build-deb.sh | tail -n1)
ls -l "$deb"
dpkg-deb --info "$deb" | sed -n 's/^ \(Package\|Version\|Depends\|Installed-Size\):/  \1:/p'

step "dpkg -i"
if dpkg-query -W "$pkg" >/dev/null 2>&1; then
    timeout 120 dpkg --purge "$pkg" >/dev/null
fi
timeout 120 dpkg -i "$deb"
dpkg-query -L "$pkg" | sort > target/packaging/installed-files
timeout 30 /usr/bin/pve2netbox --version
for path in /usr/share/man/man1/pve2netbox.1.gz /usr/share/man/man1/pve2netbox-sync.1.gz \
    /usr/share/bash-completion/completions/pve2netbox /usr/share/zsh/vendor-completions/_pve2netbox \
    /usr/share/fish/vendor_completions.d/pve2netbox.fish /usr/share/doc/pve2netbox/copyright; do
    [ -s "$path" ] || fail "$path is not installed"
done
grep -qx /etc/pve2netbox/pve2netbox.toml /var/lib/dpkg/info/$pkg.conffiles \
    || fail "/etc/pve2netbox/pve2netbox.toml is not a conffile"
timeout 30 man -w pve2netbox >/dev/null || fail "man cannot find pve2netbox(1)"
# The installed completion script loads in bash and registers the completion.
timeout 30 bash -c 'source /usr/share/bash-completion/completions/pve2netbox && complete -p pve2netbox' \
    || fail "the bash completion does not load"

step "systemd-analyze verify the installed units"
units=$(grep -E '^/(usr/)?lib/systemd/system/pve2netbox\.(service|timer)$' target/packaging/installed-files)
[ "$(echo "$units" | wc -l)" = 2 ] || fail "expected the service and the timer, found: $units"
verify() { timeout 60 systemd-analyze verify "$@" 2>&1; }
# The check must be able to fail: a typo in a copy of the service has to be reported.
broken=$(mktemp -d)
sed 's/^ProtectSystem=strict$/ProtectSystem=strickt/' "$(echo "$units" | grep service)" > "$broken/$pkg.service"
grep -q strickt "$broken/$pkg.service" || fail "could not make the broken copy"
findings=$(verify "$broken/$pkg.service" || true)
rm -rf "$broken"
[ -n "$findings" ] || fail "systemd-analyze verify found nothing in a broken unit: the check would be empty"
echo "control (broken copy): $findings"
# shellcheck disable=SC2086
findings=$(verify $units) || fail "systemd-analyze verify failed: $findings"
[ -z "$findings" ] || fail "systemd-analyze verify reported: $findings"
echo "verify: $(echo $units) - no findings"
# The hardening must not erode: systemd's exposure score of the service (0 = fully sandboxed,
# 10 = not at all; 1.1 today) stays at most 2.0.
service=$(echo "$units" | grep service)
exposure=$(timeout 60 systemd-analyze security --offline=true --threshold=20 "$service" 2>&1) \
    || fail "the service's exposure is above 2.0: $(echo "$exposure" | grep -E '^✗|Overall')"
echo "$exposure" | tail -n1

step "dpkg -r, then dpkg --purge"
timeout 120 dpkg -r "$pkg"
[ ! -e /usr/bin/pve2netbox ] || fail "/usr/bin/pve2netbox is left after dpkg -r"
[ -f /etc/pve2netbox/pve2netbox.toml ] || fail "dpkg -r removed the conffile (only --purge may)"
timeout 120 dpkg --purge "$pkg"
! dpkg-query -W "$pkg" >/dev/null 2>&1 || fail "$pkg is still known to dpkg"
left=()
while read -r path; do
    # Directories the package shares with others (/usr/bin, ...) stay; its own files must not.
    if [ -e "$path" ] && [ ! -d "$path" ]; then left+=("$path"); fi
done < target/packaging/installed-files
if [ -e /etc/pve2netbox ]; then left+=(/etc/pve2netbox); fi
for extra in /etc/systemd/system/*pve2netbox* /etc/systemd/system/*/*pve2netbox* \
    /var/lib/systemd/deb-systemd-helper-*/*pve2netbox* /var/lib/systemd/deb-systemd-helper-*/*/*pve2netbox*; do
    if [ -e "$extra" ] || [ -L "$extra" ]; then left+=("$extra"); fi
done
[ ${#left[@]} -eq 0 ] || fail "left after purge: ${left[*]}"
echo "removed cleanly: $(wc -l < target/packaging/installed-files) paths of the package, conffile, systemd state"

step "container image: build, --version and demo --vms 20 inside"
timeout 900 bash packaging/build-image.sh

step "done"
printf '[packaging] all checks passed in %d s\n' "$((SECONDS - total_start))"
