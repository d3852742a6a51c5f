#!/usr/bin/env bash
# The "quiet re-measure" sections of benches/README.md: ours and the Python peers
# (PyTorch + torchdiffeq) in one window, pinned to one core unless stated. Run it with
# nothing else on the machine; it writes one file per run and the load averages into $1
# (default target/quiet-measure). Further arguments choose sections (default: all):
# odenet, w2, w2-peers, fwd, latent.
#
#   benches/scripts/quiet_measure.sh target/quiet-measure w2 w2-peers
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-target/quiet-measure}
shift || true
sections=${*:-odenet w2 w2-peers fwd latent}
want() { [[ " $sections " == *" $1 "* ]]; }
mkdir -p "$out"
cargo bench -p benches --no-run
# One bench group, pinned to core 0 (cargo's child, the bench binary, inherits it).
pinned() { taskset -c 0 cargo bench -q -p benches --bench "$1" -- --noplot --warm-up-time 1 --measurement-time "$2" "${@:3}"; }
two_threads() { cargo bench -q -p benches --bench "$1" -- --noplot --warm-up-time 1 --measurement-time "$2" "${@:3}"; }
torch() { taskset -c 0 python3 "$@"; }
uptime >"$out/uptime.txt"
# Issue 14 item 8: ODE-Net, RK-Net and ResNet against torchdiffeq, ODE-Net twice.
if want odenet; then
pinned odenet 5 'step_mnist_c64/(odenet|rknet|resnet)$' >"$out/odenet.txt" 2>&1
torch models/scripts/odenet_torch.py --data mnist5k --channels 64 --epochs 1 --max-batches 6 >"$out/odenet_torch.txt" 2>&1
pinned odenet 5 'step_mnist_c64/odenet$' >"$out/odenet_r2.txt" 2>&1
two_threads odenet 5 'step_mnist_c64/odenet_2threads' >"$out/odenet_2threads.txt" 2>&1
torch models/scripts/odenet_torch.py --data mnist5k --channels 64 --epochs 1 --max-batches 6 --models odenet >"$out/odenet_torch_r2.txt" 2>&1
uptime >>"$out/uptime.txt"
fi
# Issue 18: the W2 workload, ours and the peers (diffrax, torchdiffeq).
if want w2; then
pinned field_eval 3 >"$out/field_eval.txt" 2>&1
pinned neural_ode_solve 3 hand_written >"$out/hand_written.txt" 2>&1
two_threads threads 3 >"$out/threads.txt" 2>&1
taskset -c 0 cargo run -q --release -p adjoint --example gradient_modes_w2 -- --b16 >"$out/gradient_modes_b16.txt" 2>&1
uptime >>"$out/uptime.txt"
fi
if want w2-peers; then
torch benches/scripts/peers_w2.py >"$out/peers_w2.txt" 2>&1
uptime >>"$out/uptime.txt"
fi
# Issue 18 item 5: forward sensitivities and the adjoint as P grows, and diffrax's jacfwd.
if want fwd; then
pinned sensitivities 3 >"$out/sensitivities.txt" 2>&1
torch benches/scripts/peers_fwd.py 8 16 32 >"$out/peers_fwd.txt" 2>&1
uptime >>"$out/uptime.txt"
fi
# Issue 16 item 7: the latent ODE iteration against torchdiffeq's latent_ode.py.
if want latent; then
pinned latent 3 torchdiffeq_setup/f32 >"$out/latent.txt" 2>&1
torch models/scripts/latent_ode_torch.py --niters 6 --rtol 1e-3 --atol 1e-4 >"$out/latent_torch.txt" 2>&1
uptime >>"$out/uptime.txt"
fi
echo "wrote $out"
