#!/usr/bin/env bash
# Builds the container image `pve2netbox:<version>` from the Containerfile with buildah (chroot
# isolation, vfs storage: no daemon, no base image to pull), then runs `pve2netbox --version`
# and `pve2netbox demo --vms 20` inside it and checks that they ran as the non-root user.
#
#   bash packaging/build-image.sh            # needs buildah (apt-get install buildah)
#
# Uses the release binary the tests run (target/release/pve2netbox, built if missing). The
# image is left in buildah's local storage and written as an OCI archive to
# target/image/pve2netbox-<version>.oci.tar (podman load -i, skopeo copy, or buildah push it to
# a registry).
set -euo pipefail
cd "$(dirname "$0")/.."

export STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot
target_dir=${CARGO_TARGET_DIR:-target}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
image="pve2netbox:${version}"
context=target/image
run_uid=65532

command -v buildah >/dev/null || { echo "build-image: buildah is not installed (apt-get install buildah)" >&2; exit 1; }

# The binary the tests run: `cargo test` builds it with the features the tests' dependencies
# unify (a plain `cargo build` differs and would compile the crate a second time); a no-op after
# `cargo test --workspace --release`.
cargo test --release --locked -p pve2netbox --no-run
bin="$target_dir/release/pve2netbox"

# --- the build context: rootfs/ (root-owned) and writable/ (the run user's) ---------------------
rm -rf "$context"
mkdir -p "$context/rootfs/usr/bin" "$context/rootfs/etc" "$context/rootfs/usr/share/doc/pve2netbox" \
    "$context/writable/var/lib/pve2netbox" "$context/writable/var/cache/pve2netbox"
strip -o "$context/rootfs/usr/bin/pve2netbox" "$bin"
install -m 644 LICENSE "$context/rootfs/usr/share/doc/pve2netbox/LICENSE"

# Every shared object the binary loads, at the path the loader looks for it, and the copyright
# file of the Debian package it comes from (glibc, libgcc are redistributed here).
libs=$(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)
[ -n "$libs" ] || { echo "build-image: ldd found no libraries for $bin" >&2; exit 1; }
for lib in $libs; do
    mkdir -p "$context/rootfs$(dirname "$lib")"
    cp -L "$lib" "$context/rootfs$lib"
    pkg=$( { dpkg -S "$lib" || dpkg -S "$(readlink -f "$lib")"; } 2>/dev/null | head -n1 | cut -d: -f1 || true)
    if [ -n "$pkg" ] && [ -f "/usr/share/doc/$pkg/copyright" ]; then
        install -D -m 644 "/usr/share/doc/$pkg/copyright" "$context/rootfs/usr/share/doc/$pkg/copyright"
    fi
done
echo "build-image: libraries: $(echo $libs)"

printf 'root:x:0:0:root:/root:/sbin/nologin\npve2netbox:x:%s:%s:pve2netbox:/var/lib/pve2netbox:/sbin/nologin\n' \
    "$run_uid" "$run_uid" > "$context/rootfs/etc/passwd"
printf 'root:x:0:\npve2netbox:x:%s:\n' "$run_uid" > "$context/rootfs/etc/group"
chmod 644 "$context/rootfs/etc/passwd" "$context/rootfs/etc/group"
chmod 755 "$context/writable/var/lib/pve2netbox" "$context/writable/var/cache/pve2netbox"

# --- build -----------------------------------------------------------------------------------
buildah bud --quiet --layers=false --build-arg "VERSION=$version" -f Containerfile -t "$image" "$context" >/dev/null
echo "build-image: built $image ($(buildah images --format '{{.Size}}' "$image"))"

# --- run inside it ---------------------------------------------------------------------------
ctr=$(buildah from --pull-never "$image")
cleanup() { buildah rm "$ctr" >/dev/null 2>&1 || true; }
trap cleanup EXIT

user=$(buildah inspect --type container --format '{{.OCIv1.Config.User}}' "$ctr")
[ "$user" = "$run_uid:$run_uid" ] || { echo "build-image: image user is '$user', expected $run_uid:$run_uid" >&2; exit 1; }

echo "build-image: buildah run $image -- pve2netbox --version"
buildah run "$ctr" -- /usr/bin/pve2netbox --version
echo "build-image: buildah run $image -- pve2netbox demo --vms 20"
buildah run "$ctr" -- /usr/bin/pve2netbox demo --vms 20 >"$context/demo.out" 2>"$context/demo.err" || {
    echo "build-image: the demo failed in the image:" >&2
    cat "$context/demo.out" "$context/demo.err" >&2
    exit 1
}
tail -n 3 "$context/demo.out"

# The demo compiled the rules into the cache: the file must belong to the run user, so the
# process really ran as that user and could write only where the image lets it.
mnt=$(buildah mount "$ctr")
owners=$(find "$mnt/var/cache/pve2netbox" -type f -printf '%u:%g\n' | sort -u)
buildah umount "$ctr" >/dev/null
[ "$owners" = "$run_uid:$run_uid" ] || { echo "build-image: cache files owned by '$owners', expected $run_uid:$run_uid" >&2; exit 1; }
echo "build-image: ran as $run_uid:$run_uid (owner of the compiled-rules cache it wrote)"

rm -f "$context/pve2netbox-$version.oci.tar"
buildah push --quiet "$image" "oci-archive:$context/pve2netbox-$version.oci.tar:$image"
echo "build-image: wrote $context/pve2netbox-$version.oci.tar ($(du -h "$context/pve2netbox-$version.oci.tar" | cut -f1))"
