"""Cross-check a `neuralode train` run in PyTorch and JAX.

Loads `params.safetensors` into a `torch.nn.Sequential` with `load_state_dict(strict=True)`
(names `f.0.weight`, ... in PyTorch's `[out, in]` layout), integrates the learned ODE
`dz/dt = MLP(phi(z))` with torchdiffeq's dopri5 at tight tolerances from the first state of
`prediction.csv`, and reports the largest difference from our prediction. Then loads the
same file with `safetensors.flax` (JAX arrays) and evaluates the vector field with
`jax.numpy` at the predicted states, against PyTorch's.

Usage (needs torch, torchdiffeq, jax, safetensors; not part of CI):
    cargo run --release -- train --out out/train
    python models/scripts/check_pytorch_jax.py out/train
"""

import csv
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torchdiffeq import odeint


def main(run: Path) -> int:
    settings = json.loads((run / "metrics.json").read_text())["settings"]
    with open(run / "prediction.csv") as f:
        rows = list(csv.reader(f))[1:]
    data = np.array(rows, dtype=np.float64)
    ts, ours = data[:, 0], data[:, 1:]
    dim, hidden, layers = ours.shape[1], settings["hidden"], settings["layers"]
    cubic = settings["features"] == "cubic"

    # The MLP: Linear, Tanh, ..., Linear, with indices as in our parameter names.
    mods = []
    width = dim
    for _ in range(layers):
        mods += [torch.nn.Linear(width, hidden), torch.nn.Tanh()]
        width = hidden
    mods.append(torch.nn.Linear(width, dim))
    f = torch.nn.Sequential(*mods).double()
    state = {k.removeprefix("f."): v for k, v in load_file(run / "params.safetensors").items()}
    f.load_state_dict(state, strict=True)

    def field(_t, z):
        return f(z**3 if cubic else z)

    with torch.no_grad():
        theirs = odeint(
            field,
            torch.tensor(ours[0]),
            torch.tensor(ts),
            method="dopri5",
            rtol=1e-10,
            atol=1e-12,
        ).numpy()
    diff = np.abs(theirs - ours).max()
    scale = np.abs(ours).max()
    tol = settings["rtol"] * 100 * scale
    print(f"PyTorch + torchdiffeq dopri5 (rtol 1e-10) vs ours (rtol {settings['rtol']}): "
          f"max |difference| {diff:.2e} over {len(ts)} times, |y| up to {scale:.2f}")

    # JAX: the same tensors through safetensors.flax, the same field with jax.numpy.
    import jax
    import jax.numpy as jnp
    from safetensors.flax import load_file as load_jax

    jax.config.update("jax_enable_x64", True)
    p = load_jax(run / "params.safetensors")
    z = jnp.asarray(ours)
    x = z**3 if cubic else z
    for i in range(layers):
        x = jnp.tanh(x @ p[f"f.{2 * i}.weight"].T + p[f"f.{2 * i}.bias"])
    fj = x @ p[f"f.{2 * layers}.weight"].T + p[f"f.{2 * layers}.bias"]
    with torch.no_grad():
        ft = field(0.0, torch.tensor(ours)).numpy()
    djax = np.abs(np.asarray(fj) - ft).max()
    print(f"JAX (safetensors.flax) vs PyTorch vector field at {len(ts)} states: "
          f"max |difference| {djax:.2e} (dtype {p['f.0.weight'].dtype})")
    ok = diff < tol and djax < 1e-12
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "out/train")))
