"""Step sizes of diffrax and torchdiffeq on the W2 Neural ODE field (issue 18, item 1).

The field and states are those of `peers_w2.py` (bit-identical to the Rust side's
`adjoint::test_problems::{w2_field, w2_theta}` and SplitMix64 seed 2): a 2 -> 64 -> 64 -> 2
tanh MLP (draw 1), B states uniform in [-1, 1], t in [0, 1], dopri5 at rtol = atol = TOL.
Prints each library's accepted steps and counters; compare with the step sizes printed
by `cargo run --release -p adjoint --example controller_work_precision` (and the test
`adjoint/tests/step_control.rs`, which pins them).

    taskset -c 0 python3 benches/scripts/peers_steps.py [B [TOL]]      # default 16 1e-6

What it shows (B = 16, 1e-6): torchdiffeq starts with Hairer's heuristic in RMS norms
(0.0213), steps with the I controller and Shampine's error estimate, and takes its last
step past t = 1 (interpolating back); diffrax 0.7.2 starts with 0.01 (its heuristic
returns that constant for the wrapped term `diffeqsolve` passes it), then steps as
torchdiffeq does and clips its last step to t = 1.
"""

import os
import sys

os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from peers_w2 import w2_params, z0_of  # noqa: E402


def main():
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    tol = float(sys.argv[2]) if len(sys.argv) > 2 else 1e-6

    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    import diffrax

    ps = [(jnp.asarray(w), jnp.asarray(b)) for w, b in w2_params()]

    def field(t, z, ps):
        a = jnp.tanh(z @ ps[0][0] + ps[0][1])
        a = jnp.tanh(a @ ps[1][0] + ps[1][1])
        return a @ ps[2][0] + ps[2][1]

    z0 = jnp.asarray(z0_of(batch))
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field), diffrax.Dopri5(), 0.0, 1.0, None, z0, args=ps,
        saveat=diffrax.SaveAt(steps=True),
        stepsize_controller=diffrax.PIDController(rtol=tol, atol=tol), max_steps=4096)
    ts = np.asarray(sol.ts)
    ts = np.concatenate([[0.0], ts[np.isfinite(ts)]])
    print("diffrax", {k: int(v) for k, v in sol.stats.items()})
    print("diffrax h", " ".join(f"{h:.10f}" for h in np.diff(ts)))

    import torch
    import torchdiffeq

    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)

    class Field(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.n, self.accepted, self.rejected = 0, [], []
            self.w = [(torch.tensor(np.asarray(w)), torch.tensor(np.asarray(b)))
                      for w, b in w2_params()]

        def forward(self, t, z):
            self.n += 1
            a = torch.tanh(z @ self.w[0][0] + self.w[0][1])
            a = torch.tanh(a @ self.w[1][0] + self.w[1][1])
            return a @ self.w[2][0] + self.w[2][1]

        def callback_accept_step(self, t0, y0, dt):
            self.accepted.append(float(dt))

        def callback_reject_step(self, t0, y0, dt):
            self.rejected.append(float(dt))

    f = Field()
    with torch.no_grad():
        torchdiffeq.odeint(f, torch.tensor(z0_of(batch)), torch.tensor([0.0, 1.0]),
                           rtol=tol, atol=tol, method="dopri5")
    print("torchdiffeq nfe", f.n, "accepted", len(f.accepted), "rejected", len(f.rejected),
          "last step ends at", sum(f.accepted))
    print("torchdiffeq h", " ".join(f"{h:.10f}" for h in f.accepted))


if __name__ == "__main__":
    main()
