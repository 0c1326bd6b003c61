#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# kubia benchmark: GET /data throughput against nginx and the book's Node.js app (a
# reference model), memory, and the peers-mode cluster view (GET /).
# See test/bench/README.md.
#
# Needs (Debian packages): wrk, nginx-light (or any nginx), nodejs, dnsmasq-base, curl,
# python3. Run as root, missing ones are installed with apt-get; otherwise it stops.
#
# Settings (environment):
#   BENCH_KUBIA          kubia binary                    (default: <repo>/build/kubia)
#   BENCH_BINARY_WAIT    seconds to wait for the binary to appear   (default: 0)
#   BENCH_SECS           seconds per wrk run                        (default: 5)
#   BENCH_ROUNDS         interleaved rounds, GET /data              (default: 5)
#   BENCH_CLUSTER_ROUNDS interleaved rounds, cluster view GET /     (default: 3)
#   BENCH_WARMUP_SECS    untimed wrk run per server before the rounds (default: 1)
#   BENCH_THREADS        kubia --threads and nginx worker_processes (default: nproc)
#   BENCH_BODY_BYTES     size of the stored data                    (default: 64)
#   BENCH_WRK_THREADS    wrk -t                                     (default: 2)
#   BENCH_CONNS          wrk -c for GET /data                       (default: 64)
#   BENCH_CLUSTER_CONNS  wrk -c for the cluster view                (default: 16)
#   BENCH_NGINX_SENDFILE nginx sendfile on|off (default: on; off is ~10% faster for 64 B)
#   BENCH_DNS_TTL        TTL of the fake cluster DNS records, s     (default: 5, CoreDNS's)
#   BENCH_OUT            also write the final table to this file
# Default run: (3*5 + 4*3) wrk runs of 5 s plus warm-ups and start-up, about 2.5 minutes.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
REFERENCE_JS="$SCRIPT_DIR/reference/kubia-pet-peers.js"

KUBIA=${BENCH_KUBIA:-$REPO_ROOT/build/kubia}
BINARY_WAIT=${BENCH_BINARY_WAIT:-0}
SECS=${BENCH_SECS:-5}
ROUNDS=${BENCH_ROUNDS:-5}
CLUSTER_ROUNDS=${BENCH_CLUSTER_ROUNDS:-3}
WARMUP_SECS=${BENCH_WARMUP_SECS:-1}
NPROC=$(nproc)
THREADS=${BENCH_THREADS:-$NPROC}
BODY_BYTES=${BENCH_BODY_BYTES:-64}
WRK_THREADS=${BENCH_WRK_THREADS:-2}
CONNS=${BENCH_CONNS:-64}
CLUSTER_CONNS=${BENCH_CLUSTER_CONNS:-16}
DNS_TTL=${BENCH_DNS_TTL:-5}
NGINX_SENDFILE=${BENCH_NGINX_SENDFILE:-on}
OUT=${BENCH_OUT:-}
START_DEADLINE=15 # seconds a server gets to become ready
SERVICE=kubia.default.svc.cluster.local

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "FAILED: $*"
	exit 1
}

for v in SECS ROUNDS CLUSTER_ROUNDS WARMUP_SECS THREADS BODY_BYTES WRK_THREADS CONNS \
	CLUSTER_CONNS DNS_TTL BINARY_WAIT; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "BENCH_$v must be a whole number, got '${!v}'"
done
[[ $NGINX_SENDFILE == on || $NGINX_SENDFILE == off ]] ||
	die "BENCH_NGINX_SENDFILE must be on or off, got '$NGINX_SENDFILE'"
((SECS >= 1 && ROUNDS >= 1 && CLUSTER_ROUNDS >= 1 && THREADS >= 1)) ||
	die "BENCH_SECS, BENCH_ROUNDS, BENCH_CLUSTER_ROUNDS and BENCH_THREADS must be >= 1"

# ---------------------------------------------------------------- tools
ensure_tools() {
	local -A pkg_of=([wrk]=wrk [nginx]=nginx-light [node]=nodejs [dnsmasq]=dnsmasq-base
		[curl]=curl [python3]=python3)
	local missing=() tool
	for tool in wrk nginx node dnsmasq curl python3; do
		command -v "$tool" >/dev/null 2>&1 || [[ -x /usr/sbin/$tool ]] ||
			missing+=("${pkg_of[$tool]}")
	done
	((${#missing[@]} == 0)) && return 0
	if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
		log "installing missing packages: ${missing[*]}"
		DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y --no-install-recommends \
			"${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
	else
		die "missing packages: ${missing[*]} (install them, or run as root)"
	fi
}
ensure_tools
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
DNSMASQ=$(command -v dnsmasq || echo /usr/sbin/dnsmasq)
PYTHON=/usr/bin/python3
[[ -x $PYTHON ]] || PYTHON=$(command -v python3)

deadline=$((SECONDS + BINARY_WAIT))
until [[ -x $KUBIA ]]; do
	((SECONDS < deadline)) || die "kubia binary not found at $KUBIA (set BENCH_KUBIA)"
	sleep 2
done
[[ -f $REFERENCE_JS ]] || die "reference model missing: $REFERENCE_JS"

# ---------------------------------------------------------------- process bookkeeping
TMP=$(mktemp -d /tmp/kubia-bench.XXXXXX)
PIDS=()
declare -A NAME_OF=() LOG_OF=()

# A child that exited stays a zombie until reaped, and kill -0 still succeeds on it.
is_running() {
	local state
	state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
	[[ $state != Z* ]]
}

# stop PID...: SIGTERM, up to 3 s to exit, then SIGKILL; reap; forget the PIDs.
stop() {
	local pid i alive
	for pid in "$@"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for ((i = 0; i < 30; i++)); do
		alive=0
		for pid in "$@"; do
			is_running "$pid" && alive=1
		done
		((alive)) || break
		sleep 0.1
	done
	for pid in "$@"; do
		is_running "$pid" && kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null || true
	done
	forget "$@"
}

forget() { # forget PID...: no longer ours to stop (exited and reaped)
	local pid keep=()
	for pid in "${PIDS[@]}"; do
		[[ " $* " == *" $pid "* ]] || keep+=("$pid")
	done
	PIDS=("${keep[@]}")
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	((${#PIDS[@]} == 0)) || stop "${PIDS[@]}"
	rm -rf "$TMP"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CMD...: run CMD in the background with its output in $TMP/NAME.log.
# The PID is the command itself (bash execs a simple command in the child).
start() {
	local name=$1
	shift
	"$@" >"$TMP/$name.log" 2>&1 &
	local pid=$!
	PIDS+=("$pid")
	NAME_OF[$pid]=$name
	LOG_OF[$name]=$TMP/$name.log
	LAST_PID=$pid
}

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

# wait_http PID URL: poll URL until it answers 200, with a deadline; fail if PID dies.
wait_http() {
	local pid=$1 url=$2 code deadline=$((SECONDS + START_DEADLINE))
	while :; do
		check_alive "$pid"
		code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)
		[[ $code == 200 ]] && return 0
		((SECONDS < deadline)) || die "${NAME_OF[$pid]} not ready at $url after ${START_DEADLINE}s"
		sleep 0.1
	done
}

# Free ports: bound to port 0 on the wildcard address (so the port is free on every
# address, for TCP and UDP), never handing out the same one twice.
USED_PORTS=" "
free_port() {
	local p
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		p=$("$PYTHON" - <<-'EOF'
			import socket
			t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
			t.bind(("0.0.0.0", 0))
			port = t.getsockname()[1]
			u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
			u.bind(("0.0.0.0", port))
			try:
			    s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
			    s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
			    s6.bind(("::", port))
			except OSError as e:
			    if e.errno != 97:  # EAFNOSUPPORT: no IPv6 here, fine
			        raise
			print(port)
		EOF
		) || continue
		if [[ $USED_PORTS != *" $p "* ]]; then
			USED_PORTS+="$p "
			echo "$p"
			return 0
		fi
	done
	die "could not find a free port"
}

rss_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# Sum of a process's and its direct children's VmRSS/VmHWM (nginx master + workers).
rss_tree_kib() {
	local pid=$1 key=$2 total child
	total=$(rss_kib "$pid" "$key")
	for child in $(ps -o pid= --ppid "$pid"); do
		total=$((total + $(rss_kib "$child" "$key")))
	done
	echo "$total"
}

# ---------------------------------------------------------------- wrk
cat >"$TMP/report.lua" <<'EOF'
done = function(summary, latency, requests)
	local e = summary.errors
	io.write(string.format("BENCHRESULT %d %d %d %d %d %d %d %d %d\n",
		summary.requests, summary.duration,
		latency:percentile(50), latency:percentile(99),
		e.connect, e.read, e.write, e.status, e.timeout))
end
EOF
RESULTS=$TMP/results.tsv
: >"$RESULTS"

# run_wrk SECTION SERVER CONNS SECS URL PID...: one wrk run, appended to $RESULTS
# (section, server, req/s, p50 us, p99 us, errors). SECTION "warmup" is not recorded.
run_wrk() {
	local section=$1 server=$2 conns=$3 secs=$4 url=$5
	shift 5
	local line rc=0
	# In the background and waited for, so that an interrupt is handled at once.
	start wrk timeout $((secs + 30)) wrk -t"$WRK_THREADS" -c"$conns" -d"${secs}s" \
		--timeout 5s --latency -s "$TMP/report.lua" "$url"
	wait "$LAST_PID" || rc=$?
	forget "$LAST_PID"
	if ((rc != 0)); then
		cat "$TMP/wrk.log" >&2
		die "wrk against $server ($url) failed"
	fi
	check_alive "$@"
	line=$(grep '^BENCHRESULT ' "$TMP/wrk.log" | tail -n 1) ||
		die "no result from wrk: $(cat "$TMP/wrk.log")"
	read -r _ req dur p50 p99 ec er ew es et <<<"$line"
	local errors=$((ec + er + ew + es + et))
	if ((errors > 0)); then
		log "warning: $server: $errors errors (connect $ec, read $er, write $ew," \
			"non-2xx $es, timeout $et)"
	fi
	[[ $section == warmup ]] && return 0
	local rps
	rps=$(awk -v r="$req" -v d="$dur" 'BEGIN { printf "%.1f", (d > 0 ? r * 1e6 / d : 0) }')
	printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$section" "$server" "$rps" "$p50" "$p99" "$errors" \
		>>"$RESULTS"
	log "  $section $server: $rps req/s, p50 ${p50}us, p99 ${p99}us"
}

MEM=$TMP/memory.tsv
: >"$MEM"
record_mem() { # record_mem SERVER LABEL VmRSS_kib VmHWM_kib
	printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$MEM"
}

# ---------------------------------------------------------------- 1. GET /data
log "kubia: $KUBIA; nproc $NPROC; kubia --threads $THREADS; nginx worker_processes $THREADS"
log "wrk -t$WRK_THREADS -c$CONNS -d${SECS}s --latency; $ROUNDS rounds; body $BODY_BYTES bytes"

mkdir -p "$TMP/kubia-pet" "$TMP/node-pet" "$TMP/www" "$TMP/nginx"
head -c "$BODY_BYTES" /dev/zero | tr '\0' 'k' >"$TMP/body"
cp "$TMP/body" "$TMP/www/data"
chmod 755 "$TMP" "$TMP/www"
chmod 644 "$TMP/www/data"

KUBIA_PET_PORT=$(free_port)
NGINX_PORT=$(free_port)
NODE_PET_PORT=$(free_port)

start kubia-pet "$KUBIA" --port "$KUBIA_PET_PORT" --data-file "$TMP/kubia-pet/kubia.txt" \
	--mode pet --hostname kubia-0 --threads "$THREADS" --log-level warn
KUBIA_PET_PID=$LAST_PID

USER_LINE=""
[[ $EUID -eq 0 ]] && USER_LINE="user root;"
cat >"$TMP/nginx/nginx.conf" <<EOF
# Generated by test/bench/bench.sh: a static file served the fastest usual way.
$USER_LINE
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
start nginx "$NGINX" -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf"
NGINX_PID=$LAST_PID

start node-pet env KUBIA_REF_PORT="$NODE_PET_PORT" KUBIA_REF_HOST=127.0.0.1 \
	KUBIA_REF_DATA_FILE="$TMP/node-pet/kubia.txt" KUBIA_REF_HOSTNAME=kubia-0 \
	KUBIA_REF_MODE=pet node "$REFERENCE_JS"
NODE_PET_PID=$LAST_PID

wait_http "$KUBIA_PET_PID" "http://127.0.0.1:$KUBIA_PET_PORT/readyz"
wait_http "$NGINX_PID" "http://127.0.0.1:$NGINX_PORT/data"
wait_http "$NODE_PET_PID" "http://127.0.0.1:$NODE_PET_PORT/data"

# post_data URL FILE: store FILE's bytes, then wait (bounded) until GET URL/data returns
# them: the reference model answers the POST before the body is on disk.
post_data() {
	local base=$1 file=$2 deadline=$((SECONDS + 10))
	curl -sf --max-time 5 --data-binary "@$file" -H 'Content-Type: application/octet-stream' \
		"$base/" >/dev/null || die "POST to $base failed"
	until curl -sf --max-time 2 "$base/data" | cmp -s - "$file"; do
		((SECONDS < deadline)) || die "GET $base/data does not return what was posted"
		sleep 0.1
	done
}
post_data "http://127.0.0.1:$KUBIA_PET_PORT" "$TMP/body"
post_data "http://127.0.0.1:$NODE_PET_PORT" "$TMP/body"
curl -sf --max-time 2 "http://127.0.0.1:$NGINX_PORT/data" | cmp -s - "$TMP/body" ||
	die "nginx does not serve the body"

DATA_SERVERS=(kubia nginx node)
declare -A URL_OF=(
	[kubia]="http://127.0.0.1:$KUBIA_PET_PORT/data"
	[nginx]="http://127.0.0.1:$NGINX_PORT/data"
	[node]="http://127.0.0.1:$NODE_PET_PORT/data"
)
declare -A PID_OF=([kubia]=$KUBIA_PET_PID [nginx]=$NGINX_PID [node]=$NODE_PET_PID)

if ((WARMUP_SECS > 0)); then
	for s in "${DATA_SERVERS[@]}"; do
		run_wrk warmup "$s" "$CONNS" "$WARMUP_SECS" "${URL_OF[$s]}" "${PID_OF[$s]}"
	done
fi
# Interleave, rotating who goes first, so drift and noise hit every server alike.
for ((r = 0; r < ROUNDS; r++)); do
	log "GET /data round $((r + 1))/$ROUNDS"
	for ((i = 0; i < 3; i++)); do
		s=${DATA_SERVERS[$(((r + i) % 3))]}
		run_wrk data "$s" "$CONNS" "$SECS" "${URL_OF[$s]}" "${PID_OF[$s]}"
	done
done

# ---------------------------------------------------------------- 2. memory after load
record_mem kubia data "$(rss_kib "$KUBIA_PET_PID" VmRSS)" "$(rss_kib "$KUBIA_PET_PID" VmHWM)"
record_mem nginx data "$(rss_tree_kib "$NGINX_PID" VmRSS)" "$(rss_tree_kib "$NGINX_PID" VmHWM)"
record_mem node data "$(rss_kib "$NODE_PET_PID" VmRSS)" "$(rss_kib "$NODE_PET_PID" VmHWM)"

# Free the two cores for the cluster part.
stop "$KUBIA_PET_PID" "$NGINX_PID" "$NODE_PET_PID"

# ---------------------------------------------------------------- 3. cluster view
# Two fake cluster DNS servers (dnsmasq): one for the kubia cluster (three ports on
# 127.0.0.1, published in the SRV records), one for the reference model (one port on
# 127.0.0.1/.2/.3, since the original ignores the SRV port).
log "cluster view: wrk -t$WRK_THREADS -c$CLUSTER_CONNS -d${SECS}s; $CLUSTER_ROUNDS rounds"

KPORT=("$(free_port)" "$(free_port)" "$(free_port)" "$(free_port)")
NODE_PORT=$(free_port)
DNS_KUBIA_PORT=$(free_port)
DNS_NODE_PORT=$(free_port)

dnsmasq_args() { # dnsmasq_args PORT: the common part
	echo -k --conf-file=/dev/null --no-resolv --no-hosts --bind-interfaces \
		--listen-address=127.0.0.1 --port="$1" --pid-file= \
		--user="$(id -un)" --local=/cluster.local/ --local=// --local-ttl="$DNS_TTL" \
		--log-facility=-
}
dns_kubia=()
dns_node=()
for i in 0 1 2; do
	name=kubia-$i.kubia.default.svc.cluster.local
	dns_kubia+=(--srv-host="$SERVICE,$name,${KPORT[$i]},0,0" --host-record="$name,127.0.0.1")
	dns_node+=(--srv-host="$SERVICE,$name,$NODE_PORT,0,0" --host-record="$name,127.0.0.$((i + 1))")
done
# shellcheck disable=SC2046
start dns-kubia "$DNSMASQ" $(dnsmasq_args "$DNS_KUBIA_PORT") "${dns_kubia[@]}"
DNS_KUBIA_PID=$LAST_PID
# shellcheck disable=SC2046
start dns-node "$DNSMASQ" $(dnsmasq_args "$DNS_NODE_PORT") "${dns_node[@]}"
DNS_NODE_PID=$LAST_PID

printf 'search default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n' \
	>"$TMP/resolv.conf"

kubia_peer() { # kubia_peer NAME HOSTNAME PORT EXTRA...
	local name=$1 host=$2 port=$3
	shift 3
	mkdir -p "$TMP/$name"
	start "$name" "$KUBIA" --port "$port" --data-file "$TMP/$name/kubia.txt" --mode peers \
		--hostname "$host" --service "$SERVICE." --dns-server "127.0.0.1:$DNS_KUBIA_PORT" \
		--resolv-conf "$TMP/resolv.conf" --threads "$THREADS" --log-level warn "$@"
}
KPID=()
for i in 0 1 2; do
	kubia_peer "kubia-$i" "kubia-$i" "${KPORT[$i]}"
	KPID+=("$LAST_PID")
done
# Same pod name and data as kubia-0 but no SRV cache: the cost of a lookup per request,
# as the original pays it. It is not in DNS itself; it reads "its own" data locally.
kubia_peer kubia-0-nocache kubia-0 "${KPORT[3]}" --dns-cache-ms 0
KPID+=("$LAST_PID")

NPID=()
for i in 0 1 2; do
	mkdir -p "$TMP/node-$i"
	start "node-$i" env KUBIA_REF_PORT="$NODE_PORT" KUBIA_REF_HOST="127.0.0.$((i + 1))" \
		KUBIA_REF_DATA_FILE="$TMP/node-$i/kubia.txt" KUBIA_REF_HOSTNAME="kubia-$i" \
		KUBIA_REF_DNS_SERVER="127.0.0.1:$DNS_NODE_PORT" node "$REFERENCE_JS"
	NPID+=("$LAST_PID")
done

for i in 0 1 2 3; do
	wait_http "${KPID[$i]}" "http://127.0.0.1:${KPORT[$i]}/readyz"
done
for i in 0 1 2; do
	wait_http "${NPID[$i]}" "http://127.0.0.$((i + 1)):$NODE_PORT/data"
done
check_alive "$DNS_KUBIA_PID" "$DNS_NODE_PID"

for i in 0 1 2; do
	printf 'data of pod %d' "$i" >"$TMP/cluster-body-$i"
	post_data "http://127.0.0.1:${KPORT[$i]}" "$TMP/cluster-body-$i"
	post_data "http://127.0.0.$((i + 1)):$NODE_PORT" "$TMP/cluster-body-$i"
done
post_data "http://127.0.0.1:${KPORT[3]}" "$TMP/cluster-body-0"

# Check that every contender gives the book's answer (the reference in any order).
expected=$(printf "You've hit kubia-0\nData stored in the cluster:\n")
for i in 0 1 2; do
	expected+=$(printf '\n- kubia-%d.kubia.default.svc.cluster.local: data of pod %d' "$i" "$i")
done
sorted() { { head -n 2 <<<"$1"; tail -n +3 <<<"$1" | sort; }; }
for url in "http://127.0.0.1:${KPORT[0]}/" "http://127.0.0.1:${KPORT[3]}/" \
	"http://127.0.0.1:$NODE_PORT/"; do
	got=$(curl -sf --max-time 10 "$url") || die "GET $url failed"
	if [[ $(sorted "$got") != "$expected" ]]; then
		log "GET $url gave:"
		printf '%s\n' "$got" >&2
		log "expected (peer lines in any order):"
		printf '%s\n' "$expected" >&2
		die "wrong cluster view from $url"
	fi
done

CLUSTER_SERVERS=(kubia kubia-nocache node)
declare -A CURL_OF=(
	[kubia]="http://127.0.0.1:${KPORT[0]}/"
	[kubia-nocache]="http://127.0.0.1:${KPORT[3]}/"
	[node]="http://127.0.0.1:$NODE_PORT/"
)
ALL_CLUSTER_PIDS=("${KPID[@]}" "${NPID[@]}" "$DNS_KUBIA_PID" "$DNS_NODE_PID")
if ((WARMUP_SECS > 0)); then
	for s in "${CLUSTER_SERVERS[@]}"; do
		run_wrk warmup "$s" "$CLUSTER_CONNS" "$WARMUP_SECS" "${CURL_OF[$s]}" \
			"${ALL_CLUSTER_PIDS[@]}"
	done
fi
for ((r = 0; r < CLUSTER_ROUNDS; r++)); do
	log "cluster view round $((r + 1))/$CLUSTER_ROUNDS"
	for ((i = 0; i < 3; i++)); do
		s=${CLUSTER_SERVERS[$(((r + i) % 3))]}
		run_wrk cluster "$s" "$CLUSTER_CONNS" "$SECS" "${CURL_OF[$s]}" "${ALL_CLUSTER_PIDS[@]}"
	done
done

record_mem kubia cluster "$(rss_kib "${KPID[0]}" VmRSS)" "$(rss_kib "${KPID[0]}" VmHWM)"
record_mem kubia-nocache cluster "$(rss_kib "${KPID[3]}" VmRSS)" "$(rss_kib "${KPID[3]}" VmHWM)"
record_mem node cluster "$(rss_kib "${NPID[0]}" VmRSS)" "$(rss_kib "${NPID[0]}" VmHWM)"

# ---------------------------------------------------------------- 4. table
TABLE=$TMP/table.txt
"$PYTHON" - "$RESULTS" "$MEM" >"$TABLE" <<'EOF'
import statistics, sys

results, mem = sys.argv[1], sys.argv[2]
runs = {}
for line in open(results):
    section, server, rps, p50, p99, errors = line.split("\t")
    runs.setdefault((section, server), []).append((float(rps), int(p50), int(p99), int(errors)))
rss = {}
for line in open(mem):
    server, section, vmrss, vmhwm = line.split("\t")
    rss[(section, server)] = (int(vmrss), int(vmhwm))

def med(section, server, i):
    r = runs.get((section, server))
    return statistics.median(x[i] for x in r) if r else None

def errs(section, server):
    r = runs.get((section, server))
    return sum(x[3] for x in r) if r else None

def fmt(v, kind):
    if v is None:
        return "-"
    if kind == "rps":
        return f"{v:,.0f}"
    if kind == "us":
        return f"{v / 1000:.2f} ms" if v >= 1000 else f"{v:.0f} us"
    if kind == "kib":
        return f"{v / 1024:.1f} MiB"
    return f"{v:,}"

def ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b else "-"

rows = []
def row(metric, kind, k, n, o):
    rows.append((metric, fmt(k, kind), fmt(n, kind), fmt(o, kind), ratio(k, n), ratio(k, o)))

for label, i, kind in (("req/s", 0, "rps"), ("p50 latency", 1, "us"), ("p99 latency", 2, "us")):
    row(f"GET /data {label}", kind, med("data", "kubia", i), med("data", "nginx", i),
        med("data", "node", i))
row("GET /data wrk errors", "n", errs("data", "kubia"), errs("data", "nginx"), errs("data", "node"))
for label, i in (("VmRSS", 0), ("VmHWM", 1)):
    get = lambda s: rss.get(("data", s), (None, None))[i]
    row(f"{label} after GET /data load", "kib", get("kubia"), get("nginx"), get("node"))
for server, name in (("kubia", "kubia"), ("kubia-nocache", "kubia, no DNS cache")):
    for label, i, kind in (("req/s", 0, "rps"), ("p50 latency", 1, "us"),
                           ("p99 latency", 2, "us")):
        row(f"GET / cluster {label} ({name})", kind, med("cluster", server, i), None,
            med("cluster", "node", i))
    row(f"GET / cluster wrk errors ({name})", "n", errs("cluster", server), None,
        errs("cluster", "node"))
for label, i in (("VmRSS", 0), ("VmHWM", 1)):
    get = lambda s: rss.get(("cluster", s), (None, None))[i]
    row(f"{label} of pod 0 after GET / load", "kib", get("kubia"), None, get("node"))

head = ("metric", "kubia", "nginx", "node-reference", "kubia/nginx", "kubia/node")
widths = [max(len(r[c]) for r in rows + [head]) for c in range(len(head))]
def line(cells):
    return "| " + " | ".join(c.ljust(w) if j == 0 else c.rjust(w)
                             for j, (c, w) in enumerate(zip(cells, widths))) + " |"
print(line(head))
print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
for r in rows:
    print(line(r))
EOF
{
	echo
	echo "kubia benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -srm), nproc $NPROC"
	echo "GET /data: wrk -t$WRK_THREADS -c$CONNS -d${SECS}s --latency, $ROUNDS interleaved" \
		"rounds, medians; body $BODY_BYTES bytes; kubia --mode pet --threads $THREADS;" \
		"nginx worker_processes $THREADS (static file, sendfile $NGINX_SENDFILE, open_file_cache);" \
		"node reference (single process)"
	echo "GET / (cluster of 3): wrk -t$WRK_THREADS -c$CLUSTER_CONNS -d${SECS}s --latency," \
		"$CLUSTER_ROUNDS interleaved rounds, medians; dnsmasq as cluster DNS, TTL ${DNS_TTL}s;" \
		"kubia caches SRV answers up to 1 s by default, the reference looks up on every request"
	echo "Memory: /proc/PID/status after the load; nginx = master + workers summed"
	echo "Ratios are kubia/other: above 1 is better for req/s, below 1 for latency and memory"
	echo
	cat "$TABLE"
} | tee "${OUT:-/dev/null}"
