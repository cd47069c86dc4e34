#!/bin/bash
# Sandbox benchmark: cold start to the first process inside and warm exec
# latency through eBrainPool's Go API (go-lxc), against Debian's lxc-start /
# lxc-attach on the same container, in the same run. Runs as a throwaway
# unprivileged user (root creates it and runs the one-time setup).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root (it creates a throwaway user): sudo $0" >&2; exit 1; }
CYCLES=${CYCLES:-30}
dir=$(mktemp -d /tmp/ebp-bench-XXXXXX); chmod 755 "$dir"
user=ebpb$(head -c3 /dev/urandom | od -An -tx1 | tr -d ' \n')
cleanup() {
	"$dir/ebrainpool" setup --remove --user "$user" >/dev/null 2>&1 || true
	userdel -r "$user" >/dev/null 2>&1 || true
	rm -rf "$dir"
}
trap cleanup EXIT
go build -o "$dir/ebrainpool" .
useradd -m -U -s /bin/sh "$user"
"$dir/ebrainpool" setup --user "$user" >/dev/null
echo "# sandbox benchmark: $CYCLES cycles, $(nproc) CPUs, liblxc $(pkg-config --modversion lxc), kernel $(uname -r)"
cd / && runuser -u "$user" -- "$dir/ebrainpool" sandbox bench --cycles "$CYCLES" --warm 5 --cli bench-peer
