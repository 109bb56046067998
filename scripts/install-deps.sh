#!/usr/bin/env bash
# Installs what pgwarden's tests need on a Debian 12 machine, and only what is
# missing: running it twice changes nothing the second time. `make test` runs
# it first, so a fresh machine passes without manual steps.
#
#   scripts/install-deps.sh            install everything the test tiers need
#   scripts/install-deps.sh --demo     only what `make demo` needs (PostgreSQL)
#   PGWARDEN_SKIP_INSTALL=1 make test  skip this step (you installed by hand)
#
# A cold first run also builds Consul and kube-apiserver from the Go module
# proxy (about 10 minutes on 2 cores); later runs find them cached.
#
# Needs root for apt-get (CI and our development machines run as root).
set -euo pipefail

log() { printf 'install-deps: %s\n' "$*" >&2; }

if [[ "${PGWARDEN_SKIP_INSTALL:-}" == 1 ]]; then
	log "PGWARDEN_SKIP_INSTALL=1: skipping"
	exit 0
fi

demo_only=0
case "${1:-}" in
"") ;;
--demo) demo_only=1 ;;
*)
	log "unknown argument ${1}; usage: $0 [--demo]"
	exit 2
	;;
esac

# Debian packages the tests use, and the file each one provides, so the check
# for "already installed" is a cheap file test rather than a dpkg query.
#   postgresql-15: the server binaries every real-Postgres test starts
#   etcd-server, etcd-client: Debian's etcd 3.4, an external etcd for dcs/etcd tests
#   haproxy: routes a client to the primary in the reference daemon's e2e test
declare -A want=(
	[postgresql-15]=/usr/lib/postgresql/15/bin/postgres
	[etcd-server]=/usr/bin/etcd
	[etcd-client]=/usr/bin/etcdctl
	[zookeeper]=/usr/share/java/zookeeper.jar
	[haproxy]=/usr/sbin/haproxy
)
# The demo runs PostgreSQL under the daemon's embedded etcd: nothing else.
if ((demo_only)); then
	declare -A want=([postgresql-15]=/usr/lib/postgresql/15/bin/postgres)
fi

missing=()
for pkg in "${!want[@]}"; do
	[[ -e "${want[$pkg]}" ]] || missing+=("$pkg")
done

if ((${#missing[@]} > 0)); then
	if [[ $(id -u) -ne 0 ]]; then
		log "missing packages: ${missing[*]}; run as root or install them with apt-get"
		exit 1
	fi
	log "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get -o DPkg::Lock::Timeout=600 update -qq
	# Keep packaged services from starting on their default ports; tests start
	# their own servers on random loopback ports.
	policy=/usr/sbin/policy-rc.d
	created_policy=0
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod +x "$policy"
		created_policy=1
	fi
	apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	if ((created_policy)); then rm -f "$policy"; fi
else
	log "Debian packages present"
fi

# A packaged etcd may have been started by its postinst on 2379; tests never
# use it, and it would only take memory.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
	systemctl stop etcd || true
	systemctl disable etcd >/dev/null 2>&1 || true
fi

# PostgreSQL refuses to run as root; tests start it as this user.
if ! id postgres >/dev/null 2>&1; then
	log "creating OS user postgres"
	useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi

if ((demo_only)); then
	log "done (demo dependencies)"
	exit 0
fi

# --- dcs/consul (issue 9): a Consul v1.16.3 server for dcs/consul's tests ---
# Built from the Go module proxy (the last MPL-2.0 release) and cached under
# ${PGWARDEN_CACHE:-$HOME/.cache/pgwarden}/bin; a no-op once it is there.
"$(dirname "${BASH_SOURCE[0]}")/build-consul.sh"
# --- end dcs/consul ---

# --- dcs/kubernetes (issue 10): a kube-apiserver v1.34.4 for dcs/kubernetes' tests ---
# Built from the Go module proxy and cached under
# ${PGWARDEN_CACHE:-$HOME/.cache/pgwarden}/bin; a no-op once it is there. It runs
# against Debian's etcd (etcd-server above).
"$(dirname "${BASH_SOURCE[0]}")/build-kube-apiserver.sh"
# --- end dcs/kubernetes ---

log "done"
