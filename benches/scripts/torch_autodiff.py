"""PyTorch (CPU, one thread) on the autodiff bench's work, for reference next to
`cargo bench -p benches --bench autodiff`: the 2 -> 64 -> 64 -> 2 tanh MLP at batch 16, 256
and 4096 (f32 and f64), value (no_grad) and value + VJP (autograd.grad of <y, a> with
respect to z and all parameters), and the conv block (two 64-channel 3x3 convolutions with
group norm (8 groups), relu between, 7x7 maps, batch 128, f32) with the VJP for x and both
kernels. Prints the fastest of many runs (microseconds) and the ratio.

    python benches/scripts/torch_autodiff.py
"""

import time

import torch


def best(fn, reps):
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e6 * min(times)


def mlp(dtype):
    for batch in (16, 256, 4096):
        f = torch.nn.Sequential(
            torch.nn.Linear(2, 64), torch.nn.Tanh(),
            torch.nn.Linear(64, 64), torch.nn.Tanh(),
            torch.nn.Linear(64, 2),
        ).to(dtype)
        z = torch.randn(batch, 2, dtype=dtype)
        a = torch.randn(batch, 2, dtype=dtype)
        params = list(f.parameters())

        def value():
            with torch.no_grad():
                f(z)

        def vjp():
            zz = z.requires_grad_(True)
            y = f(zz)
            torch.autograd.grad(y, [zz] + params, a)

        reps = 3000 if batch < 4096 else 300
        v, g = best(value, reps), best(vjp, reps)
        print(f"mlp_{str(dtype)[6:]} batch {batch:5}: value {v:9.2f} us, value+vjp {g:9.2f} us, ratio {g / v:.2f}")


def conv():
    c = 64
    k1 = torch.nn.Conv2d(c, c, 3, padding=1, bias=False)
    k2 = torch.nn.Conv2d(c, c, 3, padding=1, bias=False)
    g1 = torch.nn.GroupNorm(8, c, affine=False, eps=1e-5)
    g2 = torch.nn.GroupNorm(8, c, affine=False, eps=1e-5)
    x = torch.randn(128, c, 7, 7)
    a = torch.randn(128, c, 7, 7)

    def block(x):
        return g2(k2(torch.relu(g1(k1(x)))))

    def value():
        with torch.no_grad():
            block(x)

    def vjp():
        xx = x.requires_grad_(True)
        torch.autograd.grad(block(xx), [xx, k1.weight, k2.weight], a)

    v, g = best(value, 30), best(vjp, 30)
    print(f"conv_block_f32 batch 128: value {v:9.1f} us, value+vjp {g:9.1f} us, ratio {g / v:.2f}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} thread")
    mlp(torch.float32)
    mlp(torch.float64)
    conv()
