#!/usr/bin/env bash
# Issue 18 item 3 on a 16-core machine (the lent device: x86-64, no Rust toolchain, no
# crates.io): the W2 value + gradient at B = 4096 on 1, 2, 4, 8 and 16 threads (the tape
# field and the hand-written TanhMlp, 128-row chunks), and the peers on 16 threads.
#
# Here, first:   benches/scripts/device_threads.sh prepare
#   builds the `threads` bench and copies its executable into .device/ (ignored by git),
#   and downloads torchdiffeq's and diffrax's wheels (pure Python) into .device/whl.
# There:         run(command="benches/scripts/device_threads.sh run", carry=[".device"],
#                    timeout_s=540)
#   writes threads.txt, peers.txt and machine.txt into $OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
case "${1:-}" in
prepare)
    mkdir -p .device/whl
    grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >>.git/info/exclude
    exe=$(cargo bench -p benches --bench threads --no-run --message-format=json 2>/dev/null |
        python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("executable") and m.get("target", {}).get("name") == "threads":
        print(m["executable"])')
    cp "$exe" .device/threads
    python3 -m pip download -q --no-deps --only-binary=:all: -d .device/whl \
        torchdiffeq==0.2.5 diffrax==0.7.2 equinox==0.13.8 lineax==0.1.1 \
        optimistix==0.1.0 wadler_lindig==0.1.8 ||
        echo "wheels not downloaded: the peers will be skipped there" >&2
    du -sh .device
    ;;
run)
    out=${OUT:-target/device-out}
    mkdir -p "$out"
    { nproc; lscpu | grep -E 'Model name|^CPU\(s\)|L2|L3'; } >"$out/machine.txt" 2>&1 || true
    THREADS_SWEEP=1,2,4,8,16 .device/threads --bench --noplot --warm-up-time 1 \
        --measurement-time 3 'threads/b4096/value_and_grad' 2>&1 | tee "$out/threads.txt"
    if ls .device/whl/*.whl >/dev/null 2>&1; then
        python3 -m pip install -q --no-index --no-deps --target /tmp/site .device/whl/*.whl &&
            PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 timeout 240 python3 \
                benches/scripts/peers_w2.py --threads 16 --b4096 2>&1 | tee "$out/peers.txt" || true
    fi
    ;;
*)
    echo "usage: $0 prepare | run" >&2
    exit 2
    ;;
esac
