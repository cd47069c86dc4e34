#!/bin/bash
# Builds dist/ebrainpool_VERSION_ARCH.deb from this checkout with debhelper
# (packaging/deb/debian) and prints its path as the last line.
# Usage: packaging/deb/build.sh [OUTDIR]
#
# The working tree (without .git, bin, build and dist) is copied to a
# temporary directory with debian/ at its top; debian/changelog is written
# there from FyneApp.toml's Version; then dpkg-buildpackage -b. Go is the
# one on PATH (it must be at least go.mod's version) with the caller's module
# and build caches. EBP_DEB_VERSION overrides the version (tests).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/packaging/deb
out=${1:-$root/dist}
version=${EBP_DEB_VERSION:-$(sed -n 's/^Version = "\(.*\)"/\1/p' "$root/FyneApp.toml")}
if [ -z "$version" ]; then
	echo "build.sh: no Version = \"...\" in $root/FyneApp.toml" >&2
	exit 1
fi

# Build-Depends, Go aside: Go is the toolchain on PATH, not golang-go.
deps=$(sed -n '/^Build-Depends:/,/^[^ ]/{s/^Build-Depends://;/^[^ ]/d;p}' "$here/debian/control" |
	tr -d '\n' | tr ',' '\n' | sed 's/^ *//;s/ *$//' | grep -v -e '^golang-go' -e '^$' | paste -sd, -)
if ! dpkg-checkbuilddeps -d "$deps" "$here/debian/control" 2>/dev/null; then
	dpkg-checkbuilddeps -d "$deps" "$here/debian/control" || true
	echo "build.sh: install them first (make deb does: apt-get install debhelper dpkg-dev fakeroot lxc-dev libgl1-mesa-dev xorg-dev pkg-config)" >&2
	exit 1
fi
command -v go >/dev/null || {
	echo "build.sh: go is not on PATH" >&2
	exit 1
}
want=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$root/go.mod")
have=$(go env GOVERSION)
have=${have#go}
if [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -1)" != "$want" ]; then
	echo "build.sh: go $have on PATH is older than go.mod's $want" >&2
	exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src=$work/ebrainpool-$version
mkdir "$src"
tar -C "$root" --exclude=./.git --exclude=./bin --exclude=./build --exclude=./dist -cf - . | tar -C "$src" -xf -
rm -rf "$src/debian"
cp -a "$here/debian" "$src/debian"

# The changelog: one entry for this version, dated by the last commit (so
# rebuilds of one commit are identical), or now outside git.
date=$(git -C "$root" log -1 --format=%cD 2>/dev/null || date -R)
cat >"$src/debian/changelog" <<EOF
ebrainpool ($version) unstable; urgency=medium

  * eBrainPool $version, packaged from FyneApp.toml's version (see the
    project's history for the changes).

 -- eBrainPool developers <dev@ebrainpool.invalid>  $date
EOF

# dh gives its commands a HOME of their own: Go's caches go by name.
export GOMODCACHE GOCACHE GOPATH
GOMODCACHE=$(go env GOMODCACHE)
GOCACHE=$(go env GOCACHE)
GOPATH=$(go env GOPATH)
log=$work/build.log
if ! (cd "$src" && dpkg-buildpackage -b -d -us -uc) >"$log" 2>&1; then
	tail -n 60 "$log" >&2
	echo "build.sh: dpkg-buildpackage failed (log above)" >&2
	exit 1
fi
arch=$(dpkg --print-architecture)
deb=ebrainpool_${version}_${arch}.deb
mkdir -p "$out"
cp "$work/$deb" "$out/$deb"
echo "$out/$deb"
