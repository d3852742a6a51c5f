"""The `neuralode odenet` job written with PyTorch + torchdiffeq, for timing.

Same models as torchdiffeq's `examples/odenet_mnist.py` and `models::odenet` (ODE-Net:
an ODE block over [0, 1] with dopri5 at rtol = atol = tol, gradients by `odeint_adjoint`;
RK-Net: the same block, backpropagated through the solver (`odeint`); ResNet: six
residual blocks), the same data (the shipped MNIST 5k subset or the 8x8 digits, scaled to
[0, 1], a stratified 80/20 split, standardised with the training set's mean and std), the
same batches (shuffled each epoch, last partial batch kept), optimizer (Adam), width,
stem padding (0 for 28x28, 1 for 8x8), group counts and threads (one by default).

Prints, per model and epoch, the training time of the epoch (batches only, as the Rust
job's `s/epoch`), forward evaluations per batch and the test error; `--json FILE` writes
them. Compare with the Rust job in the same session:

    python models/scripts/odenet_torch.py --data mnist5k --channels 64 --epochs 1
    cargo run --release -- odenet --data mnist5k --channels 64 --epochs 1

The split differs from the Rust job's (another random generator), so test errors are
comparable in distribution only; times and evaluation counts are the point.
"""

import argparse
import gzip
import json
import os
import time

import numpy as np
import torch
import torch.nn as nn
from torchdiffeq import odeint, odeint_adjoint

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")


def groups_for(c):
    """Largest divisor of c up to min(32, c / 2), as the Rust job picks it."""
    for g in range(max(1, min(32, c // 2)), 0, -1):
        if c % g == 0:
            return g
    return 1


def load(name):
    path, side, top = {
        "mnist5k": ("mnist_5k.csv.gz", 28, 255.0),
        "digits": ("digits.csv.gz", 8, 16.0),
    }[name]
    with gzip.open(os.path.join(DATA, path), "rt") as f:
        rows = np.loadtxt(f, delimiter=",", dtype=np.float32)
    x = rows[:, :-1].reshape(-1, 1, side, side) / top
    y = rows[:, -1].astype(np.int64)
    return x, y


def stratified_split(y, test_fraction, rng):
    train, test = [], []
    for k in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == k))
        n_test = int(round(test_fraction * len(idx)))
        test.extend(idx[:n_test])
        train.extend(idx[n_test:])
    return np.array(train), np.array(test)


def norm(c, groups):
    return nn.GroupNorm(groups, c)


class ConcatConv2d(nn.Module):
    def __init__(self, c):
        super().__init__()
        self._layer = nn.Conv2d(c + 1, c, 3, 1, 1)

    def forward(self, t, x):
        tt = torch.ones_like(x[:, :1, :, :]) * t
        return self._layer(torch.cat([tt, x], 1))


class ODEfunc(nn.Module):
    def __init__(self, c, groups):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = norm(c, groups), norm(c, groups), norm(c, groups)
        self.conv1, self.conv2 = ConcatConv2d(c), ConcatConv2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.nfe = 0

    def forward(self, t, x):
        self.nfe += 1
        out = self.relu(self.norm1(x))
        out = self.relu(self.norm2(self.conv1(t, out)))
        return self.norm3(self.conv2(t, out))


class ODEBlock(nn.Module):
    def __init__(self, odefunc, tol, adjoint):
        super().__init__()
        self.odefunc = odefunc
        self.t = torch.tensor([0.0, 1.0])
        self.tol = tol
        self.solve = odeint_adjoint if adjoint else odeint

    def forward(self, x):
        out = self.solve(self.odefunc, x, self.t, rtol=self.tol, atol=self.tol, method="dopri5")
        return out[1]


class ResBlock(nn.Module):
    def __init__(self, c, groups):
        super().__init__()
        self.norm1, self.norm2 = norm(c, groups), norm(c, groups)
        self.conv1 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.conv1(self.relu(self.norm1(x)))
        out = self.conv2(self.relu(self.norm2(out)))
        return out + x


def build(model, c, groups, pad, tol):
    stem = [
        nn.Conv2d(1, c, 3, 1, pad), norm(c, groups), nn.ReLU(inplace=True),
        nn.Conv2d(c, c, 4, 2, 1), norm(c, groups), nn.ReLU(inplace=True),
        nn.Conv2d(c, c, 4, 2, 1),
    ]
    if model == "resnet":
        feature = [ResBlock(c, groups) for _ in range(6)]
    else:
        feature = [ODEBlock(ODEfunc(c, groups), tol, adjoint=(model == "odenet"))]
    head = [norm(c, groups), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(c, 10)]
    return nn.Sequential(*stem, *feature, *head)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="odenet,rknet,resnet")
    p.add_argument("--data", choices=["digits", "mnist5k"], default="digits")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--tol", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-batches", type=int, default=None, help="stop each epoch after this many batches (timing runs)")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    x, y = load(args.data)
    tr, te = stratified_split(y, 0.2, rng)
    mean, std = x[tr].mean(), x[tr].std()
    xtr, ytr = torch.from_numpy((x[tr] - mean) / std), torch.from_numpy(y[tr])
    xte, yte = torch.from_numpy((x[te] - mean) / std), torch.from_numpy(y[te])
    pad = 0 if args.data == "mnist5k" else 1
    groups = groups_for(args.channels)
    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} thread(s); {args.data}: "
          f"{len(tr)} training, {len(te)} test images, {args.channels} channels, batch {args.batch}, tol {args.tol:g}")
    results = []
    for model in args.models.split(","):
        net = build(model, args.channels, groups, pad, args.tol)
        n_params = sum(q.numel() for q in net.parameters())
        opt = torch.optim.Adam(net.parameters(), lr=args.lr)
        odefunc = next((m for m in net.modules() if isinstance(m, ODEfunc)), None)
        epochs = []
        for epoch in range(args.epochs):
            perm = torch.from_numpy(rng.permutation(len(tr)))
            net.train()
            nfe_f, nfe_b, batches, loss_sum = 0, 0, 0, 0.0
            start = time.perf_counter()
            for b in range(0, len(tr), args.batch):
                if args.max_batches is not None and batches >= args.max_batches:
                    break
                idx = perm[b:b + args.batch]
                opt.zero_grad()
                if odefunc is not None:
                    odefunc.nfe = 0
                loss = nn.functional.cross_entropy(net(xtr[idx]), ytr[idx])
                if odefunc is not None:
                    nfe_f += odefunc.nfe
                    odefunc.nfe = 0
                loss.backward()
                if odefunc is not None:
                    nfe_b += odefunc.nfe
                opt.step()
                loss_sum += loss.item()
                batches += 1
            seconds = time.perf_counter() - start
            net.eval()
            with torch.no_grad():
                wrong = sum((net(xte[i:i + 256]).argmax(1) != yte[i:i + 256]).sum().item() for i in range(0, len(te), 256))
            row = {
                "epoch": epoch + 1, "seconds": seconds, "batches": batches,
                "seconds_per_batch": seconds / max(batches, 1),
                "train_loss": loss_sum / max(batches, 1), "test_error": 100.0 * wrong / len(te),
                "nfe_forward": nfe_f / max(batches, 1), "nfe_backward": nfe_b / max(batches, 1),
            }
            epochs.append(row)
            print(f"{model:8} epoch {epoch + 1}: {seconds:.2f} s ({batches} batches, {1e3 * row['seconds_per_batch']:.1f} ms each), "
                  f"NFE-F {row['nfe_forward']:.1f}, NFE-B {row['nfe_backward']:.1f}, test error {row['test_error']:.2f}%")
        results.append({"model": model, "n_params": n_params, "epochs": epochs})
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump({"settings": vars(args), "torch": torch.__version__, "results": results}, f, indent=1)
        os.replace(args.json + ".tmp", args.json)


if __name__ == "__main__":
    main()
