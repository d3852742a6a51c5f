#!/usr/bin/env python3
"""Time per training iteration of torchdiffeq's examples/latent_ode.py set-up.

The same architecture and set-up as torchdiffeq's `examples/latent_ode.py` (Chen et al.
2018, section 5): 1000 noisy spirals (clockwise and counter-clockwise, ntotal 500,
nsample 100, stop 6 pi, noise 0.3, a 0, b 0.3), the whole set as one batch, a tanh
recognition RNN (25 hidden) run backwards over the 100 observations, latent dimension
4, latent field 4-20-20-4 (ELU), decoder 4-20-2 (ReLU), Gaussian likelihood with the
noise's standard deviation, closed-form KL, Adam lr 0.01, dopri5 at the given tolerances
(torchdiffeq's defaults rtol 1e-7, atol 1e-9 unless changed), optionally the adjoint.
One thread. Prints a JSON line with the mean and median seconds per iteration (after
`--warmup` iterations) so that `benches/README.md`'s table can be reproduced next to
`cargo bench -p benches --bench latent`.

    python3 models/scripts/latent_ode_torch.py --niters 20 --rtol 1e-3 --atol 1e-4
"""
import argparse
import json
import time

import numpy as np
import numpy.random as npr
import torch
import torch.nn as nn

parser = argparse.ArgumentParser()
parser.add_argument("--niters", type=int, default=20)
parser.add_argument("--warmup", type=int, default=2)
parser.add_argument("--nspiral", type=int, default=1000)
parser.add_argument("--rtol", type=float, default=1e-7)
parser.add_argument("--atol", type=float, default=1e-9)
parser.add_argument("--adjoint", action="store_true")
parser.add_argument("--seminorm", action="store_true",
                    help="with --adjoint: adjoint_options=dict(norm='seminorm') (the parameters' "
                         "adjoint out of the backward error norm, as the Rust checkpointed mode does)")
parser.add_argument("--double", action="store_true", help="float64 instead of float32")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

torch.set_num_threads(1)
torch.manual_seed(args.seed)
npr.seed(args.seed)
if args.adjoint:
    from torchdiffeq import odeint_adjoint as odeint
else:
    from torchdiffeq import odeint
dtype = torch.float64 if args.double else torch.float32


def generate_spiral2d(nspiral=1000, ntotal=500, nsample=100, start=0.0, stop=6 * np.pi,
                      noise_std=0.3, a=0.0, b=0.3):
    orig_ts = np.linspace(start, stop, num=ntotal)
    samp_ts = orig_ts[:nsample]
    zs_cw = stop + 1.0 - orig_ts
    rs_cw = a + b * 50.0 / zs_cw
    xs, ys = rs_cw * np.cos(zs_cw) - 5.0, rs_cw * np.sin(zs_cw)
    orig_traj_cw = np.stack((xs, ys), axis=1)
    zs_cc = orig_ts
    rw_cc = a + b * zs_cc
    xs, ys = rw_cc * np.cos(zs_cc) + 5.0, rw_cc * np.sin(zs_cc)
    orig_traj_cc = np.stack((xs, ys), axis=1)
    samp_trajs = []
    for _ in range(nspiral):
        t0_idx = npr.multinomial(1, [1.0 / (ntotal - 2.0 * nsample)] * (ntotal - int(2 * nsample)))
        t0_idx = np.argmax(t0_idx) + nsample
        cc = bool(npr.rand() > 0.5)
        orig_traj = orig_traj_cc if cc else orig_traj_cw
        samp_traj = orig_traj[t0_idx:t0_idx + nsample, :].copy()
        samp_traj += npr.randn(*samp_traj.shape) * noise_std
        samp_trajs.append(samp_traj)
    return np.stack(samp_trajs, axis=0), samp_ts


class LatentODEfunc(nn.Module):
    def __init__(self, latent_dim=4, nhidden=20):
        super().__init__()
        self.elu = nn.ELU(inplace=True)
        self.fc1 = nn.Linear(latent_dim, nhidden)
        self.fc2 = nn.Linear(nhidden, nhidden)
        self.fc3 = nn.Linear(nhidden, latent_dim)
        self.nfe = 0

    def forward(self, t, x):
        self.nfe += 1
        out = self.elu(self.fc1(x))
        out = self.elu(self.fc2(out))
        return self.fc3(out)


class RecognitionRNN(nn.Module):
    def __init__(self, latent_dim=4, obs_dim=2, nhidden=25, nbatch=1):
        super().__init__()
        self.nhidden = nhidden
        self.nbatch = nbatch
        self.i2h = nn.Linear(obs_dim + nhidden, nhidden)
        self.h2o = nn.Linear(nhidden, latent_dim * 2)

    def forward(self, x, h):
        h = torch.tanh(self.i2h(torch.cat((x, h), dim=1)))
        return self.h2o(h), h

    def init_hidden(self):
        return torch.zeros(self.nbatch, self.nhidden, dtype=dtype)


class Decoder(nn.Module):
    def __init__(self, latent_dim=4, obs_dim=2, nhidden=20):
        super().__init__()
        self.relu = nn.ReLU(inplace=True)
        self.fc1 = nn.Linear(latent_dim, nhidden)
        self.fc2 = nn.Linear(nhidden, obs_dim)

    def forward(self, z):
        return self.fc2(self.relu(self.fc1(z)))


def log_normal_pdf(x, mean, logvar):
    const = torch.log(torch.tensor(2.0 * np.pi, dtype=dtype))
    return -0.5 * (const + logvar + (x - mean) ** 2.0 / torch.exp(logvar))


def normal_kl(mu1, lv1, mu2, lv2):
    v1, v2 = torch.exp(lv1), torch.exp(lv2)
    return lv2 / 2.0 - lv1 / 2.0 + (v1 + (mu1 - mu2) ** 2.0) / (2.0 * v2) - 0.5


def main():
    latent_dim, nhidden, rnn_nhidden, obs_dim, noise_std = 4, 20, 25, 2, 0.3
    trajs, ts = generate_spiral2d(nspiral=args.nspiral)
    samp_trajs = torch.from_numpy(trajs).to(dtype)
    samp_ts = torch.from_numpy(ts).to(dtype)
    func = LatentODEfunc(latent_dim, nhidden).to(dtype)
    rec = RecognitionRNN(latent_dim, obs_dim, rnn_nhidden, args.nspiral).to(dtype)
    dec = Decoder(latent_dim, obs_dim, nhidden).to(dtype)
    params = list(func.parameters()) + list(dec.parameters()) + list(rec.parameters())
    optimizer = torch.optim.Adam(params, lr=0.01)
    noise_logvar = 2.0 * torch.log(torch.tensor(noise_std, dtype=dtype))
    times, losses, nfes, nfes_fwd = [], [], [], []
    for itr in range(args.warmup + args.niters):
        start = time.perf_counter()
        func.nfe = 0
        optimizer.zero_grad()
        h = rec.init_hidden()
        for t in reversed(range(samp_trajs.size(1))):
            obs = samp_trajs[:, t, :]
            out, h = rec.forward(obs, h)
        qz0_mean, qz0_logvar = out[:, :latent_dim], out[:, latent_dim:]
        epsilon = torch.randn(qz0_mean.size(), dtype=dtype)
        z0 = epsilon * torch.exp(0.5 * qz0_logvar) + qz0_mean
        extra = {"adjoint_options": dict(norm="seminorm")} if args.adjoint and args.seminorm else {}
        pred_z = odeint(func, z0, samp_ts, rtol=args.rtol, atol=args.atol, **extra).permute(1, 0, 2)
        nfe_forward = func.nfe
        pred_x = dec(pred_z)
        logpx = log_normal_pdf(samp_trajs, pred_x, noise_logvar).sum(-1).sum(-1)
        zeros = torch.zeros(z0.size(), dtype=dtype)
        analytic_kl = normal_kl(qz0_mean, qz0_logvar, zeros, zeros).sum(-1)
        loss = torch.mean(-logpx + analytic_kl, dim=0)
        loss.backward()
        optimizer.step()
        elapsed = time.perf_counter() - start
        if itr >= args.warmup:
            times.append(elapsed)
            losses.append(loss.item())
            nfes.append(func.nfe)
            nfes_fwd.append(nfe_forward)
    print(json.dumps({
        "impl": "torchdiffeq " + ("odeint_adjoint" if args.adjoint else "odeint")
                + (" seminorm" if args.adjoint and args.seminorm else ""),
        "dtype": "f64" if args.double else "f32",
        "nspiral": args.nspiral, "rtol": args.rtol, "atol": args.atol,
        "iterations": args.niters,
        "mean_s_per_iter": float(np.mean(times)),
        "median_s_per_iter": float(np.median(times)),
        "mean_nfe_forward": float(np.mean(nfes_fwd)),
        "mean_nfe_forward_plus_backward": float(np.mean(nfes)),
        "last_loss": losses[-1],
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
