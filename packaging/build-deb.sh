#!/usr/bin/env bash
# Builds the Debian package target/debian/pve2netbox_<version>-1_<arch>.deb with cargo-deb.
#
#   bash packaging/build-deb.sh
#
# The package's contents are declared in host/Cargo.toml ([package.metadata.deb]). This script
# uses the release binary the tests run (target/release/pve2netbox; built if missing or stale),
# generates the man pages and shell completions by running that binary (into target/packaging/,
# never committed), and packs everything with `cargo deb --no-build --strip` (the release
# profile keeps line tables, which cargo-deb would otherwise keep too: 185 MB instead of 32 MB).
# cargo-deb is installed from crates.io when missing. Prints the path of the .deb last.
set -euo pipefail
cd "$(dirname "$0")/.."

# The cargo-deb this packaging was written and checked with.
CARGO_DEB_VERSION=3.8.0
target_dir=${CARGO_TARGET_DIR:-target}
generated=target/packaging

if ! cargo deb --version >/dev/null 2>&1; then
    echo "build-deb: installing cargo-deb $CARGO_DEB_VERSION" >&2
    start=$SECONDS
    cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION"
    echo "build-deb: cargo-deb installed in $((SECONDS - start)) s" >&2
fi

# The binary the tests run: `cargo test` builds it with the features the tests' dependencies
# unify (a plain `cargo build` differs and would compile the crate a second time); a no-op after
# `cargo test --workspace --release`.
cargo test --release --locked -p pve2netbox --no-run
bin="$target_dir/release/pve2netbox"

rm -rf "$generated"
mkdir -p "$generated/completions"
"$bin" manpage --dir "$generated/man" >/dev/null
"$bin" completions bash > "$generated/completions/pve2netbox.bash"
"$bin" completions zsh > "$generated/completions/_pve2netbox"
"$bin" completions fish > "$generated/completions/pve2netbox.fish"
echo "build-deb: generated $(ls "$generated/man" | wc -l) man pages and 3 completion scripts in $generated" >&2

deb=$(cargo deb --locked -p pve2netbox --no-build --strip | tail -n1)
[ -f "$deb" ] || { echo "build-deb: cargo deb did not name a package file" >&2; exit 1; }
echo "build-deb: $(du -h "$deb" | cut -f1) $deb" >&2
echo "$deb"
