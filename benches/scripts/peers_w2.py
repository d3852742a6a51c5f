"""diffrax (JAX, jit) and torchdiffeq on the W2 Neural ODE workload of
`benches/benches/neural_ode_solve.rs`, for the tables in benches/README.md.

W2: a 2 -> 64 -> 64 -> 2 tanh field, every weight and bias N(0,1) * 2/sqrt(fan_in), a batch
of B initial states uniform in [-1, 1], t in [0, 1], Dopri5 at rtol = atol = 1e-6, float64,
loss = mean of z(t_i)^2 over the output times (two outputs {0, 1}: mean z(1)^2).

Cases: B = 16 value + gradient, B = 4096 forward and value + gradient, and B = 16 with 2, 11,
101 and 1,001 evenly spaced output times (forward and value + gradient). For each: the
evaluations of the field (counted by a host callback in JAX and a counter in torch; the
backward pass's evaluations too where the method makes any), accepted/rejected steps where
the library reports them, and the median time of a few runs on one thread (`--threads N`:
N threads for torch and XLA).

    taskset -c 0 python3 benches/scripts/peers_w2.py            # everything
    python3 benches/scripts/peers_w2.py --quick                  # B = 16 cases only
    python3 benches/scripts/peers_w2.py --threads 16 --b4096     # B = 4096 on 16 threads

Prints one JSON object per line.
"""

import json
import os
import sys
import time

def arg_threads():
    """`--threads N` (default 1): torch's intra-op threads and XLA's CPU threads."""
    if "--threads" in sys.argv:
        return int(sys.argv[sys.argv.index("--threads") + 1])
    return 1


THREADS = arg_threads()
if THREADS == 1:
    os.environ.setdefault(
        "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    )
else:
    os.environ.setdefault("XLA_FLAGS", f"intra_op_parallelism_threads={THREADS}")

import numpy as np  # noqa: E402

RTOL = ATOL = 1e-6
WIDTHS = [2, 64, 64, 2]


class SplitMix64:
    """The generator of `adjoint::test_problems::SplitMix64`, so that the field and the
    initial states are the very ones of the Rust bench and example."""

    MASK = (1 << 64) - 1

    def __init__(self, seed):
        self.s = seed & self.MASK

    def next_u64(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & self.MASK
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & self.MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & self.MASK
        return z ^ (z >> 31)

    def uniform(self):
        return (self.next_u64() >> 11) / float(1 << 53)

    def uniform_pm1(self):
        return 2.0 * self.uniform() - 1.0

    def normal(self):
        u1 = max(self.uniform(), 1e-300)
        u2 = self.uniform()
        return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def w2_params(seed=1):
    """Weights (in x out, row-major) then bias per layer, N(0,1) * 2/sqrt(fan_in), drawn in
    the order of the Rust side's flat parameter buffer."""
    rng = SplitMix64(seed)
    ps = []
    for fi, fo in zip(WIDTHS[:-1], WIDTHS[1:]):
        r = 2.0 / np.sqrt(fi)
        w = np.array([r * rng.normal() for _ in range(fi * fo)]).reshape(fi, fo)
        b = np.array([r * rng.normal() for _ in range(fo)])
        ps.append((w, b))
    return ps


def z0_of(batch, seed=2):
    rng = SplitMix64(seed)
    return np.array([rng.uniform_pm1() for _ in range(batch * 2)]).reshape(batch, 2)


def median_time(fn, reps):
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return 1e3 * float(np.median(ts))


def emit(**kw):
    print(json.dumps(kw), flush=True)


# ---------------------------------------------------------------- torchdiffeq
def run_torch(cases):
    import torch
    import torchdiffeq

    torch.set_num_threads(THREADS)
    torch.set_default_dtype(torch.float64)
    count = [0]

    class Field(torch.nn.Module):
        def __init__(self, ps):
            super().__init__()
            self.lins = torch.nn.ModuleList()
            for w, b in ps:
                lin = torch.nn.Linear(w.shape[0], w.shape[1])
                with torch.no_grad():
                    lin.weight.copy_(torch.tensor(w.T))
                    lin.bias.copy_(torch.tensor(b))
                self.lins.append(lin)

        def forward(self, t, z):
            count[0] += 1
            a = torch.tanh(self.lins[0](z))
            a = torch.tanh(self.lins[1](a))
            return self.lins[2](a)

    f = Field(w2_params())
    for batch, n_out, what in cases:
        z0 = torch.tensor(z0_of(batch))
        ts = torch.linspace(0.0, 1.0, n_out)
        for grad in ["backprop", "adjoint"] if what == "value_and_grad" else ["none"]:
            solve = torchdiffeq.odeint_adjoint if grad == "adjoint" else torchdiffeq.odeint

            def step():
                count[0] = 0
                if grad == "none":
                    with torch.no_grad():
                        zs = solve(f, z0, ts, rtol=RTOL, atol=ATOL, method="dopri5")
                    return count[0], 0
                z = z0.clone().requires_grad_(True)
                kw = {"adjoint_params": tuple(f.parameters())} if grad == "adjoint" else {}
                zs = solve(f, z, ts, rtol=RTOL, atol=ATOL, method="dopri5", **kw)
                loss = (zs[1:] ** 2).mean()
                fwd = count[0]
                loss.backward()
                return fwd, count[0] - fwd

            fwd, bwd = step()
            reps = 3 if (batch > 16 or n_out > 200) else 10
            emit(peer="torchdiffeq", grad=grad, batch=batch, outputs=n_out, what=what,
                 forward_nfe=fwd, backward_nfe=bwd, ms=median_time(step, reps))


# ---------------------------------------------------------------- diffrax
def run_diffrax(cases):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    import diffrax

    ps = [(jnp.asarray(w), jnp.asarray(b)) for w, b in w2_params()]
    count = np.zeros(1, dtype=np.int64)

    def bump(n):
        count[0] += int(np.asarray(n).size and 1)

    def field(t, z, ps, counting):
        if counting:
            jax.debug.callback(bump, t)
        a = jnp.tanh(z @ ps[0][0] + ps[0][1])
        a = jnp.tanh(a @ ps[1][0] + ps[1][1])
        return a @ ps[2][0] + ps[2][1]

    for batch, n_out, what in cases:
        z0 = jnp.asarray(z0_of(batch))
        ts = jnp.linspace(0.0, 1.0, n_out)
        adjoints = (
            {"RecursiveCheckpoint": diffrax.RecursiveCheckpointAdjoint(),
             "Backsolve": diffrax.BacksolveAdjoint()}
            if what == "value_and_grad" else {"none": diffrax.RecursiveCheckpointAdjoint()}
        )
        for name, adj in adjoints.items():
            def make(counting):
                term = diffrax.ODETerm(lambda t, z, ps: field(t, z, ps, counting))

                def solve(ps, z0):
                    return diffrax.diffeqsolve(
                        term, diffrax.Dopri5(), 0.0, 1.0, None, z0, args=ps,
                        saveat=diffrax.SaveAt(ts=ts),
                        stepsize_controller=diffrax.PIDController(rtol=RTOL, atol=ATOL),
                        adjoint=adj)

                def loss(ps, z0):
                    return jnp.mean(solve(ps, z0).ys[1:] ** 2)

                if what == "forward":
                    return jax.jit(lambda ps, z0: solve(ps, z0).ys), solve
                return jax.jit(jax.value_and_grad(loss)), solve

            counted, solve = make(True)
            count[0] = 0
            jax.block_until_ready(counted(ps, z0))
            total = int(count[0])
            sol = jax.jit(solve)(ps, z0)
            stats = {k: int(v) for k, v in sol.stats.items()}
            count[0] = 0
            jax.block_until_ready(jax.jit(lambda ps, z0: solve(ps, z0).ys)(ps, z0))
            fwd = int(count[0])
            timed, _ = make(False)
            reps = 3 if (batch > 16 or n_out > 200) else 10
            ms = median_time(lambda: jax.block_until_ready(timed(ps, z0)), reps)
            emit(peer="diffrax", grad=name, batch=batch, outputs=n_out, what=what,
                 forward_nfe=fwd, backward_nfe=total - fwd if what != "forward" else 0,
                 steps=stats.get("num_steps"), accepted=stats.get("num_accepted_steps"),
                 rejected=stats.get("num_rejected_steps"), ms=ms)


def main():
    quick = "--quick" in sys.argv
    big = [(4096, 2, "forward"), (4096, 2, "value_and_grad")]
    if "--b4096" in sys.argv:
        cases = big
    else:
        cases = [(16, 2, "value_and_grad")]
        if not quick:
            cases += big
        for n in (2, 11, 101, 1001):
            cases += [(16, n, "forward"), (16, n, "value_and_grad")]
    run_diffrax(cases)
    run_torch(cases)


if __name__ == "__main__":
    main()
