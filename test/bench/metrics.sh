#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# What counting for /metrics costs: kubia as built (metrics counted) against the same
# sources built with -Dmetrics=false (every update compiled out) or another binary
# (BENCH_KUBIA_NOMETRICS: the parent commit's, say), side by side in one run: rounds
# interleaved, the two always back to back, which goes first alternating; one table of
# medians, the median of each round's ratio, and the CPU time a request costs the server
# (utime + stime: less sensitive than req/s to a busy machine).
# Loads: GET /data (wrk -c64, a 64-byte body) and POST of 100 bytes at 1 and 32 clients
# (durable, as always). A third contender, for information: the build with metrics and
# the access log written (--log-level info, standard error to a file), which the other
# two do not write (--log-level warn, as in bench.sh).
#
# Needs wrk, curl, meson and ninja (and what building kubia needs). See
# test/bench/README.md.
#
# Settings (environment):
#   BENCH_KUBIA            kubia with metrics        (default: <repo>/build/kubia)
#   BENCH_KUBIA_NOMETRICS  kubia built with -Dmetrics=false (default: built here, from
#                          the same sources, in the run's temporary directory)
#   BENCH_SECS             seconds per wrk run       (default: 5)
#   BENCH_ROUNDS           interleaved rounds        (default: 5)
#   BENCH_THREADS          kubia --threads           (default: nproc)
#   BENCH_CONNS            wrk -c for GET /data      (default: 64)
#   BENCH_OUT              also write the table to this file
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
# shellcheck source=lib.sh
source "$SCRIPT_DIR/lib.sh"

KUBIA=${BENCH_KUBIA:-$REPO_ROOT/build/kubia}
NOMETRICS=${BENCH_KUBIA_NOMETRICS:-}
SECS=${BENCH_SECS:-5}
ROUNDS=${BENCH_ROUNDS:-5}
THREADS=${BENCH_THREADS:-$(nproc)}
CONNS=${BENCH_CONNS:-64}
OUT=${BENCH_OUT:-}
PYTHON=/usr/bin/python3
[[ -x $PYTHON ]] || PYTHON=$(command -v python3)
BENCHCTL=("$PYTHON" "$SCRIPT_DIR/benchctl.py")
for v in SECS ROUNDS THREADS CONNS; do
	if ! [[ ${!v} =~ ^[0-9]+$ ]] || ((${!v} < 1)); then
		die "BENCH_$v must be a whole number >= 1"
	fi
done
for tool in wrk curl; do
	command -v "$tool" >/dev/null || { log "SKIPPED: $tool is not installed"; exit 77; }
done
[[ -x $KUBIA ]] || die "kubia binary not found at $KUBIA (set BENCH_KUBIA)"
unset http_proxy HTTP_PROXY https_proxy HTTPS_PROXY all_proxy ALL_PROXY

TMP=$(mktemp -d "${TMPDIR:-/tmp}/kubia-metrics-bench.XXXXXX")
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -p "$TMP/logs" "$TMP/vol"
RUNS=$TMP/runs.tsv
: >"$RUNS"

if [[ -z $NOMETRICS ]]; then
	log "building kubia with -Dmetrics=false"
	if ! meson setup "$TMP/build" "$REPO_ROOT" -Dmetrics=false -Dtests=disabled \
		>"$TMP/logs/build.log" 2>&1 || ! ninja -C "$TMP/build" kubia >>"$TMP/logs/build.log" 2>&1; then
		die "build failed: $(tail -n 20 "$TMP/logs/build.log")"
	fi
	NOMETRICS=$TMP/build/kubia
fi

# One kubia per contender and load, so that the POST loads write their own files.
declare -A url=() pid=()
whos=(without with with+log)
loads=(get post100-c1 post100-c32)
mapfile -t ports < <("${BENCHCTL[@]}" ports $((${#whos[@]} * ${#loads[@]}))) || die "no ports"
ready=()
i=0
for who in "${whos[@]}"; do
	for load in "${loads[@]}"; do
		port=${ports[$i]}
		i=$((i + 1))
		bin=$KUBIA
		level=warn
		[[ $who == without ]] && bin=$NOMETRICS
		[[ $who == with+log ]] && level=info
		mkdir -p "$TMP/vol/$who-$load"
		start "$who-$load" "$bin" --port "$port" --data-file "$TMP/vol/$who-$load/kubia.txt" \
			--mode pet --hostname kubia-0 --threads "$THREADS" --log-level "$level"
		pid[$who/$load]=$LAST_PID
		url[$who/$load]=http://127.0.0.1:$port
		ready+=("$LAST_PID" "http://127.0.0.1:$port/readyz")
	done
done
"${BENCHCTL[@]}" wait-ready 15 "${ready[@]}" || die "servers not ready"
head -c 64 /dev/zero | tr '\0' 'k' >"$TMP/body"
for who in "${whos[@]}"; do
	curl -sf --data-binary "@$TMP/body" "${url[$who/get]}/" >/dev/null || die "POST failed"
done

# cpu_ticks PID: sets TICKS to the process's user + system time, in clock ticks.
cpu_ticks() {
	local stat
	read -r stat <"/proc/$1/stat" || die "cannot read /proc/$1/stat"
	stat=${stat##*) }
	read -r -a f <<<"$stat"
	TICKS=$((f[11] + f[12])) # utime and stime: fields 14 and 15 of the whole line
}
HZ=$(getconf CLK_TCK)

# run ROUND LOAD WHO: one wrk run; appends "round load who req/s p50 p99 errors
# cpu-us-per-request" to RUNS.
run() {
	local round=$1
	shift
	local load=$1 who=$2 env=() c=$CONNS threads=2 line u=${url[$2/$1]} t0
	case $load in
	get) u=$u/data ;;
	post100-c1) env=(BENCH_POST_BYTES=100) c=1 threads=1 u=$u/ ;;
	post100-c32) env=(BENCH_POST_BYTES=100) c=32 u=$u/ ;;
	esac
	cpu_ticks "${pid[$who/$load]}"
	t0=$TICKS
	env "${env[@]}" timeout $((SECS + 30)) wrk -t"$threads" -c"$c" -d"${SECS}s" --latency \
		-s "$SCRIPT_DIR/wrk.lua" "$u" >"$TMP/logs/wrk.log" 2>&1 || die "wrk failed"
	check_alive "${pid[@]}"
	cpu_ticks "${pid[$who/$load]}"
	line=$(grep '^BENCHRESULT ' "$TMP/logs/wrk.log") || die "no result from wrk"
	local req dur p50 p99 ec er ew es et
	read -r _ req dur p50 p99 ec er ew es et _ <<<"$line"
	((req > 0)) || die "$load $who: no answer at all"
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$load" "$who" \
		"$(awk -v r="$req" -v d="$dur" 'BEGIN { printf "%.1f", r * 1e6 / d }')" \
		"$p50" "$p99" $((ec + er + ew + es + et)) \
		"$(awk -v t=$((TICKS - t0)) -v hz="$HZ" -v r="$req" 'BEGIN { printf "%.3f", t * 1e6 / hz / r }')" \
		>>"$RUNS"
	log "  $load $who: $(tail -n 1 "$RUNS" | cut -f4) req/s, $(tail -n 1 "$RUNS" | cut -f8) us CPU a request"
}

log "kubia $KUBIA against $NOMETRICS; $ROUNDS rounds of ${SECS}s; --threads $THREADS"
# The two builds always run one right after the other, which goes first alternating by
# round (the access-log contender first or last), so that the ratio of each round
# compares runs made in the same conditions.
for ((r = 0; r < ROUNDS; r++)); do
	log "round $((r + 1))/$ROUNDS"
	order=(without with with+log)
	((r % 2 == 0)) || order=(with+log with without)
	for load in "${loads[@]}"; do
		for who in "${order[@]}"; do
			run "$r" "$load" "$who"
		done
	done
done
stop "${pid[@]}"

{
	echo
	echo "kubia metrics cost, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -srm), nproc $(nproc)," \
		"--threads $THREADS, ${SECS}s x $ROUNDS interleaved rounds; medians"
	echo "without: $NOMETRICS; with: $KUBIA; with+log: the same, access log written" \
		"(--log-level info)"
	"$PYTHON" - "$RUNS" <<-'EOF'
		import statistics
		import sys
		runs = {}
		for ln in open(sys.argv[1]):
		    rnd, load, who, rps, p50, p99, err, cpu = ln.rstrip("\n").split("\t")
		    runs[(load, who, rnd)] = (float(rps), int(p99), int(err), float(cpu))
		rounds = sorted({k[2] for k in runs})
		med = statistics.median
		def col(load, who, i):
		    return [runs[(load, who, r)][i] for r in rounds]
		def ratio(load, who, i):
		    return med(a / b for a, b in zip(col(load, who, i), col(load, "without", i)))
		print("| load | req/s without | with | with+log | with / without (median of rounds) "
		      "| with+log / without | CPU us a request without / with / with+log | CPU with / without "
		      "| p99 us without / with / with+log | errors |")
		print("|---|---|---|---|---|---|---|---|---|---|")
		whos = ("without", "with", "with+log")
		for load in ("get", "post100-c1", "post100-c32"):
		    print("| %s | %s | %.3f | %.3f | %s | %.3f | %s | %d |" % (
		        load, " | ".join("%.0f" % med(col(load, w, 0)) for w in whos),
		        ratio(load, "with", 0), ratio(load, "with+log", 0),
		        " / ".join("%.2f" % med(col(load, w, 3)) for w in whos),
		        ratio(load, "with", 3),
		        " / ".join("%d" % med(col(load, w, 1)) for w in whos),
		        sum(sum(col(load, w, 2)) for w in whos)))
	EOF
} | tee "${OUT:-/dev/null}"
