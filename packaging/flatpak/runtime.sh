#!/bin/bash
# Builds io.github.ebrainpool.Platform//bookworm, a Flatpak runtime made of
# this Debian machine's own packages (glibc, Mesa with software GL, X11
# client libraries, liblxc, coreutils), into the OSTree repository REPO.
#
# It exists because Flathub's org.freedesktop.Platform cannot be fetched
# from the development machines: with it the Flatpak is built and run for
# real here. It doubles as its own SDK (the app is built outside, with Go).
# Usage: packaging/flatpak/runtime.sh REPO
set -euo pipefail
repo=${1:?usage: runtime.sh REPO}
ref=io.github.ebrainpool.Platform
branch=bookworm
# What the binary loads (ldd) and dlopens (GLX/EGL through libglvnd, the
# Mesa DRI drivers), plus a shell and coreutils for the build commands and
# ldconfig, which flatpak runs to make the app's ld.so.cache.
pkgs="libc6 libc-bin libgl1 libglx-mesa0 libegl1 libegl-mesa0 libgl1-mesa-dri
      libx11-6 libxcursor1 libxrandr2 libxinerama1 libxi6 libxxf86vm1
      liblxc1 dash bash coreutils"
missing=$(for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
	echo "runtime.sh: packages not installed: $missing (make test installs them)" >&2
	exit 1
fi
closure=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
	--no-breaks --no-replaces --no-enhances $pkgs 2>/dev/null | grep -v '^ ' | grep -v '<' | sort -u)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The files go to usr/ (exported with --files=usr); build-export still
# wants the files/ of an initialized build directory, left empty.
mkdir -p "$work/usr" "$work/files"
# Every file of every installed package of the closure, /usr/X as X and
# /etc/X as etc/X (Flatpak makes /etc from the runtime's etc). Debian 12
# is merged-/usr: /lib and /bin are the same as /usr/lib and /usr/bin.
for p in $closure; do
	dpkg -s "$p" >/dev/null 2>&1 && dpkg -L "$p"
done | sort -u | while read -r f; do
	case $f in
	/usr/share/doc/* | /usr/share/man/* | /usr/share/locale/* | /usr/share/info/*) continue ;;
	/usr/*) rel=${f#/usr/} ;;
	/lib/* | /lib64/* | /bin/* | /sbin/* | /etc/*) rel=${f#/} ;;
	*) continue ;;
	esac
	dst=$work/usr/$rel
	if [ -d "$f" ] && [ ! -L "$f" ]; then
		mkdir -p "$dst"
	elif [ -L "$f" ] || [ -f "$f" ]; then
		mkdir -p "$(dirname "$dst")"
		[ -e "$dst" ] || [ -L "$dst" ] || cp -a "$f" "$dst"
	fi
done
cat > "$work/metadata" <<EOM
[Runtime]
name=$ref
runtime=$ref/$(flatpak --default-arch)/$branch
sdk=$ref/$(flatpak --default-arch)/$branch
EOM
echo ">> exporting runtime $ref//$branch ($(du -sh "$work/usr" | cut -f1)) to $repo"
flatpak build-export --runtime --files=usr --no-update-summary "$repo" "$work" "$branch" >/dev/null
flatpak build-update-repo "$repo" >/dev/null
