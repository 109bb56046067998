#!/usr/bin/env bash
# Builds the kube-apiserver that dcs/kubernetes' real-server tests start, and
# caches it at ${PGWARDEN_CACHE:-$HOME/.cache/pgwarden}/bin/kube-apiserver.
# Running it again when that binary already reports the pinned version does
# nothing.
#
#   scripts/build-kube-apiserver.sh
#
# How: a throwaway module in a temp dir requires k8s.io/kubernetes at the pinned
# version. Kubernetes' own go.mod points its staging modules (k8s.io/api,
# k8s.io/apiserver, ...) at ./staging/src/...; a dependency's replace directives
# are ignored, so this module replaces each of them with its published v0.X.Y
# release instead. The list is generated from kubernetes' go.mod, so a version
# bump needs no edit here beyond KUBE_VERSION.
#
# The apiserver also needs an etcd at run time; Debian's /usr/bin/etcd (3.4,
# installed by install-deps.sh) works with it.
#
# Cost: 4-7 minutes of CPU on a cold GOCACHE (about 2 GB RSS at peak), a few
# seconds with a warm one. Binary about 100 MB.
set -euo pipefail

KUBE_VERSION=v1.34.4 # matches the client-go minor in go.mod (v0.34.x)

log() { printf 'build-kube-apiserver: %s\n' "$*" >&2; }
die() {
	log "$*"
	exit 1
}

cache="${PGWARDEN_CACHE:-$HOME/.cache/pgwarden}"
bin="$cache/bin"
out="$bin/kube-apiserver"

if [[ -x $out ]] && "$out" --version 2>/dev/null | grep -qx "Kubernetes ${KUBE_VERSION}"; then
	log "kube-apiserver $KUBE_VERSION already at $out"
	exit 0
fi

command -v go >/dev/null 2>&1 || die "go is not on PATH"
mkdir -p "$bin"

work=$(mktemp -d "${TMPDIR:-/tmp}/pgwarden-kube-build.XXXXXX")
trap 'rm -rf "$work"' EXIT

export GOFLAGS="-mod=mod"
export CGO_ENABLED=0

cd "$work"
log "fetching k8s.io/kubernetes@$KUBE_VERSION go.mod"
modfile=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" |
	sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
[[ -n $modfile && -f $modfile ]] || die "could not download k8s.io/kubernetes@$KUBE_VERSION"

staging="v0.${KUBE_VERSION#v1.}" # v1.34.4 -> v0.34.4
minor="${KUBE_VERSION#v1.}"
minor="${minor%%.*}"

{
	printf 'module pgwarden.invalid/kubebuild\n\ngo 1.26\n\n'
	# kubernetes pins its GODEBUG defaults; a dependency's godebug is not inherited.
	grep -E '^godebug ' "$modfile" || true
	printf '\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$KUBE_VERSION"
	grep -E '^[[:space:]]+k8s\.io/[a-z0-9-]+ => \./staging/' "$modfile" |
		awk -v v="$staging" '{print "\t" $1 " => " $1 " " v}'
	printf ')\n'
} >"$work/go.mod"
n=$(grep -c ' => ' "$work/go.mod")
((n > 10)) || die "found only $n staging replaces in kubernetes' go.mod; layout changed?"

ld="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION"
ld="$ld -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
ld="$ld -X k8s.io/component-base/version.gitTreeState=clean"

log "building kube-apiserver $KUBE_VERSION (4-7 min of CPU on a cold cache)"
start=$(date +%s)
nice -n 10 go build -trimpath -ldflags="$ld" -o "$work/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
"$work/kube-apiserver" --version | grep -qx "Kubernetes ${KUBE_VERSION}" ||
	die "built binary does not report Kubernetes $KUBE_VERSION"
mv -f "$work/kube-apiserver" "$out"
log "installed $out in $(($(date +%s) - start))s"
