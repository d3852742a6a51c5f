"""FFJORD's toy CNF (train_toy.py defaults) in PyTorch + torchdiffeq, timed per iteration.

The peer of `neuralode cnf` for the timing comparison (benches/README.md): the same
architecture as FFJORD's `train_toy.py` defaults -- one CNF block, concat-squash layers
2-64-64-64-2 with tanh, T = 0.5 trained as sqrt(T)^2, exact trace (`brute_force`),
dopri5 with rtol = atol = 1e-5, `odeint_adjoint`, batch 100 of pinwheel data, Adam with
lr 1e-3 and weight decay 1e-5 -- on one CPU thread, float32 by default.

    python3 models/scripts/ffjord_toy.py --niters 30 [--divergence approximate] [--dtype float64]

Prints one JSON line: mean and median seconds per iteration (after --warmup
iterations), forward / backward evaluations per iteration, first and last loss.
"""

import argparse
import json
import math
import statistics
import time

import numpy as np
import torch
import torch.nn as nn
from torchdiffeq import odeint_adjoint

parser = argparse.ArgumentParser()
parser.add_argument("--niters", type=int, default=30)
parser.add_argument("--warmup", type=int, default=3)
parser.add_argument("--batch_size", type=int, default=100)
parser.add_argument("--dims", type=str, default="64-64-64")
parser.add_argument("--divergence", choices=["brute_force", "approximate"], default="brute_force")
parser.add_argument("--rademacher", action="store_true")
parser.add_argument("--tol", type=float, default=1e-5)
parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

torch.set_num_threads(args.threads)
torch.manual_seed(args.seed)
dtype = getattr(torch, args.dtype)


def pinwheel(rng, n):
    """FFJORD lib/toy_data.py's pinwheel."""
    radial_std, tangential_std, num_classes, rate = 0.3, 0.1, 5, 0.25
    per = n // num_classes
    rads = np.linspace(0, 2 * np.pi, num_classes, endpoint=False)
    features = rng.randn(num_classes * per, 2) * np.array([radial_std, tangential_std])
    features[:, 0] += 1.0
    labels = np.repeat(np.arange(num_classes), per)
    angles = rads[labels] + rate * np.exp(features[:, 0])
    rotations = np.stack([np.cos(angles), -np.sin(angles), np.sin(angles), np.cos(angles)])
    rotations = np.reshape(rotations.T, (-1, 2, 2))
    return 2 * rng.permutation(np.einsum("ti,tij->tj", features, rotations))


class ConcatSquashLinear(nn.Module):
    def __init__(self, dim_in, dim_out):
        super().__init__()
        self._layer = nn.Linear(dim_in, dim_out)
        self._hyper_bias = nn.Linear(1, dim_out, bias=False)
        self._hyper_gate = nn.Linear(1, dim_out)

    def forward(self, t, x):
        tt = t.view(1, 1)
        return self._layer(x) * torch.sigmoid(self._hyper_gate(tt)) + self._hyper_bias(tt)


class ODEnet(nn.Module):
    def __init__(self, dims):
        super().__init__()
        widths = [2] + dims + [2]
        self.layers = nn.ModuleList(ConcatSquashLinear(a, b) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, t, y):
        dx = y
        for i, layer in enumerate(self.layers):
            dx = layer(t, dx)
            if i < len(self.layers) - 1:
                dx = torch.tanh(dx)
        return dx


def divergence_bf(dx, y):
    s = 0.0
    for i in range(y.shape[1]):
        s = s + torch.autograd.grad(dx[:, i].sum(), y, create_graph=True)[0][:, i]
    return s


def divergence_approx(f, y, e):
    e_dzdx = torch.autograd.grad(f, y, e, create_graph=True)[0]
    return (e_dzdx * e).view(y.shape[0], -1).sum(dim=1)


class ODEfunc(nn.Module):
    def __init__(self, diffeq):
        super().__init__()
        self.diffeq = diffeq
        self.e = None
        self.nfe = 0

    def forward(self, t, states):
        y = states[0]
        self.nfe += 1
        with torch.enable_grad():
            y.requires_grad_(True)
            t.requires_grad_(True)
            dy = self.diffeq(t, y)
            if args.divergence == "brute_force":
                div = divergence_bf(dy, y)
            else:
                div = divergence_approx(dy, y, self.e)
        return dy, -div.view(-1, 1)


class CNF(nn.Module):
    def __init__(self, odefunc, T=0.5):
        super().__init__()
        self.odefunc = odefunc
        self.sqrt_end_time = nn.Parameter(torch.sqrt(torch.tensor(T)))

    def forward(self, z):
        logpz = torch.zeros(z.shape[0], 1).to(z)
        times = torch.stack([torch.zeros_like(self.sqrt_end_time), self.sqrt_end_time * self.sqrt_end_time])
        if args.rademacher:
            self.odefunc.e = torch.randint(0, 2, z.shape).to(z) * 2 - 1
        else:
            self.odefunc.e = torch.randn_like(z)
        zt, dlogp = odeint_adjoint(self.odefunc, (z, logpz), times.to(z), atol=args.tol, rtol=args.tol, method="dopri5")
        return zt[-1], dlogp[-1]


def main():
    dims = [int(d) for d in args.dims.split("-")]
    model = CNF(ODEfunc(ODEnet(dims))).to(dtype)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)
    rng = np.random.RandomState(args.seed)
    times, nfe_f, nfe_b, losses = [], [], [], []
    for itr in range(args.warmup + args.niters):
        start = time.perf_counter()
        x = torch.from_numpy(pinwheel(rng, args.batch_size)).to(dtype)
        opt.zero_grad()
        model.odefunc.nfe = 0
        z, dlogp = model(x)
        f = model.odefunc.nfe
        logpz = (-0.5 * math.log(2 * math.pi) - z.pow(2) / 2).sum(1, keepdim=True)
        loss = -(logpz - dlogp).mean()
        loss.backward()
        opt.step()
        elapsed = time.perf_counter() - start
        if itr >= args.warmup:
            times.append(elapsed)
            nfe_f.append(f)
            nfe_b.append(model.odefunc.nfe - f)
        losses.append(loss.item())
    print(json.dumps({
        "peer": "pytorch+torchdiffeq",
        "torch": torch.__version__,
        "dtype": args.dtype,
        "divergence": args.divergence,
        "threads": torch.get_num_threads(),
        "batch": args.batch_size,
        "dims": args.dims,
        "iters_timed": args.niters,
        "mean_s_per_iter": statistics.mean(times),
        "median_s_per_iter": statistics.median(times),
        "nfe_forward": statistics.mean(nfe_f),
        "nfe_backward": statistics.mean(nfe_b),
        "first_loss": losses[0],
        "last_loss": losses[-1],
    }))


if __name__ == "__main__":
    main()
