# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# Process bookkeeping of bench.sh (sourced): every process the benchmark starts is
# recorded, checked, and stopped by its PID; nothing else is ever signalled. Expects TMP
# (the run's temporary directory) to be set before start() is called.

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "FAILED: $*"
	exit 1
}

PIDS=()
declare -A NAME_OF=() LOG_OF=()

# is_running PID: the process exists and is not a zombie (kill -0 succeeds on a zombie
# until it is reaped). Reads /proc without forking: it runs in sampling loops.
is_running() {
	local stat
	read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
	stat=${stat##*) }
	[[ ${stat:0:1} != Z && ${stat:0:1} != X ]]
}

# rss_sum PID...: sets RSS_SUM to the sum of their VmRSS in kiB (0 for ended ones).
rss_sum() {
	local pid key value _
	RSS_SUM=0
	for pid in "$@"; do
		while read -r key value _; do
			if [[ $key == VmRSS: ]]; then
				RSS_SUM=$((RSS_SUM + value))
				break
			fi
		done 2>/dev/null <"/proc/$pid/status" || true
	done
}

# stop PID...: SIGTERM, up to 3 s to exit, then SIGKILL; reap; forget the PIDs.
stop() {
	local pid i alive
	for pid in "$@"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for ((i = 0; i < 60; i++)); do
		alive=0
		for pid in "$@"; do
			if is_running "$pid"; then
				alive=1
				break
			fi
		done
		((alive)) || break
		sleep 0.05
	done
	for pid in "$@"; do
		if is_running "$pid"; then
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	done
	forget "$@"
}

forget() { # forget PID...: no longer ours to stop (exited and reaped)
	local -A gone=()
	local pid keep=()
	for pid in "$@"; do
		gone[$pid]=1
	done
	for pid in "${PIDS[@]}"; do
		[[ -n ${gone[$pid]:-} ]] || keep+=("$pid")
	done
	PIDS=("${keep[@]}")
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	((${#PIDS[@]} == 0)) || stop "${PIDS[@]}"
	[[ -z ${TMP:-} ]] || rm -rf "$TMP"
	exit "$rc"
}

# start NAME CMD...: run CMD in the background with its output in $TMP/logs/NAME.log;
# LAST_PID is its PID (bash execs a simple command in the child, so it is CMD's own).
start() {
	local name=$1
	shift
	"$@" >"$TMP/logs/$name.log" 2>&1 &
	LAST_PID=$!
	PIDS+=("$LAST_PID")
	NAME_OF[$LAST_PID]=$name
	LOG_OF[$name]=$TMP/logs/$name.log
}

# check_alive PID...: stop the benchmark when one of them has ended, with its log.
check_alive() {
	local pid
	for pid in "$@"; do
		if ! is_running "$pid"; then
			log "${NAME_OF[$pid]} (pid $pid) died; last lines of its log:"
			tail -n 20 "${LOG_OF[${NAME_OF[$pid]}]}" >&2 || true
			die "${NAME_OF[$pid]} is not running"
		fi
	done
}
