#!/bin/bash
# Builds the eBrainPool Flatpak into an OSTree repository, OUTDIR/repo
# (default dist/flatpak/repo). The runtime (runtime.sh) is built into the
# same repository the first time. Install for one user with:
#   flatpak --user remote-add --no-gpg-verify ebrainpool-local OUTDIR/repo
#   flatpak --user install ebrainpool-local io.github.ebrainpool.EBrainPool
# Usage: packaging/flatpak/build.sh [OUTDIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$(mkdir -p "${1:-$root/dist/flatpak}" && cd "${1:-$root/dist/flatpak}" && pwd)
id=io.github.ebrainpool.EBrainPool
repo=$out/repo
for tool in flatpak flatpak-builder; do
	command -v $tool >/dev/null || { echo "build.sh: $tool is not installed (apt-get install flatpak flatpak-builder)" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! [ -e "$repo/refs/heads/runtime/io.github.ebrainpool.Platform/$(flatpak --default-arch)/bookworm" ]; then
	"$here/runtime.sh" "$repo"
fi
# flatpak-builder needs the runtime installed: in a private installation.
export FLATPAK_USER_DIR=$work/installation
flatpak --user remote-add --no-gpg-verify ebrainpool-local "$repo"
flatpak --user install -y --noninteractive ebrainpool-local io.github.ebrainpool.Platform//bookworm >/dev/null
stage=$work/stage
mkdir -p "$stage"
(cd "$root" && go build -trimpath -ldflags "-s -w" -o "$stage/ebrainpool" .)
cp "$here/$id.yml" "$root/assets/$id.desktop" "$root/assets/$id.Open.desktop" "$root/assets/$id.metainfo.xml" "$root/assets/ebrainpool.svg" "$stage/"
for s in 32 48 64 128 256; do cp "$root/assets/ebrainpool-$s.png" "$stage/"; done
echo ">> building $id"
# No FUSE here (containers, CI): no rofiles-fuse.
flatpak-builder --user --disable-rofiles-fuse --force-clean --state-dir="$work/state" \
	--repo="$repo" --default-branch=stable "$work/build" "$stage/$id.yml" >"$work/builder.log" 2>&1 ||
	{ cat "$work/builder.log" >&2; exit 1; }
echo "$repo"
