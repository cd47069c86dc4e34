#!/bin/bash
# Builds dist/ebrainpool_VERSION_ARCH.deb from this checkout.
# Usage: packaging/deb/build.sh [OUTDIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/dist}
version=$(sed -n 's/^Version = "\(.*\)"/\1/p' "$root/FyneApp.toml")
arch=$(dpkg --print-architecture)
id=io.github.ebrainpool.EBrainPool
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

(cd "$root" && go build -trimpath -ldflags "-s -w" -o "$stage/usr/bin/ebrainpool" .)
install -D -m 0644 "$root/assets/$id.desktop" "$stage/usr/share/applications/$id.desktop"
install -D -m 0644 "$root/assets/$id.metainfo.xml" "$stage/usr/share/metainfo/$id.metainfo.xml"
install -D -m 0644 "$root/assets/ebrainpool.svg" "$stage/usr/share/icons/hicolor/scalable/apps/$id.svg"
for s in 32 48 64 128 256; do
	install -D -m 0644 "$root/assets/ebrainpool-$s.png" "$stage/usr/share/icons/hicolor/${s}x${s}/apps/$id.png"
done
install -D -m 0644 "$root/README.md" "$stage/usr/share/doc/ebrainpool/README.md"

mkdir -p "$stage/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<EOC
Package: ebrainpool
Version: $version
Architecture: $arch
Maintainer: eBrainPool developers <dev@ebrainpool.invalid>
Installed-Size: $size
Depends: libc6, liblxc1 | liblxc-common, lxc, uidmap
Recommends: avahi-daemon, xauth
Suggests: openssh-client
Section: net
Priority: optional
Homepage: https://github.com/ebrainpool/ebrainpool
Description: run applications from colleagues' machines, sandboxed there
 eBrainPool lets people on a local network use each other's installed
 applications: the program runs on the colleague's machine inside an
 unprivileged per-requester LXC sandbox, and its window shows on the
 requester's display through X11-forwarded SSH. Every request is allowed or
 denied by the colleague.
EOC
cat > "$stage/DEBIAN/postinst" <<'EOC'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
	echo "eBrainPool: each desktop user needs a one-time setup (the only step that needs root):"
	echo "    sudo ebrainpool setup --user NAME"
fi
EOC
chmod 0755 "$stage/DEBIAN/postinst"
mkdir -p "$out"
deb="$out/ebrainpool_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$stage" "$deb" >/dev/null
echo "$deb"
