# Shell functions of the ebrainpool package's maintainer scripts.
#
# debian/rules copies this file into postinst, prerm and postrm in place of
# their EBP_LIB token line (a purged package's files are gone when postrm
# runs, so nothing can be sourced from the package). deb_test.go sources it
# and runs the functions against temporary directories: every path is an
# argument. POSIX sh and essential packages only (coreutils, findutils,
# grep, sed, diffutils): postrm purge may run with nothing else installed.
# No function exits the script on an error: they warn and go on.

ebp_warn() {
	echo "ebrainpool: warning: $*" >&2
}

# ebp_setup_users STATEDIR: the users with a setup record
# (STATEDIR/.setup-USER.json), one per line.
ebp_setup_users() {
	for _ebp_f in "$1"/.setup-*.json; do
		[ -f "$_ebp_f" ] || continue
		_ebp_u=${_ebp_f##*/.setup-}
		echo "${_ebp_u%.json}"
	done
}

# ebp_parse_record FILE: what a setup record (Go's json.MarshalIndent of
# sandbox.setupRecord: one key per line) lists, as lines
#   user NAME
#   subuid START COUNT      (added_subuids, if present)
#   subgid START COUNT      (added_subgids, if present)
#   cgroup PATH             (each of cgroup_dirs)
# Range keys are "start"/"count" or, in older records, "Start"/"Count".
ebp_parse_record() {
	_ebp_sect= _ebp_start= _ebp_count=
	# read without IFS= drops the indentation.
	while read -r _ebp_l || [ -n "$_ebp_l" ]; do
		case $_ebp_l in
		'"user": "'*)
			_ebp_v=${_ebp_l#'"user": "'}
			_ebp_v=${_ebp_v%,}
			echo "user ${_ebp_v%'"'}"
			;;
		'"added_subuids": {') _ebp_sect=subuid _ebp_start= _ebp_count= ;;
		'"added_subgids": {') _ebp_sect=subgid _ebp_start= _ebp_count= ;;
		'"cgroup_dirs": [') _ebp_sect=cgroup ;;
		'"'[Ss]'tart": '*)
			_ebp_start=${_ebp_l#*: }
			_ebp_start=${_ebp_start%,}
			;;
		'"'[Cc]'ount": '*)
			_ebp_count=${_ebp_l#*: }
			_ebp_count=${_ebp_count%,}
			;;
		'}' | '},')
			case $_ebp_sect in
			subuid | subgid)
				case $_ebp_start:$_ebp_count in
				:* | *: | *[!0-9:]*) ebp_warn "$1: unreadable $_ebp_sect range" ;;
				*) echo "$_ebp_sect $_ebp_start $_ebp_count" ;;
				esac
				;;
			esac
			_ebp_sect=
			;;
		']' | '],') _ebp_sect= ;;
		'"'*)
			if [ "$_ebp_sect" = cgroup ]; then
				_ebp_v=${_ebp_l#'"'}
				_ebp_v=${_ebp_v%,}
				echo "cgroup ${_ebp_v%'"'}"
			fi
			;;
		esac
	done <"$1"
	return 0
}

# ebp_remove_subid FILE USER START COUNT: deletes the line USER:START:COUNT
# from FILE (/etc/subuid or /etc/subgid); FILE is not touched otherwise.
ebp_remove_subid() {
	[ -f "$1" ] || return 0
	_ebp_re=$(printf '%s' "$2:$3:$4" | sed 's/[].[*^$\/]/\\&/g')
	if grep -q "^[[:space:]]*$_ebp_re[[:space:]]*\$" "$1"; then
		# GNU sed -i keeps the file's owner and mode.
		sed -i "/^[[:space:]]*$_ebp_re[[:space:]]*\$/d" "$1" || ebp_warn "could not remove $2:$3:$4 from $1"
	fi
}

# ebp_safe_cgroup CGROOT DIR: whether DIR is a directory below CGROOT
# without . or .. components (a record is data, not a command).
ebp_safe_cgroup() {
	case $2 in
	"$1"/*) ;;
	*) return 1 ;;
	esac
	case $2/ in
	*/../* | */./* | *//*) return 1 ;;
	esac
	[ -d "$2" ]
}

# ebp_kill_cgroup DIR: SIGKILL to every process in DIR and below.
ebp_kill_cgroup() {
	find "$1" -name cgroup.procs -type f 2>/dev/null | while IFS= read -r _ebp_p; do
		for _ebp_pid in $(cat "$_ebp_p" 2>/dev/null); do
			kill -KILL "$_ebp_pid" 2>/dev/null || :
		done
	done
}

# ebp_kill_sandboxes CGROOT USER [DIR...]: kills USER's sandbox processes
# still running: those in LXC's cgroups for our containers
# (lxc.payload.ebp-*, lxc.monitor.ebp-*) that belong to USER, i.e. the
# cgroup or the one it was made in is owned by USER, or it is below one of
# the DIRs setup made for USER.
ebp_kill_sandboxes() {
	_ebp_root=$1 _ebp_user=$2
	shift 2
	_ebp_uid=$(id -u "$_ebp_user" 2>/dev/null) || _ebp_uid=
	find "$_ebp_root" -type d \( -name 'lxc.payload.ebp-*' -o -name 'lxc.monitor.ebp-*' \) -prune -print 2>/dev/null |
		while IFS= read -r _ebp_c; do
			_ebp_mine=
			if [ -n "$_ebp_uid" ]; then
				for _ebp_o in "$(stat -c %u "$_ebp_c" 2>/dev/null)" "$(stat -c %u "${_ebp_c%/*}" 2>/dev/null)"; do
					if [ "$_ebp_o" = "$_ebp_uid" ]; then
						_ebp_mine=1
					fi
				done
			fi
			for _ebp_d in "$@"; do
				case $_ebp_c in "$_ebp_d"/*) _ebp_mine=1 ;; esac
			done
			if [ -n "$_ebp_mine" ]; then
				ebp_kill_cgroup "$_ebp_c"
			fi
		done
	return 0
}

# ebp_remove_cgroup DIR: moves processes still in DIR that are not in a
# container (the user's own, e.g. a running desktop app) to the root of the
# hierarchy, then removes DIR and every directory below it, deepest first,
# with rmdir only (killed processes take a moment to leave), then DIR's
# parent if it is setup's "ebrainpool" directory and now empty.
ebp_remove_cgroup() {
	_ebp_top=${1%/*}
	_ebp_top=${_ebp_top%/*}
	find "$1" -name cgroup.procs -type f 2>/dev/null | while IFS= read -r _ebp_p; do
		case $_ebp_p in */lxc.*) continue ;; esac
		[ -f "$_ebp_top/cgroup.procs" ] || continue
		for _ebp_pid in $(cat "$_ebp_p" 2>/dev/null); do
			echo "$_ebp_pid" >"$_ebp_top/cgroup.procs" 2>/dev/null || :
		done
	done
	# Waiting for processes to leave ends at the deadline (seconds since
	# the epoch) ebp_purge sets, or 5 s from now.
	_ebp_deadline=${_ebp_deadline:-$(($(date +%s) + 5))}
	find "$1" -depth -type d 2>/dev/null | while IFS= read -r _ebp_d; do
		until rmdir "$_ebp_d" 2>/dev/null || [ ! -d "$_ebp_d" ]; do
			if [ "$(date +%s)" -ge "$_ebp_deadline" ]; then
				ebp_warn "could not remove cgroup $_ebp_d (processes still in it?)"
				break
			fi
			sleep 0.1
		done
	done
	case ${1%/*} in
	*/ebrainpool) rmdir "${1%/*}" 2>/dev/null || : ;;
	esac
}

# ebp_mounts_below DIR: mount points below DIR (from /proc/self/mountinfo),
# deepest first.
ebp_mounts_below() {
	[ -r /proc/self/mountinfo ] || return 0
	while read -r _ebp_a _ebp_b _ebp_c _ebp_d _ebp_mp _ebp_rest; do
		case $_ebp_mp in "$1"/*) echo "$_ebp_mp" ;; esac
	done </proc/self/mountinfo | sort -r
}

# ebp_remove_state STATEDIR: removes STATEDIR (/var/lib/ebrainpool) with all
# users' sandboxes, never through a mount point: mounts left below it are
# unmounted first, and if one stays the directory is left with a warning.
ebp_remove_state() {
	[ -e "$1" ] || return 0
	for _ebp_mp in $(ebp_mounts_below "$1"); do
		umount -l "$_ebp_mp" 2>/dev/null || :
	done
	if [ -n "$(ebp_mounts_below "$1")" ]; then
		ebp_warn "$1 is left in place: something is mounted below it"
		return 0
	fi
	rm -rf --one-file-system "$1" || ebp_warn "could not remove $1"
}

# ebp_purge STATEDIR SUBUID SUBGID CGROOT: undoes every user's setup (what
# its record says setup did) and removes STATEDIR: for each record, kills
# the user's sandboxes, removes the id ranges setup added and the cgroup
# directories it made.
ebp_purge() {
	_ebp_state=$1 _ebp_subuid=$2 _ebp_subgid=$3 _ebp_cg=$4
	# Killed processes get 10 s in all to leave their cgroups.
	_ebp_deadline=$(($(date +%s) + 10))
	for _ebp_user in $(ebp_setup_users "$_ebp_state"); do
		_ebp_rec=$_ebp_state/.setup-$_ebp_user.json
		_ebp_parsed=$(ebp_parse_record "$_ebp_rec") || :
		_ebp_ru=$(echo "$_ebp_parsed" | sed -n 's/^user //p')
		if [ -n "$_ebp_ru" ] && [ "$_ebp_ru" != "$_ebp_user" ]; then
			ebp_warn "$_ebp_rec is for user $_ebp_ru, not $_ebp_user: skipped"
			continue
		fi
		_ebp_dirs=$(echo "$_ebp_parsed" | sed -n 's/^cgroup //p')
		# Cgroup paths never contain newlines; they may contain commas
		# and, in theory, spaces.
		_ebp_ifs=$IFS
		IFS='
'
		_ebp_safe=
		for _ebp_d in $_ebp_dirs; do
			if ebp_safe_cgroup "$_ebp_cg" "$_ebp_d"; then
				_ebp_safe="$_ebp_safe$_ebp_d
"
			fi
		done
		# shellcheck disable=SC2086 # one argument per line
		ebp_kill_sandboxes "$_ebp_cg" "$_ebp_user" $_ebp_safe
		for _ebp_d in $_ebp_safe; do
			ebp_remove_cgroup "$_ebp_d"
		done
		IFS=$_ebp_ifs
		echo "$_ebp_parsed" | while read -r _ebp_kind _ebp_start _ebp_count; do
			case $_ebp_kind in
			subuid) ebp_remove_subid "$_ebp_subuid" "$_ebp_user" "$_ebp_start" "$_ebp_count" ;;
			subgid) ebp_remove_subid "$_ebp_subgid" "$_ebp_user" "$_ebp_start" "$_ebp_count" ;;
			esac
		done
		echo "ebrainpool: removed the setup of $_ebp_user"
	done
	ebp_remove_state "$_ebp_state"
}

# ebp_apparmor_enabled: whether AppArmor is enabled in the kernel.
ebp_apparmor_enabled() {
	if command -v aa-enabled >/dev/null 2>&1; then
		aa-enabled -q 2>/dev/null
		return
	fi
	[ "$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)" = Y ]
}

# ebp_apparmor_install SRC ETCDIR: copies the profile SRC to ETCDIR
# (/etc/apparmor.d) where the system's AppArmor knows ABI 4.0 (Ubuntu 23.10
# and later; Debian 12's 3.0 would fail to parse it) and loads it when
# AppArmor is enabled. Never fails.
ebp_apparmor_install() {
	[ -f "$1" ] && [ -e "$2/abi/4.0" ] || return 0
	_ebp_dst=$2/${1##*/}
	if ! cmp -s "$1" "$_ebp_dst"; then
		if ! { cp "$1" "$_ebp_dst.dpkg-new" && mv -f "$_ebp_dst.dpkg-new" "$_ebp_dst"; }; then
			ebp_warn "could not install the AppArmor profile $_ebp_dst"
			rm -f "$_ebp_dst.dpkg-new"
			return 0
		fi
	fi
	if ebp_apparmor_enabled && command -v apparmor_parser >/dev/null 2>&1; then
		apparmor_parser -r -W "$_ebp_dst" ||
			ebp_warn "could not load the AppArmor profile $_ebp_dst; sandboxes may not start while kernel.apparmor_restrict_unprivileged_userns=1"
	fi
	return 0
}

# ebp_apparmor_remove MODE FILE SHA256 [CACHEDIR]: unloads the profile FILE
# (/etc/apparmor.d/ebrainpool) and deletes it, with its compiled copies in
# CACHEDIR (/var/cache/apparmor), on purge, or on remove if it is the one
# the package installed (SHA256), i.e. not changed locally.
ebp_apparmor_remove() {
	[ -f "$2" ] || return 0
	if ebp_apparmor_enabled && command -v apparmor_parser >/dev/null 2>&1; then
		apparmor_parser -R "$2" >/dev/null 2>&1 || :
	fi
	_ebp_sum=$(sha256sum <"$2" 2>/dev/null) || _ebp_sum=
	if [ "$1" = purge ] || [ "${_ebp_sum%% *}" = "$3" ]; then
		rm -f "$2"
		if [ -n "$4" ]; then
			rm -f "$4"/*/"${2##*/}"
		fi
	fi
	return 0
}
