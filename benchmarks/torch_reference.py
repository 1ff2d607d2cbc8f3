"""PyTorch eager implementations of the benchmarked CD recipes (``pip install -e ".[bench]"``).

The same model, the same recipe as ebmppl's: a replay buffer with 5 %
re-initialisation from uniform noise, K practical-Langevin steps
``x ← clamp(x − s ∇E(x) + σ ξ)`` with the parameters frozen, the CD loss with
the ``α (E⁺² + E⁻²)`` penalty, one Adam step. Written the way a PyTorch user
writes it: ``torch.autograd.grad`` for the chain, ``loss.backward()`` for θ.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self, sizes):
        super().__init__()
        layers = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(a, b), nn.SiLU()]
        self.net = nn.Sequential(*layers[:-1])

    def forward(self, x):
        return self.net(x)[:, 0]


class ConvNet(nn.Module):
    """ebmppl.nn.ConvEnergy's architecture: 3x3 convs (strides 1, 2, 2), SiLU, mean pool, linear."""

    def __init__(self, in_channels, width):
        super().__init__()
        c = width
        self.convs = nn.Sequential(nn.Conv2d(in_channels, c, 3, 1, 1), nn.SiLU(), nn.Conv2d(c, 2 * c, 3, 2, 1), nn.SiLU(),
                                   nn.Conv2d(2 * c, 4 * c, 3, 2, 1), nn.SiLU())
        self.head = nn.Linear(4 * c, 1)

    def forward(self, x):
        return self.head(self.convs(x).mean((2, 3)))[:, 0]


class TorchCD:
    """One CD training run in PyTorch eager mode."""

    def __init__(self, model, data, *, batch, k, step, noise, clamp, alpha, lr, b1, capacity, reinit, low, high, seed):
        torch.manual_seed(seed)
        self.model, self.data = model, torch.tensor(np.array(data))
        self.batch, self.k, self.step_size, self.noise, self.clamp = batch, k, step, noise, clamp
        self.alpha, self.reinit, self.low, self.high = alpha, reinit, low, high
        self.params = list(model.parameters())
        self.opt = torch.optim.Adam(self.params, lr=lr, betas=(b1, 0.999))
        shape = tuple(self.data.shape[1:])
        self.buffer = torch.rand(capacity, *shape) * (high - low) + low

    def train_step(self):
        batch = self.data[torch.randint(0, self.data.shape[0], (self.batch,))]
        idx = torch.randint(0, self.buffer.shape[0], (self.batch,))
        fresh = torch.rand(self.batch) < self.reinit
        noise = torch.rand_like(batch) * (self.high - self.low) + self.low
        x = torch.where(fresh.view(-1, *[1] * (batch.dim() - 1)), noise, self.buffer[idx])
        for p in self.params:
            p.requires_grad_(False)
        for _ in range(self.k):
            x.requires_grad_(True)
            (grad,) = torch.autograd.grad(self.model(x).sum(), x)
            x = x.detach() - self.step_size * grad + self.noise * torch.randn_like(x)
            if self.clamp is not None:
                x = x.clamp(*self.clamp)
        for p in self.params:
            p.requires_grad_(True)
        x = x.detach()
        e_pos, e_neg = self.model(batch), self.model(x)
        loss = e_pos.mean() - e_neg.mean() + self.alpha * ((e_pos**2).mean() + (e_neg**2).mean())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.buffer[idx] = x
        return loss

    def run(self, steps):
        for _ in range(steps):
            loss = self.train_step()
        return loss.item()


class TorchWorker:
    """The PyTorch contender in its own process, driven over a pipe.

    Once PyTorch has run in a process its thread pools stay there and slow
    XLA programs run later in the same process (measured: ebmppl and the
    pure-JAX loop both lose 5-10 %), so the benchmark keeps the frameworks
    apart: this starts ``python torch_reference.py MODEL STEPS`` and each call
    sends a seed and waits until that run has finished.
    """

    def __init__(self, model: str, steps: int):
        import pathlib
        import subprocess
        import sys

        here = pathlib.Path(__file__).resolve().parent
        self.proc = subprocess.Popen([sys.executable, str(here / "torch_reference.py"), model, str(steps)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=here)
        assert self.proc.stdout.readline().strip() == "ready"

    def __call__(self, seed: int) -> None:
        self.proc.stdin.write(f"{seed}\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline().strip()
        if not reply.startswith("done"):
            raise RuntimeError(f"the PyTorch worker failed: {reply!r}")

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _serve(model_name: str, steps: int) -> None:
    import sys

    import bench_cd_steps as bench

    r = bench.RECIPES[model_name]
    data = bench.load_data(model_name)
    print("ready", flush=True)
    for line in sys.stdin:
        seed = int(line)
        model = MLP((2, *bench.WIDTHS, 1)) if model_name == "mlp" else ConvNet(1, bench.CONV_WIDTH)
        TorchCD(model, data, batch=bench.BATCH, k=bench.K, step=r["step"], noise=r["noise"], clamp=r["clamp"],
                alpha=r["alpha"], lr=r["lr"], b1=r["b1"], capacity=bench.CAPACITY, reinit=bench.REINIT,
                low=r["low"], high=r["high"], seed=seed).run(steps)
        print("done", flush=True)


if __name__ == "__main__":
    import sys

    _serve(sys.argv[1], int(sys.argv[2]))
