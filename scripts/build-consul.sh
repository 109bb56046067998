#!/usr/bin/env bash
# Builds the Consul server that dcs/consul's real-server tests start, and caches
# it at ${PGWARDEN_CACHE:-$HOME/.cache/pgwarden}/bin/consul. Running it again
# when that binary already reports the pinned version does nothing.
#
#   scripts/build-consul.sh
#
# Why a build and not a download: Consul releases after mid-2023 are under the
# BUSL; v1.16.3 is the newest MPL-2.0 release the Go module proxy serves (1.16.4
# and 1.16.5 are refused, 1.16.6 and later are BUSL). The script refuses to
# build any Consul whose LICENSE is not the MPL.
#
# Cost: 3-6 minutes of CPU on a cold GOCACHE (about 2 GB RSS at peak), a few
# seconds with a warm one. The build module lives in a throwaway temp dir.
set -euo pipefail

CONSUL_VERSION=v1.16.3 # pinned: newest MPL-2.0 release; never raise it (BUSL)
# The consul submodules at the versions consul v1.16.3's go.mod names. Consul's
# own go.mod replaces them with ./api and friends; a dependency's replace
# directives are ignored, so the published versions are pinned here instead.
CONSUL_API=v1.25.1
CONSUL_SDK=v0.14.1
CONSUL_PROTO_PUBLIC=v0.4.1
CONSUL_ENVOYEXT=v0.4.1
CONSUL_TROUBLESHOOT=v0.3.1

log() { printf 'build-consul: %s\n' "$*" >&2; }
die() {
	log "$*"
	exit 1
}

cache="${PGWARDEN_CACHE:-$HOME/.cache/pgwarden}"
bin="$cache/bin"
out="$bin/consul"

# version_of prints the first line of `consul version` (sed reads it all, so
# the binary never dies of SIGPIPE, which pipefail would report).
version_of() { "$1" version 2>/dev/null | sed -n 1p; }

if [[ -x $out ]] && [[ $(version_of "$out") == "Consul ${CONSUL_VERSION}" ]]; then
	log "consul $CONSUL_VERSION already at $out"
	exit 0
fi

command -v go >/dev/null 2>&1 || die "go is not on PATH"
mkdir -p "$bin"

work=$(mktemp -d "${TMPDIR:-/tmp}/pgwarden-consul-build.XXXXXX")
trap 'rm -rf "$work"' EXIT

cat >"$work/go.mod" <<EOF
module pgwarden.invalid/consulbuild

go 1.26

// Copied from consul's go.mod: excludes of a dependency are not inherited.
exclude (
	github.com/hashicorp/go-msgpack v1.1.5
	github.com/hashicorp/go-msgpack v1.1.6
)

require (
	github.com/hashicorp/consul $CONSUL_VERSION
	github.com/hashicorp/consul/api $CONSUL_API
	github.com/hashicorp/consul/sdk $CONSUL_SDK
	github.com/hashicorp/consul/proto-public $CONSUL_PROTO_PUBLIC
	github.com/hashicorp/consul/envoyextensions $CONSUL_ENVOYEXT
	github.com/hashicorp/consul/troubleshoot $CONSUL_TROUBLESHOOT
)
EOF

# Some hashicorp modules have no entry in the checksum database reachable
# through the proxy (404); skip the lookup for them. The build is throwaway.
export GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}github.com/hashicorp"
export GOFLAGS="-mod=mod"
export CGO_ENABLED=0

cd "$work"
log "fetching github.com/hashicorp/consul@$CONSUL_VERSION"
dir=$(go mod download -json "github.com/hashicorp/consul@$CONSUL_VERSION" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
[[ -n $dir && -f $dir/LICENSE ]] || die "could not locate consul $CONSUL_VERSION sources"
grep -q "Mozilla Public License" "$dir/LICENSE" ||
	die "consul $CONSUL_VERSION is not MPL-2.0 ($dir/LICENSE); refusing to build"

log "building consul $CONSUL_VERSION (3-6 min of CPU on a cold cache)"
nice -n 10 go build -trimpath -ldflags='-s -w' -o "$work/consul" github.com/hashicorp/consul
got=$(version_of "$work/consul")
[[ $got == "Consul ${CONSUL_VERSION}" ]] ||
	die "built binary reports \"$got\", not Consul $CONSUL_VERSION"
mv -f "$work/consul" "$out"
log "installed $out"
