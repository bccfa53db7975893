#!/usr/bin/env bash
# Builds the real OSCAR Manager for the real tier (called by tools/real/build.sh): tools/real/oscar.sh OUT [P].
#
# The Go module proxy refuses github.com/grycap/oscar and sigs.k8s.io/kueue (403), so the sources come as two
# archives in $OSCAR_VENDOR_DIR (default /work/shared/vendor/oscar, README.md there): grycap/oscar at a pinned
# commit and the part of kueue v0.17.2 it imports. They are extracted into a cache directory outside git, OSCAR's
# go.mod is pointed at the extracted kueue with a replace directive, and everything else resolves through the
# module proxy (GOFLAGS=-mod=mod, for this module only: its go.sum does not cover the replaced kueue's needs).
#
# Rebuilt only when something changes: the stamp's name carries the OSCAR commit, the kueue version, the Go
# version and a hash of both archives and of this script. Without the archives nothing is built and the
# oscar-manager binary stays missing (tests/real then skip, or fail with OSCAR_REAL_REQUIRED=1).
set -euo pipefail

out=$1
parallel=${2:-${REAL_BUILD_P:-2}}
vendor=${OSCAR_VENDOR_DIR:-/work/shared/vendor/oscar}
oscar_tgz="$vendor/oscar-v4-7ade09ee-src.tar.gz"
kueue_tgz="$vendor/kueue-v0.17.2-api-src.tar.gz"
oscar_commit=7ade09ee
kueue_version=v0.17.2

if [ ! -f "$oscar_tgz" ] || [ ! -f "$kueue_tgz" ]; then
    echo "oscar.sh: no OSCAR sources in $vendor (want $(basename "$oscar_tgz") and $(basename "$kueue_tgz"));" \
        "oscar-manager not built" >&2
    exit 0
fi

gover=$(go env GOVERSION)
hash=$(cat "$oscar_tgz" "$kueue_tgz" "$0" | sha256sum | cut -c1-12)
stamp="$out/.built-oscar-$oscar_commit-kueue-$kueue_version-$gover-$hash"
if [ -z "${REAL_FORCE:-}" ] && [ -f "$stamp" ] && [ -x "$out/oscar-manager" ] \
        && [ -f "$out/oscar-deploy/oscar-rbac.yaml" ]; then
    exit 0
fi

src=${REAL_SRC_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/oscar-batch/real/src}/oscar-$hash
echo "building OSCAR Manager $oscar_commit (kueue $kueue_version) with $gover into $out (-p $parallel)" >&2
start=$(date +%s)
mkdir -p "$out"
rm -rf "$src"
mkdir -p "$src"
tar -xzf "$oscar_tgz" -C "$src"
tar -xzf "$kueue_tgz" -C "$src"
cd "$src/oscar-src"
go mod edit -replace sigs.k8s.io/kueue=../kueue-src

tmp=$(mktemp -d "$out/.tmp-oscar.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false" nice -n 10 \
    go build -p "$parallel" -trimpath -ldflags "-s -w" -o "$tmp/oscar-manager" .
mv -f "$tmp/oscar-manager" "$out/oscar-manager"
# OSCAR's own namespaces and RBAC, which the real tier applies before starting it.
rm -rf "$out/oscar-deploy"
cp -r "$src/oscar-src/deploy/yaml" "$out/oscar-deploy"
rm -f "$out"/.built-oscar-*
touch "$stamp"
echo "built OSCAR Manager in $(( $(date +%s) - start ))s" >&2
