#!/bin/bash
# Idle cost of the desktop app (tray + daemon in one process, its windows in
# a window process started when one opens) against the headless daemon, in
# the same run: resident memory and CPU time over an idle minute, with 3
# known peers. The desktop app is measured tray only (as started at login),
# with the peer browser open, and after it was closed: resident memory 10 s
# after the close, then CPU time over the idle minute that follows. The
# desktop app's figures are its own process plus its window processes. Needs
# Xvfb, xdotool and dbus-run-session; uses throwaway XDG directories and
# loopback only (no discovery).
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
hz=$(getconf CLK_TCK)
# procs PID: the process and its window processes.
procs() { echo "$1" $(pgrep -P "$1" -f gui-windows || true); }
# rss PID: resident kB of procs PID.
rss() { local kb=0 p; for p in $(procs "$1"); do kb=$((kb + $(awk '/VmRSS/ {print $2}' /proc/$p/status 2>/dev/null || echo 0))); done; echo $kb; }
# cpu PID: CPU ticks of procs PID so far.
cpu() { local t=0 p; for p in $(procs "$1"); do t=$((t + $(awk '{print $14 + $15}' /proc/$p/stat 2>/dev/null || echo 0))); done; echo $t; }
mbytes() { printf '%.1f MB' "$(echo "$1/1024" | bc -l)"; }
# Ctrl+W in the peer browser (no window manager), again while it stays
# viewable: keys sent just after a window maps can be lost.
close_window() {
	DISPLAY=$disp xdotool search --sync --onlyvisible --name 'eBrainPool: peers' >/dev/null
	for _ in 1 2 3; do
		DISPLAY=$disp xdotool search --onlyvisible --name 'eBrainPool: peers' key --window %1 ctrl+w 2>/dev/null || return 0
		for _ in $(seq 20); do
			DISPLAY=$disp xdotool search --onlyvisible --name 'eBrainPool: peers' >/dev/null 2>&1 || return 0
			sleep 0.1
		done
	done
}
measure() { # name, window (yes: the peer browser is open at start, measured, closed), command...
	local name=$1 window=$2; shift 2
	mkdir -p "$work/$name"
	XDG_CONFIG_HOME="$work/$name/config" XDG_STATE_HOME="$work/$name/state" HOME="$work/$name" DISPLAY=$disp \
		dbus-run-session -- "$@" >"$work/$name.log" 2>&1 &
	local runner=$!
	sleep 3 # start-up
	local pid; pid=$(pgrep -P $runner -f "^$work/ebrainpool")
	if [ "$window" = yes ]; then
		printf '| %s, peer browser open | %s | |\n' "$name" "$(mbytes "$(rss "$pid")")"
		close_window
		sleep 10
		name="$name, after the peer browser closed (RSS at +10 s)"
	fi
	local r; r=$(rss "$pid")
	local c0; c0=$(cpu "$pid")
	sleep "$SECS"
	local c1; c1=$(cpu "$pid")
	kill "$pid"; wait $runner 2>/dev/null || true
	printf '| %s | %s | %.3f s |\n' "$name" "$(mbytes "$r")" "$(echo "($c1-$c0)/$hz" | bc -l)"
}
echo "# idle cost over ${SECS}s with 3 known peers (Xvfb + Mesa software GL, no tray host)"
echo "| process | resident memory | CPU time while idle |"
echo "|---|---|---|"
measure daemon no "$work/ebrainpool" daemon --no-discovery --listen 127.0.0.1:0 "${peers[@]}"
# --show none: no window even though Xvfb has no tray host (as at login).
measure "desktop app, tray only" no "$work/ebrainpool" gui --no-discovery --listen 127.0.0.1:0 --show none "${peers[@]}"
measure "desktop app" yes "$work/ebrainpool" gui --no-discovery --listen 127.0.0.1:0 --show peers "${peers[@]}"
