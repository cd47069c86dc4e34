#!/bin/bash
# Idle cost of the desktop app (tray + daemon, one process) against the
# headless daemon, in the same run: resident memory and CPU time over an idle
# minute, with 3 known peers. The desktop app is measured twice: tray only
# (as started at login), and idle again after a window was opened and closed
# (the GL driver is loaded by then). Needs Xvfb, xdotool and dbus-run-session;
# uses throwaway XDG directories and loopback only (no discovery).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-60}
work=$(mktemp -d /tmp/ebp-idle-XXXXXX)
cleanup() { [ -n "${xvfb:-}" ] && kill "$xvfb" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
go build -o "$work/ebrainpool" .
disp=:$((200 + RANDOM % 100))
Xvfb "$disp" -nolisten tcp -screen 0 1280x800x24 >/dev/null 2>&1 & xvfb=$!
sleep 1
peers=()
for i in 1 2 3; do
	fp=$(ssh-keygen -q -t ed25519 -N '' -f "$work/k$i" >/dev/null && ssh-keygen -lf "$work/k$i.pub" | awk '{print $2}')
	peers+=(--peer "$fp@127.0.0.1:$((40000 + i))=peer$i")
done
measure() { # name, before-measuring hook, command...
	local name=$1 hook=$2; shift 2
	mkdir -p "$work/$name"
	XDG_CONFIG_HOME="$work/$name/config" XDG_STATE_HOME="$work/$name/state" HOME="$work/$name" DISPLAY=$disp \
		dbus-run-session -- "$@" >"$work/$name.log" 2>&1 &
	local runner=$!
	sleep 3 # start-up
	$hook
	local pid; pid=$(pgrep -P "$(pgrep -P $runner | head -1)" -f ebrainpool || pgrep -f "$work/ebrainpool" | tail -1)
	read -r u0 s0 < <(awk '{print $14, $15}' /proc/$pid/stat)
	sleep "$SECS"
	read -r u1 s1 < <(awk '{print $14, $15}' /proc/$pid/stat)
	local rss; rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
	local hz; hz=$(getconf CLK_TCK)
	kill "$pid"; wait $runner 2>/dev/null || true
	printf '| %s | %.1f MB | %.3f s |\n' "$name" "$(echo "$rss/1024" | bc -l)" "$(echo "($u1+$s1-$u0-$s0)/$hz" | bc -l)"
}
echo "# idle cost over ${SECS}s with 3 known peers (Xvfb + Mesa software GL, no tray host)"
echo "| process | resident memory | CPU time while idle |"
echo "|---|---|---|"
# The peer browser opened at start is closed with Ctrl+W (no window manager).
close_window() { DISPLAY=$disp xdotool search --sync --onlyvisible --name 'eBrainPool: peers' key --window %1 ctrl+w; sleep 2; }
measure daemon : "$work/ebrainpool" daemon --no-discovery --listen 127.0.0.1:0 "${peers[@]}"
# --show none: no window even though Xvfb has no tray host (as at login).
measure "desktop app, tray only" : "$work/ebrainpool" gui --no-discovery --listen 127.0.0.1:0 --show none "${peers[@]}"
measure "desktop app, after a window" close_window "$work/ebrainpool" gui --no-discovery --listen 127.0.0.1:0 --show peers "${peers[@]}"
