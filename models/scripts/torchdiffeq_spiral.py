"""The default `neuralode train` job written with PyTorch + torchdiffeq, for timing.

Same data (the cubic spiral dy/dt = A y^3, y(0) = (2, 0), 1000 samples on [0, 25]), same
model (z -> MLP(z^3), 2 -> 64 -> 64 -> 2, tanh), same batches (16 random windows of 10
samples solved as one batched state), loss (MSE), solver (dopri5, rtol 1e-6, atol 1e-8),
optimizer (Adam, lr 1e-2, cosine decay) and threads (1). Gradients through
`odeint_adjoint` (torchdiffeq's continuous adjoint) or, with --backprop, through the
solver's operations. Prints ms per iteration and the final window loss / trajectory MAE.

    python models/scripts/torchdiffeq_spiral.py --iters 1000
    cargo run --release -- train --iters 1000
"""

import argparse
import math
import time

import torch
from torchdiffeq import odeint, odeint_adjoint

A = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]], dtype=torch.float64)


class Field(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.f = torch.nn.Sequential(
            torch.nn.Linear(2, 64), torch.nn.Tanh(),
            torch.nn.Linear(64, 64), torch.nn.Tanh(),
            torch.nn.Linear(64, 2),
        ).double()

    def forward(self, _t, z):
        return self.f(z**3)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--iters", type=int, default=1000)
    p.add_argument("--backprop", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)

    t = torch.linspace(0.0, 25.0, 1000, dtype=torch.float64)
    with torch.no_grad():
        # dy/dt = A y^3 with column vectors is y^3 A^T with rows.
        y = odeint(lambda _t, y: (y**3) @ A.T, torch.tensor([2.0, 0.0], dtype=torch.float64),
                   t, method="dopri5", rtol=1e-10, atol=1e-12)

    model = Field()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, args.iters) / args.iters)))
    solve = odeint if args.backprop else odeint_adjoint
    batch, window = 16, 10
    tw = t[:window]
    losses = []
    start = time.perf_counter()
    for _ in range(args.iters):
        s = torch.randint(0, len(t) - window + 1, (batch,))
        y0 = y[s]  # [batch, 2]
        target = torch.stack([y[s + k] for k in range(window)])  # [window, batch, 2]
        opt.zero_grad()
        pred = solve(model, y0, tw, method="dopri5", rtol=1e-6, atol=1e-8)
        loss = ((pred - target) ** 2).mean()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    seconds = time.perf_counter() - start
    with torch.no_grad():
        whole = odeint(model, y[0], t, method="dopri5", rtol=1e-6, atol=1e-8)
    mae = (whole - y).abs().mean().item()
    k = min(20, len(losses))
    print(f"torchdiffeq ({'backprop' if args.backprop else 'odeint_adjoint'}), {args.iters} iterations: "
          f"{1e3 * seconds / args.iters:.2f} ms/iteration, {seconds:.1f} s; window loss "
          f"{sum(losses[:k]) / k:.3e} -> {sum(losses[-k:]) / k:.3e}, trajectory MAE {mae:.3e}")


if __name__ == "__main__":
    main()
