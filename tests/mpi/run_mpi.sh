#!/bin/sh
# Run one test_mpi launch under mpirun and fail if any process of the run outlives it: every
# process of the run carries MPROC_TEST_RUN in its environment, and /proc is searched for it.
# usage: run_mpi.sh BINARY NRANKS MODE [max seconds]   (NRANKS 0: no launcher)
# Exit 77 (skipped) only when MPI is not installed (no binary was built, or no mpirun).
bin=$1 n=$2 mode=$3 limit=${4:-120}
if [ -z "$bin" ] || [ ! -x "$bin" ]; then echo "SKIP: libmproc_mpi not built (MPI not found)"; exit 77; fi
if [ "$n" != 0 ] && ! command -v mpirun >/dev/null 2>&1; then echo "SKIP: no mpirun"; exit 77; fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
export MPROC_POOL_BACKEND=mpi
# mproc turns Open MPI's yield inside its probes off unless the user says otherwise: one
# launch says otherwise (mode_queued checks that it stays).
[ "$mode" = queued ] && export OMPI_MCA_mpi_yield_when_idle=1
# Sanitizer builds: Open MPI's own allocations are not ours to fix.
LSAN_OPTIONS="suppressions=$(dirname "$0")/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export LSAN_OPTIONS
# Whole stacks (Open MPI's libraries have no frame pointers), so that the suppressions match.
[ -n "${ASAN_OPTIONS:-}" ] && export ASAN_OPTIONS="$ASAN_OPTIONS:fast_unwind_on_malloc=0"
MPROC_TEST_RUN="mpi-$$-$(date +%s%N)"
export MPROC_TEST_RUN
start=$(date +%s%N)
if [ "$n" = 0 ]; then
    timeout -k 5 "$limit" "$bin" "$mode"
    rc=$?
elif [ "$mode" = sigint ]; then
    # Ctrl-C: SIGINT to the launcher once rank 0 runs its tasks; the job must end within 5 s.
    out="${TMPDIR:-/tmp}/$MPROC_TEST_RUN.out"
    mpirun -n "$n" "$bin" "$mode" > "$out" 2>&1 &
    mp=$!
    i=0
    while ! grep -q ready "$out" 2>/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
    t0=$(date +%s%N)
    kill -INT $mp
    i=0
    while kill -0 $mp 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    kill -0 $mp 2>/dev/null && { echo "FAIL: mpirun still runs 10 s after SIGINT"; kill -9 $mp; }
    wait $mp
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    cat "$out"
    echo "run_mpi: the job ended $ms ms after SIGINT"
    rc=0
    [ $ms -lt 5000 ] || rc=1
    grep -q FAIL "$out" && rc=1
    rm -f "$out"
elif [ "$mode" = mismatch ]; then
    # Worker ranks running another build (test_mpi_other): the job must refuse to start, saying why.
    out="${TMPDIR:-/tmp}/$MPROC_TEST_RUN.out"
    timeout -k 5 "$limit" mpirun -n 1 "$bin" "$mode" : -n $((n - 1)) "${bin}_other" "$mode" \
        > "$out" 2>&1
    r=$?
    cat "$out"
    rc=0
    [ $r -ne 0 ] || { echo "FAIL: the job did not fail"; rc=1; }
    grep -q "start every rank with the same executable" "$out" || { echo "FAIL: no reason given"; rc=1; }
    grep -q "FAIL" "$out" && rc=1
    rm -f "$out"
else
    timeout -k 5 "$limit" mpirun -n "$n" "$bin" "$mode"
    rc=$?
fi
end=$(date +%s%N)
echo "run_mpi: $mode: exit $rc after $(( (end - start) / 1000000 )) ms"
sleep 0.3
survivors=""
for e in /proc/[0-9]*/environ; do
    pid=${e#/proc/}; pid=${pid%/environ}
    [ "$pid" = $$ ] && continue
    if { tr "\0" "\n" < "$e"; } 2>/dev/null | grep -qx "MPROC_TEST_RUN=$MPROC_TEST_RUN"; then
        survivors="$survivors $pid($(cat /proc/$pid/comm 2>/dev/null))"
    fi
done
if [ -n "$survivors" ]; then
    echo "FAIL: processes of the run survived:$survivors"
    for s in $survivors; do kill -9 "${s%%(*}" 2>/dev/null; done
    exit 1
fi
case "$mode" in
killrank)
    # The job must fail (a rank died) and end within 5 s of the kill (the run itself: 0.4 s).
    [ "$rc" -ne 0 ] || { echo "FAIL: the job did not fail"; exit 1; }
    kill_ns=$(cat "${TMPDIR:-/tmp}/$MPROC_TEST_RUN.kill" 2>/dev/null)
    [ -n "$kill_ns" ] || { echo "FAIL: the rank was not killed"; exit 1; }
    ms=$(( (end - kill_ns) / 1000000 ))
    echo "run_mpi: the job ended $ms ms after the rank was killed"
    rm -f "${TMPDIR:-/tmp}/$MPROC_TEST_RUN.kill"
    [ "$ms" -lt 5000 ] || { echo "FAIL: took $ms ms"; exit 1; }
    exit 0 ;;
esac
exit $rc
