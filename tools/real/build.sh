#!/usr/bin/env bash
# Builds the real tier's servers for `make test-real` from pinned Go modules, into
# ${XDG_CACHE_HOME:-~/.cache}/oscar-batch/real/bin (outside the work tree, so fresh clones on this machine, CI's
# among them, reuse it): etcd, kube-apiserver, kube-scheduler and kube-controller-manager (tools/real/go.mod), and the MinIO
# server (tools/real/minio/go.mod, a module of its own so its dependencies never move the Kubernetes pins).
#
# Rebuilt only when the pins change: the stamp file's name carries the Kubernetes, etcd and MinIO versions, the
# Go version and a hash of both modules' go.mod + go.sum and this script, so a cached run costs two `go list`.
#
#   tools/real/build.sh            # build if needed, print the bin directory
#   REAL_BUILD_P=1 tools/real/build.sh   # one package at a time (default 2: the machine has 2 cores)
#   REAL_FORCE=1 tools/real/build.sh     # rebuild even when the stamp matches
#
# Then the real OSCAR Manager (tools/real/oscar.sh), from the source archives in $OSCAR_VENDOR_DIR (default
# /work/shared/vendor/oscar; the Go module proxy refuses grycap/oscar and sigs.k8s.io/kueue), with a stamp of
# its own that carries the archives' hashes.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${REAL_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/oscar-batch/real/bin}
parallel=${REAL_BUILD_P:-2}

cd "$here"
# Never let a stray -mod=vendor or the like from the caller change what is built.
export GOFLAGS="-mod=readonly -buildvcs=false"
export CGO_ENABLED=0

k8s=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
etcd=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
minio=$(cd minio && go list -m -f '{{.Version}}' github.com/minio/minio)
gover=$(go env GOVERSION)
pins=$(cat go.mod go.sum minio/go.mod minio/go.sum "$here/build.sh" | sha256sum | cut -c1-12)
stamp="$out/.built-k8s-$k8s-etcd-$etcd-minio-${minio##*-}-$gover-$pins"
binaries=(etcd kube-apiserver kube-scheduler kube-controller-manager minio)

complete() {
    [ -f "$stamp" ] || return 1
    for b in "${binaries[@]}"; do [ -x "$out/$b" ] || return 1; done
}

if [ -z "${REAL_FORCE:-}" ] && complete; then
    "$here/oscar.sh" "$out" "$parallel"
    echo "$out"
    exit 0
fi

mkdir -p "$out"
rm -f "$out"/.built-k8s-*
echo "building etcd $etcd, Kubernetes $k8s and MinIO $minio with $gover into $out (-p $parallel)" >&2
start=$(date +%s)

# What hack/lib/version.sh stamps into an official build, so clients see a real version and no skew warning.
minor=${k8s#v1.}
minor=${minor%%.*}
kv=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    kv="$kv -X $pkg.gitVersion=$k8s -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    kv="$kv -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

tmp=$(mktemp -d "$out/.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
nice -n 10 go build -p "$parallel" -trimpath -ldflags "-s -w $kv" -o "$tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kube-controller-manager
# The etcd server module's main package builds a binary named after the module's last element ("v3").
nice -n 10 go build -p "$parallel" -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3
(cd minio && nice -n 10 go build -p "$parallel" -trimpath -ldflags "-s -w" -o "$tmp/minio" github.com/minio/minio)

for b in "${binaries[@]}"; do mv -f "$tmp/$b" "$out/$b"; done
touch "$stamp"
echo "built in $(( $(date +%s) - start ))s" >&2
"$here/oscar.sh" "$out" "$parallel"
echo "$out"
