#!/usr/bin/env bash
# Every test of kubia, as CI runs them: installs what is missing (test/setup.sh), then
#   1. a release-like build (warnings are errors): unit, integration, lint, e2e, sim,
#      kubectl, browser, image and bench suites (e2e: the chapter on a simulated
#      StatefulSet, test/e2e/kubia-sim; sim: kubia-sim's own controller and Kubernetes'
#      StatefulSet scenarios against it; kubectl: its API server driven by the real
#      kubectl; browser: the page GET /ui in headless Chromium through kubectl proxy;
#      image: the container image built with podman, and the Kubernetes manifests;
#      bench: the benchmark's smoke profile, which checks answers, never times);
#   2. an ASan+UBSan build: unit, integration and e2e suites (a sanitizer report from
#      any pod of the simulated cluster fails its test);
#   3. a ThreadSanitizer build: unit and integration suites (a data race, lock-order
#      inversion or other report, from a unit test or from any kubia an integration
#      test starts, fails that test);
#   4. valgrind over the unit suite and discovery_net;
#   5. a clang build with libFuzzer: the fuzz suite, every target 10 s, two at a time
#      (test/fuzz/README.md; test/fuzz/run-long.sh runs them for hours).
# The last line is the summary "N passed, N failed[, N skipped]" over all of them.
# Root is needed for the tests that mount file systems and for the e2e suite; without
# it they skip.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
out=${KUBIA_TEST_DIR:-$top/build-test}

bash test/setup.sh || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }

rm -rf "$out"
mkdir -p "$out"
status=0
step() {
    echo "== $*"
}
run_suites() { # build_dir, extra meson test args...
    local dir=$1
    shift
    meson test -C "$dir" --print-errorlogs --num-processes 2 "$@" || status=1
}

step "build: debugoptimized, -Werror"
if meson setup "$out/main" -Dtests=enabled >"$out/setup-main.log" 2>&1 &&
    ninja -C "$out/main" >"$out/build-main.log" 2>&1; then
    run_suites "$out/main" --suite unit --suite integration --suite lint --suite e2e \
        --suite sim --suite kubectl --suite browser --suite bench --suite image
else
    cat "$out"/setup-main.log "$out"/build-main.log | tail -50
    status=1
fi

step "build: ASan + UBSan"
if meson setup "$out/asan" -Dtests=enabled -Db_sanitize=address,undefined \
    -Db_lundef=false >"$out/setup-asan.log" 2>&1 &&
    ninja -C "$out/asan" >"$out/build-asan.log" 2>&1; then
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        run_suites "$out/asan" --suite unit --suite integration --suite e2e
else
    cat "$out"/setup-asan.log "$out"/build-asan.log | tail -50
    status=1
fi

step "build: ThreadSanitizer"
if meson setup "$out/tsan" -Dtests=enabled -Db_sanitize=thread -Db_lundef=false \
    >"$out/setup-tsan.log" 2>&1 &&
    ninja -C "$out/tsan" >"$out/build-tsan.log" 2>&1; then
    # halt_on_error: the first report ends the process with exitcode, so the test that
    # ran it fails; second_deadlock_stack: both stacks of a lock-order inversion
    TSAN_OPTIONS=halt_on_error=1:exitcode=66:second_deadlock_stack=1:history_size=4 \
        run_suites "$out/tsan" --suite unit --suite integration
else
    cat "$out"/setup-tsan.log "$out"/build-tsan.log | tail -50
    status=1
fi

step "valgrind: unit suite, and discovery end to end in C"
if [ -d "$out/main" ]; then
    vg='valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect --track-fds=no'
    meson test -C "$out/main" --suite unit --print-errorlogs --logbase valgrind \
        --wrapper "$vg" || status=1
    meson test -C "$out/main" discovery_net --print-errorlogs --logbase valgrind-net \
        --wrapper "$vg" || status=1
fi

step "fuzz: libFuzzer (clang)"
if CC=clang meson setup "$out/fuzz" -Dtests=enabled -Dfuzzers=true -Db_lundef=false \
    >"$out/setup-fuzz.log" 2>&1 && ninja -C "$out/fuzz" >"$out/build-fuzz.log" 2>&1; then
    run_suites "$out/fuzz" --suite fuzz
else
    cat "$out"/setup-fuzz.log "$out"/build-fuzz.log | tail -50
    status=1
fi

/usr/bin/python3 "$top/test/summary.py" "$out"/main "$out"/asan "$out"/tsan \
    "$out"/fuzz || status=1
exit $status
