#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# kubia benchmark: every target of the project measured side by side in one run, against
# nginx, a model of the book's Node.js app (the reference) and the fsync bound of the
# volume; one table of medians, ratios and verdicts. See test/bench/README.md.
#
#   1. start to ready and SIGTERM to exit (and idle VmRSS), kubia and the reference
#   2. GET /data: kubia, nginx, the reference
#   3. POST of each size at 1 and 32 clients: kubia, the reference, the fsync bound
#   4. the cluster view (GET /): 3 pods (kubia, kubia without DNS cache, the reference,
#      and the same kubia's GET /data under the same load), and kubia with more pods
#      (30 and 300)
#   VmRSS is sampled during every load.
#
# Needs (Debian packages): wrk, nginx-light (or any nginx), nodejs, dnsmasq-base, curl,
# python3, gcc. Run as root, missing ones are installed with apt-get; otherwise the
# script says which are missing and exits 77 (skipped).
#
# Settings (environment); the profile sets the defaults of the ones marked *:
#   BENCH_PROFILE        full (default; about 6 minutes) or smoke (CI: under a minute,
#                        1 s runs, 1 round, 30 pods, and any wrk error or answer of the
#                        wrong size from kubia or nginx fails the run)
#   BENCH_KUBIA          kubia binary                    (default: <repo>/build/kubia)
#   BENCH_BINARY_WAIT    seconds to wait for the binary to appear   (default: 0)
#   BENCH_TMPDIR         where the run's directory goes; the volume of every data file
#                        and of the fsync bound           (default: $TMPDIR or /tmp)
#   BENCH_SECS*          seconds per wrk run                      (full 5, smoke 1)
#   BENCH_ROUNDS*        interleaved rounds, GET /data            (full 5, smoke 1)
#   BENCH_POST_ROUNDS*   interleaved rounds, POST                 (full 3, smoke 1)
#   BENCH_CLUSTER_ROUNDS* interleaved rounds, cluster view        (full 3, smoke 1)
#   BENCH_WARMUP_SECS*   untimed wrk run per contender first      (full 1, smoke 0)
#   BENCH_VIEW_PODS*     cluster sizes measured besides 3 pods    (full "30 300", smoke 30)
#   BENCH_START_RUNS*    start/stop runs of each server           (full 20, smoke 5)
#   BENCH_STRICT*        1: a wrk error or an answer of the wrong size from kubia or
#                        nginx fails the run; 0: reported only  (full 0, smoke 1)
#   BENCH_POST_SIZES     POST body sizes in bytes                 (default: "100 65536")
#   BENCH_THREADS        kubia --threads and nginx worker_processes (default: nproc)
#   BENCH_BODY_BYTES     size of the data of GET /data            (default: 64)
#   BENCH_WRK_THREADS    wrk -t (at most the connections)         (default: 2)
#   BENCH_CONNS          wrk -c for GET /data                     (default: 64)
#   BENCH_CLUSTER_CONNS  wrk -c for the cluster view              (default: 16)
#   BENCH_NGINX_SENDFILE nginx sendfile on|off (default: on; off is ~10% faster for 64 B)
#   BENCH_DNS_TTL        TTL of the fake cluster DNS records, s   (default: 5, CoreDNS's)
#   BENCH_SECTIONS       the parts to run (default: "startstop data post views"; the
#                        table says "no data" for the targets of the others)
#   BENCH_OUT            also write the final table to this file
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
REFERENCE_JS="$SCRIPT_DIR/reference/kubia-pet-peers.js"
# shellcheck source=lib.sh
source "$SCRIPT_DIR/lib.sh"

PROFILE=${BENCH_PROFILE:-full}
case $PROFILE in
full) p=(5 5 3 3 1 "30 300" 20 0) ;;
smoke) p=(1 1 1 1 0 30 5 1) ;;
*) die "BENCH_PROFILE must be full or smoke, got '$PROFILE'" ;;
esac
KUBIA=${BENCH_KUBIA:-$REPO_ROOT/build/kubia}
BINARY_WAIT=${BENCH_BINARY_WAIT:-0}
SECS=${BENCH_SECS:-${p[0]}}
ROUNDS=${BENCH_ROUNDS:-${p[1]}}
POST_ROUNDS=${BENCH_POST_ROUNDS:-${p[2]}}
CLUSTER_ROUNDS=${BENCH_CLUSTER_ROUNDS:-${p[3]}}
WARMUP_SECS=${BENCH_WARMUP_SECS:-${p[4]}}
read -r -a VIEW_PODS <<<"${BENCH_VIEW_PODS-${p[5]}}"
START_RUNS=${BENCH_START_RUNS:-${p[6]}}
STRICT=${BENCH_STRICT:-${p[7]}}
read -r -a POST_SIZES <<<"${BENCH_POST_SIZES:-100 65536}"
read -r -a SECTIONS <<<"${BENCH_SECTIONS:-startstop data post views}"
NPROC=$(nproc)
THREADS=${BENCH_THREADS:-$NPROC}
BODY_BYTES=${BENCH_BODY_BYTES:-64}
WRK_THREADS=${BENCH_WRK_THREADS:-2}
CONNS=${BENCH_CONNS:-64}
CLUSTER_CONNS=${BENCH_CLUSTER_CONNS:-16}
DNS_TTL=${BENCH_DNS_TTL:-5}
NGINX_SENDFILE=${BENCH_NGINX_SENDFILE:-on}
OUT=${BENCH_OUT:-}
START_DEADLINE=15   # seconds a server gets to become ready
CLUSTER_DEADLINE=90 # seconds all the pods of the clusters get to become ready
IDLE_MS=50          # idle time between ready and SIGTERM in the start/stop runs
POST_CLIENTS=(1 32)
DNSMASQ_MAX_PODS=200 # larger clusters get srvdns.py (see there why)
SERVICE=kubia.default.svc.cluster.local

for v in SECS ROUNDS POST_ROUNDS CLUSTER_ROUNDS WARMUP_SECS START_RUNS STRICT THREADS \
	BODY_BYTES WRK_THREADS CONNS CLUSTER_CONNS DNS_TTL BINARY_WAIT; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "BENCH_$v must be a whole number, got '${!v}'"
done
for v in "${VIEW_PODS[@]}" "${POST_SIZES[@]}"; do
	[[ $v =~ ^[0-9]+$ ]] || die "BENCH_VIEW_PODS and BENCH_POST_SIZES take whole numbers, got '$v'"
done
for v in "${SECTIONS[@]}"; do
	[[ $v =~ ^(startstop|data|post|views)$ ]] ||
		die "BENCH_SECTIONS: startstop, data, post or views, got '$v'"
done
for v in "${VIEW_PODS[@]}"; do
	((v >= 4 && v <= 1000)) || die "BENCH_VIEW_PODS: from 4 to 1000 pods, got $v"
done
[[ $NGINX_SENDFILE == on || $NGINX_SENDFILE == off ]] ||
	die "BENCH_NGINX_SENDFILE must be on or off, got '$NGINX_SENDFILE'"
((SECS >= 1 && ROUNDS >= 1 && POST_ROUNDS >= 1 && CLUSTER_ROUNDS >= 1 && THREADS >= 1 &&
	START_RUNS >= 1 && WRK_THREADS >= 1)) ||
	die "seconds, rounds, runs and threads must be at least 1"
# Everything here is on loopback: a proxy from the environment must not get in the way.
unset http_proxy HTTP_PROXY https_proxy HTTPS_PROXY all_proxy ALL_PROXY

# ---------------------------------------------------------------- tools
ensure_tools() {
	local -A pkg_of=([wrk]=wrk [nginx]=nginx-light [node]=nodejs [dnsmasq]=dnsmasq-base
		[curl]=curl [python3]=python3 [cc]=gcc)
	local missing=() tool
	for tool in wrk nginx node dnsmasq curl python3 cc; do
		command -v "$tool" >/dev/null 2>&1 || [[ -x /usr/sbin/$tool ]] ||
			missing+=("${pkg_of[$tool]}")
	done
	((${#missing[@]} == 0)) && return 0
	if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
		log "installing missing packages: ${missing[*]}"
		if DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y \
			--no-install-recommends "${missing[@]}" >&2; then
			return 0
		fi
		log "apt-get install ${missing[*]} failed"
	fi
	log "SKIPPED: missing packages: ${missing[*]} (install them, or run as root)"
	exit 77
}
ensure_tools
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
DNSMASQ=$(command -v dnsmasq || echo /usr/sbin/dnsmasq)
PYTHON=/usr/bin/python3
[[ -x $PYTHON ]] || PYTHON=$(command -v python3)
BENCHCTL=("$PYTHON" "$SCRIPT_DIR/benchctl.py")

deadline=$((SECONDS + BINARY_WAIT))
until [[ -x $KUBIA ]]; do
	((SECONDS < deadline)) || die "kubia binary not found at $KUBIA (set BENCH_KUBIA)"
	sleep 2
done
[[ -f $REFERENCE_JS ]] || die "reference model missing: $REFERENCE_JS"

# Limits: each kubia has --threads + 2 threads, one kubia per pod; the largest cluster's
# kubia-0 holds a connection to every peer for each view in flight.
max_pods=3
for v in "${VIEW_PODS[@]}"; do
	((v <= max_pods)) || max_pods=$v
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [[ $(ulimit -n) != unlimited ]] && (($(ulimit -n) < CLUSTER_CONNS * max_pods + 256)); then
	log "warning: open files limited to $(ulimit -n); views of $max_pods pods may run out"
fi
if [[ $(ulimit -u) != unlimited ]] &&
	(($(ulimit -u) < (max_pods + 8) * (THREADS + 2) + 200)); then
	log "warning: processes limited to $(ulimit -u); $max_pods pods may not all start"
fi

TMP=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/kubia-bench.XXXXXX")
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
VOL=$TMP/vol # every data file, and the fsync bound's, on this one file system
mkdir -p "$TMP/logs" "$TMP/bin" "$VOL"
chmod 755 "$TMP"
VOL_FS=$(df --output=fstype "$VOL" | tail -n 1)
RUNS=$TMP/runs.tsv
STARTSTOP=$TMP/startstop.tsv
: >"$RUNS"
: >"$STARTSTOP"

for helper in fsync_bound startstop; do
	cc -std=c11 -O2 -Wall -Wextra -o "$TMP/bin/$helper" "$SCRIPT_DIR/$helper.c" ||
		die "cannot compile $helper.c"
done

# free_ports N: sets PORTS to N distinct free ports.
free_ports() {
	mapfile -t PORTS < <("${BENCHCTL[@]}" ports "$1") || die "no free ports"
	((${#PORTS[@]} == $1)) || die "could not find $1 free ports"
}

# wait_ready SECS PID URL...: every URL answers 200, or the run stops.
wait_ready() {
	"${BENCHCTL[@]}" wait-ready "$@" || {
		local pid
		for pid in "${PIDS[@]}"; do
			is_running "$pid" || tail -n 20 "${LOG_OF[${NAME_OF[$pid]}]}" >&2 || true
		done
		die "servers not ready"
	}
}

# check_data BASE FILE SECS: GET BASE/data returns FILE's bytes, within SECS (the
# reference acknowledges a POST before the body is on disk).
check_data() {
	local base=$1 file=$2 deadline=$((SECONDS + $3))
	until curl -sf --max-time 5 "$base/data" | cmp -s - "$file"; do
		((SECONDS < deadline)) || die "GET $base/data does not return the data posted"
		sleep 0.1
	done
}

# post_data BASE FILE: store FILE's bytes and check them.
post_data() {
	curl -sf --max-time 5 --data-binary "@$2" -H 'Content-Type: application/octet-stream' \
		"$1/" >/dev/null || die "POST to $1 failed"
	check_data "$1" "$2" 10
}

# ---------------------------------------------------------------- measuring
# record LOAD WHO REQ DURATION_US P50 P99 ERRORS PEAK_RSS SIZE_CHECK
record() {
	local rps
	rps=$(awk -v r="$3" -v d="$4" 'BEGIN { printf "%.1f", (d > 0 ? r * 1e6 / d : 0) }')
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$rps" "$5" "$6" "$7" "$8" "$9" \
		>>"$RUNS"
	local rss=""
	[[ $8 == 0 ]] || rss=", VmRSS peak $8 kiB"
	log "  $1 $2: $rps req/s, p50 $5 us, p99 $6 us$rss"
}

# run_wrk LOAD WHO CONNS URL POST_BYTES SIZE RSS_PIDS [ALIVE_PID...]
#   One wrk run of SECS (LOAD "warmup": WARMUP_SECS, not recorded). POST_BYTES 0 means
#   GET. SIZE is the exact size of one whole answer, or '-' (not checked). RSS_PIDS:
#   space-separated PIDs whose summed VmRSS is sampled every 0.1 s during the run, the
#   peak recorded; '' for none. The ALIVE_PIDs must still run afterwards.
run_wrk() {
	local load=$1 who=$2 conns=$3 url=$4 post=$5 size=$6 rsspids=$7
	shift 7
	local secs=$SECS threads=$WRK_THREADS rc=0 peak=0 line wpid check=- env=()
	[[ $load == warmup ]] && secs=$WARMUP_SECS
	((threads <= conns)) || threads=$conns
	((post == 0)) || env=(BENCH_POST_BYTES="$post")
	start wrk env "${env[@]}" timeout $((secs + 30)) wrk -t"$threads" -c"$conns" \
		-d"${secs}s" --timeout 5s --latency -s "$SCRIPT_DIR/wrk.lua" "$url"
	wpid=$LAST_PID
	while is_running "$wpid"; do
		if [[ -n $rsspids ]]; then
			# shellcheck disable=SC2086 # a list of PIDs
			rss_sum $rsspids
			((RSS_SUM <= peak)) || peak=$RSS_SUM
		fi
		sleep 0.1
	done
	wait "$wpid" || rc=$?
	forget "$wpid"
	((rc == 0)) || die "wrk against $who ($url) failed: $(tail -n 5 "$TMP/logs/wrk.log")"
	check_alive "$@"
	line=$(grep '^BENCHRESULT ' "$TMP/logs/wrk.log" | tail -n 1) ||
		die "no result from wrk: $(cat "$TMP/logs/wrk.log")"
	local req dur p50 p99 ec er ew es et bytes
	read -r _ req dur p50 p99 ec er ew es et bytes <<<"$line"
	local errors=$((ec + er + ew + es + et))
	if [[ $size != - ]] && ((req > 0)); then
		# Answers in flight when wrk stops may add bytes, never remove them.
		check=ok
		((bytes >= req * size && bytes <= (req + conns) * size)) || check=bad
	fi
	if ((errors > 0)) || [[ $check == bad ]]; then
		local what="$load $who: $errors wrk errors (connect $ec, read $er, write $ew,"
		what+=" non-2xx $es, timeout $et); $bytes bytes for $req answers of $size bytes"
		if ((STRICT)) && [[ $who == kubia* || $who == nginx ]]; then
			die "$what"
		fi
		log "warning: $what"
	fi
	[[ $load == warmup ]] && return 0
	record "$load" "$who" "$req" "$dur" "$p50" "$p99" "$errors" "$peak" "$check"
}

# run_fsync LOAD BYTES: the fsync bound, one run of SECS.
run_fsync() {
	local rc=0 line
	mkdir -p "$VOL/fsync"
	start fsync "$TMP/bin/fsync_bound" "$VOL/fsync" "$2" "$SECS"
	wait "$LAST_PID" || rc=$?
	forget "$LAST_PID"
	((rc == 0)) || die "fsync_bound failed: $(cat "$TMP/logs/fsync.log")"
	line=$(grep '^BENCHRESULT ' "$TMP/logs/fsync.log") || die "no result from fsync_bound"
	local req dur p50 p99
	read -r _ req dur p50 p99 _ <<<"$line"
	record "$1" fsync "$req" "$dur" "$p50" "$p99" 0 0 -
}

# ---------------------------------------------------------------- 1. start and stop
section_startstop() {
	log "start to ready, SIGTERM to exit: $START_RUNS runs each, alternating"
	local r rc line ports
	free_ports 2
	ports=("${PORTS[@]}")
	mkdir -p "$VOL/start-kubia"
	printf 'data of pod 0' >"$VOL/start-kubia/kubia.txt"
	printf 'data of pod 0' >"$VOL/start-node.txt"
	for ((r = 0; r < START_RUNS; r++)); do
		start startstop-kubia "$TMP/bin/startstop" "${ports[0]}" /readyz "$IDLE_MS" \
			"$TMP/logs/start-kubia.log" -- "$KUBIA" --port "${ports[0]}" \
			--data-file "$VOL/start-kubia/kubia.txt" --hostname kubia-0 \
			--service "$SERVICE." --dns-server "127.0.0.1:${ports[1]}" \
			--resolv-conf "$TMP/resolv.conf" --threads "$THREADS" --log-level warn
		collect_startstop kubia
		start startstop-node env KUBIA_REF_PORT="${ports[1]}" KUBIA_REF_HOST=127.0.0.1 \
			KUBIA_REF_DATA_FILE="$VOL/start-node.txt" KUBIA_REF_HOSTNAME=kubia-0 \
			KUBIA_REF_MODE=pet "$TMP/bin/startstop" "${ports[1]}" /data "$IDLE_MS" \
			"$TMP/logs/start-node.log" -- node "$REFERENCE_JS"
		collect_startstop node
	done
}

collect_startstop() { # collect_startstop WHO: wait for the helper, record its line
	local rc=0 line log=$TMP/logs/startstop-$1.log
	wait "$LAST_PID" || rc=$?
	forget "$LAST_PID"
	if ((rc != 0)); then
		tail -n 20 "$TMP/logs/start-$1.log" >&2 || true
		die "start/stop of $1 failed: $(cat "$log")"
	fi
	line=$(grep '^STARTSTOP ' "$log") || die "no result from startstop: $(cat "$log")"
	local ready gone rss status
	read -r _ ready gone rss status <<<"$line"
	[[ $1 != kubia || $status == exit:0 ]] || die "kubia ended with $status after SIGTERM"
	printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$ready" "$gone" "$rss" "$status" >>"$STARTSTOP"
}

# ---------------------------------------------------------------- 2. GET /data
section_data() {
	log "GET /data: wrk -t$WRK_THREADS -c$CONNS -d${SECS}s; $ROUNDS rounds;" \
		"body $BODY_BYTES bytes"
	free_ports 3
	# NGINX_PORT is also write_nginx_conf's (bash's dynamic scope).
	local KUBIA_PET_PORT=${PORTS[0]} NGINX_PORT=${PORTS[1]} NODE_PET_PORT=${PORTS[2]}
	local KUBIA_PET_PID NGINX_PID NODE_PET_PID
	mkdir -p "$VOL/kubia-pet" "$TMP/www" "$TMP/nginx"
	head -c "$BODY_BYTES" /dev/zero | tr '\0' 'k' >"$TMP/body"
	cp "$TMP/body" "$TMP/www/data"
	chmod 755 "$TMP/www"
	chmod 644 "$TMP/www/data"

	start kubia-pet "$KUBIA" --port "$KUBIA_PET_PORT" --data-file "$VOL/kubia-pet/kubia.txt" \
		--mode pet --hostname kubia-0 --threads "$THREADS" --log-level warn
	KUBIA_PET_PID=$LAST_PID
	write_nginx_conf
	start nginx "$NGINX" -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf"
	NGINX_PID=$LAST_PID
	start node-pet env KUBIA_REF_PORT="$NODE_PET_PORT" KUBIA_REF_HOST=127.0.0.1 \
		KUBIA_REF_DATA_FILE="$VOL/node-pet.txt" KUBIA_REF_HOSTNAME=kubia-0 \
		KUBIA_REF_MODE=pet node "$REFERENCE_JS"
	NODE_PET_PID=$LAST_PID
	wait_ready "$START_DEADLINE" "$KUBIA_PET_PID" "http://127.0.0.1:$KUBIA_PET_PORT/readyz" \
		"$NGINX_PID" "http://127.0.0.1:$NGINX_PORT/data" \
		"$NODE_PET_PID" "http://127.0.0.1:$NODE_PET_PORT/data"
	post_data "http://127.0.0.1:$KUBIA_PET_PORT" "$TMP/body"
	post_data "http://127.0.0.1:$NODE_PET_PORT" "$TMP/body"
	check_data "http://127.0.0.1:$NGINX_PORT" "$TMP/body" 0

	local -A url=([kubia]="http://127.0.0.1:$KUBIA_PET_PORT/data"
		[nginx]="http://127.0.0.1:$NGINX_PORT/data" [node]="http://127.0.0.1:$NODE_PET_PORT/data")
	local -A rss=([kubia]=$KUBIA_PET_PID [node]=$NODE_PET_PID
		[nginx]="$NGINX_PID $(ps -o pid= --ppid "$NGINX_PID" | tr '\n' ' ')")
	local -A size=()
	local s r i servers=(kubia nginx node)
	for s in "${servers[@]}"; do
		size[$s]=$("${BENCHCTL[@]}" response-size "${url[$s]}") || die "GET ${url[$s]} failed"
	done
	local alive=("$KUBIA_PET_PID" "$NGINX_PID" "$NODE_PET_PID")
	if ((WARMUP_SECS > 0)); then
		for s in "${servers[@]}"; do
			run_wrk warmup "$s" "$CONNS" "${url[$s]}" 0 "${size[$s]}" "" "${alive[@]}"
		done
	fi
	# Interleaved, who goes first rotating, so that drift and noise hit all alike.
	for ((r = 0; r < ROUNDS; r++)); do
		log "GET /data round $((r + 1))/$ROUNDS"
		for ((i = 0; i < 3; i++)); do
			s=${servers[$(((r + i) % 3))]}
			run_wrk data "$s" "$CONNS" "${url[$s]}" 0 "${size[$s]}" "${rss[$s]}" "${alive[@]}"
		done
	done
	for s in "${servers[@]}"; do
		check_data "${url[$s]%/data}" "$TMP/body" 0
	done
	stop "${alive[@]}"
}

write_nginx_conf() {
	local user_line=""
	[[ $EUID -eq 0 ]] && user_line="user root;"
	cat >"$TMP/nginx/nginx.conf" <<-EOF
		# Generated by test/bench/bench.sh: a static file served the fastest usual way.
		$user_line
		daemon off;
		master_process on;
		worker_processes $THREADS;
		pid $TMP/nginx/nginx.pid;
		error_log $TMP/nginx/error.log warn;
		events {
			worker_connections 4096;
			use epoll;
		}
		http {
			access_log off;
			server_tokens off;
			sendfile $NGINX_SENDFILE;
			tcp_nopush on;
			tcp_nodelay on;
			keepalive_timeout 65s;
			keepalive_requests 10000000;
			open_file_cache max=64 inactive=60s;
			open_file_cache_valid 60s;
			open_file_cache_min_uses 1;
			open_file_cache_errors on;
			client_body_temp_path $TMP/nginx/client_body;
			proxy_temp_path $TMP/nginx/proxy;
			fastcgi_temp_path $TMP/nginx/fastcgi;
			uwsgi_temp_path $TMP/nginx/uwsgi;
			scgi_temp_path $TMP/nginx/scgi;
			types {}
			default_type "text/plain; charset=utf-8";
			server {
				listen 127.0.0.1:$NGINX_PORT reuseport backlog=1024;
				root $TMP/www;
				location = /data {}
				location / { return 404; }
			}
		}
	EOF
}

# ---------------------------------------------------------------- 3. POST
# Each load has its own kubia and its own reference, so that the VmRSS under a load is
# that load's: a process keeps the memory an earlier, heavier load made it take.
section_post() {
	log "POST: ${POST_SIZES[*]} bytes at ${POST_CLIENTS[*]} clients; $POST_ROUNDS rounds;" \
		"volume $VOL_FS"
	local -A url=() pid=() size=()
	local list=() alive=() ready=() s b c r i n who load key
	free_ports $((2 * ${#POST_SIZES[@]} * ${#POST_CLIENTS[@]}))
	local ports=("${PORTS[@]}")
	for b in "${POST_SIZES[@]}"; do
		head -c "$b" /dev/zero | tr '\0' 'p' >"$TMP/post-$b"
		list+=("post-$b-c1/fsync")
		for c in "${POST_CLIENTS[@]}"; do
			load=post-$b-c$c
			list+=("$load/kubia" "$load/node")
			url[$load/kubia]="http://127.0.0.1:${ports[0]}/"
			url[$load/node]="http://127.0.0.1:${ports[1]}/"
			mkdir -p "$VOL/kubia-$load"
			start "kubia-$load" "$KUBIA" --port "${ports[0]}" --data-file \
				"$VOL/kubia-$load/kubia.txt" --mode pet --hostname kubia-0 \
				--threads "$THREADS" --log-level warn
			pid[$load/kubia]=$LAST_PID
			ready+=("$LAST_PID" "${url[$load/kubia]}readyz")
			start "node-$load" env KUBIA_REF_PORT="${ports[1]}" KUBIA_REF_HOST=127.0.0.1 \
				KUBIA_REF_DATA_FILE="$VOL/node-$load.txt" KUBIA_REF_HOSTNAME=kubia-0 \
				KUBIA_REF_MODE=pet node "$REFERENCE_JS"
			pid[$load/node]=$LAST_PID
			ready+=("$LAST_PID" "${url[$load/node]}data")
			ports=("${ports[@]:2}")
		done
	done
	alive=("${pid[@]}")
	wait_ready "$START_DEADLINE" "${ready[@]}"
	for key in "${!pid[@]}"; do
		b=${key#post-}
		b=${b%%-*}
		size[$key]=$("${BENCHCTL[@]}" response-size "${url[$key]}" "$b") ||
			die "POST to ${url[$key]} failed"
		check_data "${url[$key]%/}" "$TMP/post-$b" 10
		if ((WARMUP_SECS > 0)); then
			c=${key%/*}
			c=${c##*-c}
			run_wrk warmup "${key#*/}" "$c" "${url[$key]}" "$b" "${size[$key]}" "" "${alive[@]}"
			check_data "${url[$key]%/}" "$TMP/post-$b" 30
		fi
	done
	n=${#list[@]}
	for ((r = 0; r < POST_ROUNDS; r++)); do
		log "POST round $((r + 1))/$POST_ROUNDS"
		for ((i = 0; i < n; i++)); do
			key=${list[$(((r + i) % n))]}
			load=${key%/*}
			who=${key#*/}
			b=${load#post-}
			b=${b%-c*}
			c=${load##*-c}
			if [[ $who == fsync ]]; then
				run_fsync "$load" "$b"
				continue
			fi
			run_wrk "$load" "$who" "$c" "${url[$key]}" "$b" "${size[$key]}" "${pid[$key]}" \
				"${alive[@]}"
			# The stored data must be the body posted (the reference may still be writing).
			check_data "${url[$key]%/}" "$TMP/post-$b" 30
		done
	done
	stop "${alive[@]}"
}

# shellcheck source=views.sh
source "$SCRIPT_DIR/views.sh"

# ---------------------------------------------------------------- run
printf 'search default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n' \
	>"$TMP/resolv.conf"
log "kubia: $KUBIA; profile $PROFILE; nproc $NPROC; kubia --threads $THREADS;" \
	"volume: $VOL_FS; strict $STRICT"
started=$SECONDS
want() { [[ " ${SECTIONS[*]} " == *" $1 "* ]]; }
want startstop && section_startstop
want data && section_data
want post && section_post
want views && section_views

TABLE=$TMP/table.txt
sizes_csv=$(IFS=,; echo "${POST_SIZES[*]}")
pods_csv=$(IFS=,; echo "${VIEW_PODS[*]}")
table_rc=0
"$PYTHON" "$SCRIPT_DIR/table.py" "$RUNS" "$STARTSTOP" "$sizes_csv" "$pods_csv" >"$TABLE" ||
	table_rc=$?
((table_rc == 0 || table_rc == 3)) || die "could not make the table"
{
	echo
	echo "kubia benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -srm), nproc $NPROC," \
		"profile $PROFILE, $((SECONDS - started)) s"
	echo "Medians over interleaved rounds; ratios are kubia / the other, from this run."
	echo "GET /data: wrk -c$CONNS, ${SECS}s x $ROUNDS rounds, body $BODY_BYTES B; kubia --mode pet" \
		"--threads $THREADS; nginx worker_processes $THREADS (static file, sendfile" \
		"$NGINX_SENDFILE, open_file_cache); the reference is one Node.js process."
	echo "POST: ${SECS}s x $POST_ROUNDS rounds; kubia durable (fsync before 200), the reference" \
		"not; fsync bound = one writer: temp file, write, fsync, rename, directory fsync;" \
		"all data files on one $VOL_FS volume."
	echo "Cluster view GET /: wrk -c$CLUSTER_CONNS, ${SECS}s x $CLUSTER_ROUNDS rounds;" \
		"pods on loopback, cluster DNS TTL ${DNS_TTL}s (dnsmasq; srvdns.py above" \
		"$DNSMASQ_MAX_PODS pods); kubia caches SRV answers 1 s, the reference looks up per request."
	echo "VmRSS: peak of samples every 0.1 s during each load (nginx: master + workers;" \
		"views: the pod asked); idle and start/stop: median of $START_RUNS runs."
	echo
	cat "$TABLE"
} | tee "${OUT:-/dev/null}"
# Strict (smoke): every target must have been measured when every part ran. Times are
# never judged here.
if ((STRICT && table_rc == 3)) && ((${#SECTIONS[@]} == 4)); then
	die "some targets have no data (a load got no answer at all)"
fi
