#!/usr/bin/env bash
# Runs every libFuzzer target at once for HOURS (a decimal number: 0.1 is six minutes),
# each growing its own corpus from the committed seeds, then prints what each did.
#
# Usage: test/fuzz/run-long.sh HOURS [BUILD_DIR]
#   BUILD_DIR  a build with -Dfuzzers=true (default: build-fuzz at the top of the
#              repository, configured with clang and built when missing)
# What is kept, under $KUBIA_FUZZ_DIR (default BUILD_DIR/fuzz-long), per target:
#   <target>/corpus     inputs found so far (the next run starts from them)
#   <target>/artifacts  inputs that crashed or broke an invariant, with the log
# Exit status 0 when no target found anything, 1 otherwise.
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
hours=${1:-}
build=${2:-$top/build-fuzz}
if ! [[ $hours =~ ^[0-9]+([.][0-9]+)?$ ]] || [ "$hours" = 0 ]; then
    echo "usage: $0 HOURS [BUILD_DIR]   (HOURS: a positive number, e.g. 8 or 0.5)" >&2
    exit 2
fi
seconds=$(awk -v h="$hours" 'BEGIN { s = int(h * 3600); print (s > 0 ? s : 1) }')
if [ ! -d "$build" ]; then
    CC=clang meson setup "$build" -Dtests=enabled -Dfuzzers=true -Db_lundef=false || exit 1
fi
ninja -C "$build" || exit 1
work=${KUBIA_FUZZ_DIR:-$build/fuzz-long}
mapfile -t targets < <(cd "$top/test/fuzz/corpus" && ls)
pids=()
stopped=
stop() {
    stopped=1
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null
    done
}
trap stop INT TERM
echo "fuzzing ${targets[*]} for $seconds s each, all at once; work in $work"
for t in "${targets[@]}"; do
    exe=$build/test/fuzz/fuzz_$t
    [ -x "$exe" ] || { echo "$exe missing: is $build configured with -Dfuzzers=true?" >&2; exit 1; }
    mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
    dict=()
    [ ! -f "$top/test/fuzz/$t.dict" ] || dict=(-dict="$top/test/fuzz/$t.dict")
    # New inputs go to the first directory; the seeds are read from the second.
    "$exe" "${dict[@]}" -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$work/$t/artifacts/" \
        "$work/$t/corpus" "$top/test/fuzz/corpus/$t" >"$work/$t/log" 2>&1 &
    pids+=($!)
done
status=0
for i in "${!targets[@]}"; do
    t=${targets[$i]}
    if wait "${pids[$i]}"; then
        result=ok
    elif [ -n "$stopped" ] && [ -z "$(ls "$work/$t/artifacts")" ]; then
        result="stopped, nothing found"
    else
        result="FOUND SOMETHING: see $work/$t/artifacts and $work/$t/log"
        cp "$work/$t/log" "$work/$t/artifacts/" 2>/dev/null
        status=1
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: //p' "$work/$t/log")
    printf '%-8s %12s execs, %5s inputs in its corpus: %s\n' "$t" "${execs:-?}" \
        "$(ls "$work/$t/corpus" | wc -l)" "$result"
done
exit $status
