"""diffrax (JAX, jit) and torchdiffeq on the forward-sensitivity workloads of
`benches/benches/sensitivities.rs` (issue 18, item 5), for benches/README.md.

The family: a 2 -> W -> W -> 2 tanh field (P = W^2 + 6W + 2: W = 8, 16, 32, 64, 128 give
P = 114, 354, 1218, 4482, 17154) with the parameters of `adjoint::TanhMlp::init_params(W, 1.0)`
(per layer: weights, in x out row-major, uniform in +-1/sqrt(fan_in), then biases uniform in
+-0.1/sqrt(fan_in), all from SplitMix64 seeded with W), a batch of 16 initial states uniform
in [-1, 1] from SplitMix64(17) (`adjoint::scaling::MlpFamily::new(16)`), t in [0, 1], Dopri5
at rtol = atol = 1e-6, float64, loss = mean of z(1)^2.

Cases per W:
* diffrax `jacfwd` of the loss with respect to the P parameters through `diffeqsolve` with
  `adjoint=diffrax.ForwardMode()` (forward-mode sensitivities);
* diffrax `grad` of the loss with its default `RecursiveCheckpointAdjoint` and with
  `BacksolveAdjoint` (the adjoint gradients);
* torchdiffeq `odeint_adjoint` and plain backprop through `odeint` (torchdiffeq has no
  forward-mode sensitivities: `torch.func.jacfwd` does not trace its adaptive loop).

Prints one JSON object per line: the library, the case, W, P, the steps of the primal solve
where the library reports them, the median and best time of a few runs and |dL/dtheta| (to check that
every case computes the same gradient).

    taskset -c 0 python3 benches/scripts/peers_fwd.py             # W = 8 ... 128
    taskset -c 0 python3 benches/scripts/peers_fwd.py 8 16         # some widths only
"""

import json
import os
import sys
import time

os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import numpy as np  # noqa: E402

RTOL = ATOL = 1e-6
BATCH = 16
WIDTHS = [8, 16, 32, 64, 128]


# The generator of `adjoint`'s `SplitMix64`, shared with the W2 script.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers_w2 import SplitMix64  # noqa: E402


def family_params(w, scale=1.0):
    """`TanhMlp::init_params(w, scale)` for widths [2, w, w, 2]: the flat vector in the
    Rust layout (per layer W then b) and the list of (W, b)."""
    widths = [2, w, w, 2]
    rng = SplitMix64(w)
    flat = []
    for fi, fo in zip(widths[:-1], widths[1:]):
        r = scale / np.sqrt(fi)
        flat += [r * rng.uniform_pm1() for _ in range(fi * fo)]
        flat += [0.1 * r * rng.uniform_pm1() for _ in range(fo)]
    return np.array(flat), widths


def unflatten(flat, widths, xp):
    ps, off = [], 0
    for fi, fo in zip(widths[:-1], widths[1:]):
        wm = xp.reshape(flat[off:off + fi * fo], (fi, fo))
        off += fi * fo
        b = flat[off:off + fo]
        off += fo
        ps.append((wm, b))
    return ps


def z0_of(batch=BATCH, seed=17):
    rng = SplitMix64(seed)
    return np.array([rng.uniform_pm1() for _ in range(batch * 2)]).reshape(batch, 2)


def times(fn, reps):
    """(median, best) of `reps` runs after one warm-up, in ms."""
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return 1e3 * float(np.median(ts)), 1e3 * float(np.min(ts))


def reps_for(w):
    return 10 if w <= 16 else (5 if w <= 32 else 3)


def emit(**kw):
    print(json.dumps(kw), flush=True)


def run_diffrax(widths):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    import diffrax

    z0 = jnp.asarray(z0_of())

    for w in widths:
        flat_np, ws = family_params(w)
        flat = jnp.asarray(flat_np)
        p = flat.size

        def field(t, z, flat):
            ps = unflatten(flat, ws, jnp)
            a = jnp.tanh(z @ ps[0][0] + ps[0][1])
            a = jnp.tanh(a @ ps[1][0] + ps[1][1])
            return a @ ps[2][0] + ps[2][1]

        term = diffrax.ODETerm(field)

        def solve(flat, adjoint):
            return diffrax.diffeqsolve(
                term, diffrax.Dopri5(), 0.0, 1.0, None, z0, args=flat,
                saveat=diffrax.SaveAt(t1=True),
                stepsize_controller=diffrax.PIDController(rtol=RTOL, atol=ATOL),
                adjoint=adjoint, max_steps=4096)

        def loss_with(adjoint):
            return lambda flat: jnp.mean(solve(flat, adjoint).ys[-1] ** 2)

        sol = jax.jit(lambda f: solve(f, diffrax.RecursiveCheckpointAdjoint()))(flat)
        steps = int(sol.stats["num_steps"])
        cases = {
            "jacfwd_ForwardMode": jax.jit(jax.jacfwd(loss_with(diffrax.ForwardMode()))),
            "grad_RecursiveCheckpoint": jax.jit(
                jax.grad(loss_with(diffrax.RecursiveCheckpointAdjoint()))),
            "grad_Backsolve": jax.jit(jax.grad(loss_with(diffrax.BacksolveAdjoint()))),
        }
        for name, fn in cases.items():
            g = np.asarray(jax.block_until_ready(fn(flat)))
            ms, best = times(lambda: jax.block_until_ready(fn(flat)), reps_for(w))
            emit(peer="diffrax", case=name, W=w, P=int(p), batch=BATCH, steps=steps,
                 ms=ms, best_ms=best, grad_norm=float(np.linalg.norm(g)))


def run_torch(widths):
    import torch
    import torchdiffeq

    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    z0 = torch.tensor(z0_of())

    for w in widths:
        flat_np, ws = family_params(w)
        ps = [(torch.tensor(np.asarray(a)), torch.tensor(np.asarray(b)))
              for a, b in unflatten(flat_np, ws, np)]

        class Field(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.lins = torch.nn.ModuleList()
                for wm, b in ps:
                    lin = torch.nn.Linear(wm.shape[0], wm.shape[1])
                    with torch.no_grad():
                        lin.weight.copy_(wm.T)
                        lin.bias.copy_(b)
                    self.lins.append(lin)

            def forward(self, t, z):
                a = torch.tanh(self.lins[0](z))
                a = torch.tanh(self.lins[1](a))
                return self.lins[2](a)

        f = Field()
        p = sum(x.numel() for x in f.parameters())
        ts = torch.tensor([0.0, 1.0])
        for grad in ["adjoint", "backprop"]:
            solve = torchdiffeq.odeint_adjoint if grad == "adjoint" else torchdiffeq.odeint

            def step():
                f.zero_grad()
                kw = {"adjoint_params": tuple(f.parameters())} if grad == "adjoint" else {}
                zs = solve(f, z0, ts, rtol=RTOL, atol=ATOL, method="dopri5", **kw)
                loss = (zs[-1] ** 2).mean()
                loss.backward()
                return float(torch.sqrt(sum((x.grad ** 2).sum() for x in f.parameters())))

            gn = step()
            ms, best = times(step, reps_for(w))
            emit(peer="torchdiffeq", case=f"grad_{grad}", W=w, P=int(p), batch=BATCH,
                 ms=ms, best_ms=best, grad_norm=gn)


def main():
    widths = [int(a) for a in sys.argv[1:]] or WIDTHS
    run_diffrax(widths)
    run_torch(widths)


if __name__ == "__main__":
    main()
