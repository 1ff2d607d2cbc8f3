"""PyTorch implementations of the benchmarked CD recipes (``pip install -e ".[bench]"``).

The same model, the same recipe as ebmppl's: a replay buffer with 5 %
re-initialisation from uniform noise, K practical-Langevin steps
``x ← clamp(x − s ∇E(x) + σ ξ)`` with the parameters frozen, the CD loss with
the ``α (E⁺² + E⁻²)`` penalty, one Adam step. Written the way a PyTorch user
writes it: ``torch.autograd.grad`` for the chain, ``loss.backward()`` for θ.

Two modes: ``eager`` (PyTorch's default) and ``compile`` (the model wrapped
in ``torch.compile``, default inductor backend; on CPU inductor generates C++
and needs a C++ compiler). On CPU PyTorch uses ``torch.set_num_threads`` =
the number of usable cores (``len(os.sched_getaffinity(0))``, which is also
PyTorch's own default on a machine without hyper-threading); on CUDA the
tensors live on the GPU.

Example (a tiny run; the benchmark drives :class:`TorchWorker` instead)::

    >>> import numpy as np
    >>> cd = TorchCD(MLP((2, 8, 1)), np.zeros((16, 2), np.float32), batch=4, k=2, step=0.01, noise=0.1,
    ...              clamp=None, alpha=0.1, lr=1e-3, b1=0.0, capacity=32, reinit=0.05, low=-1, high=1, seed=0)
    >>> isinstance(cd.run(2), float)
    True
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

MODES = ("eager", "compile")


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


def default_device() -> torch.device:
    """CUDA when PyTorch sees a GPU, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def use_all_cores() -> int:
    """Set PyTorch's intra-op threads to the usable cores (as ebmppl does for its devices); return the count."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(n)
    return torch.get_num_threads()


class TorchCD:
    """One CD training run in PyTorch (eager, or with a compiled ``model``)."""

    def __init__(self, model, data, *, batch, k, step, noise, clamp, alpha, lr, b1, capacity, reinit, low, high, seed,
                 device=None):
        torch.manual_seed(seed)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.model, self.data = model, torch.tensor(np.array(data), device=self.device)
        self.batch, self.k, self.step_size, self.noise, self.clamp = batch, k, step, noise, clamp
        self.alpha, self.reinit, self.low, self.high = alpha, reinit, low, high
        self.params = list(model.parameters())
        self.opt = torch.optim.Adam(self.params, lr=lr, betas=(b1, 0.999))
        shape = tuple(self.data.shape[1:])
        self.buffer = torch.rand(capacity, *shape, device=self.device) * (high - low) + low

    def train_step(self):
        dev = self.device
        batch = self.data[torch.randint(0, self.data.shape[0], (self.batch,), device=dev)]
        idx = torch.randint(0, self.buffer.shape[0], (self.batch,), device=dev)
        fresh = torch.rand(self.batch, device=dev) < self.reinit
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
        return loss.item()  # synchronises (CUDA) before the caller stops its clock


class TorchWorker:
    """The PyTorch contender in its own process, driven over a pipe.

    Once PyTorch has run in a process its thread pools stay there and slow
    XLA programs run later in the same process (measured: ebmppl and the
    pure-JAX loop both lose 5-10 %), so the benchmark keeps the frameworks
    apart: this starts ``python torch_reference.py MODEL STEPS MODE`` and each
    call sends a seed and waits until that run has finished. The worker warms
    up (and, for ``mode="compile"``, compiles) before it says ``ready``;
    ``info`` holds what it reported (device, threads, mode).
    """

    def __init__(self, model: str, steps: int, mode: str = "eager"):
        import pathlib
        import subprocess
        import sys

        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        here = pathlib.Path(__file__).resolve().parent
        # the worker loads the data through JAX: on the CPU, so that it does not take GPU memory from the benchmark
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "EBMPPL_CPU_DEVICES": "1"}
        self.proc = subprocess.Popen([sys.executable, str(here / "torch_reference.py"), model, str(steps), mode],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=here, env=env)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("ready"):
            self.proc.kill()
            raise RuntimeError(f"the PyTorch worker ({mode}) did not start: {line!r}")
        self.info = dict(item.split("=", 1) for item in line.split()[1:])

    def __call__(self, seed: int) -> None:
        self.proc.stdin.write(f"{seed}\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline().strip()
        if not reply.startswith("done"):
            raise RuntimeError(f"the PyTorch worker failed: {reply!r}")

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _serve(model_name: str, steps: int, mode: str) -> None:
    import sys

    import bench_cd_steps as bench

    device = default_device()
    threads = use_all_cores()
    r = bench.RECIPES[model_name]
    data = bench.load_data(model_name)
    model = (MLP((2, *bench.WIDTHS, 1)) if model_name == "mlp" else ConvNet(1, bench.CONV_WIDTH)).to(device)
    net = torch.compile(model) if mode == "compile" else model

    def one_run(seed: int, n: int) -> None:
        torch.manual_seed(seed)  # fresh parameters, same module: a compiled module is not compiled again
        for layer in model.modules():
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()
        TorchCD(net, data, batch=bench.BATCH, k=bench.K, step=r["step"], noise=r["noise"], clamp=r["clamp"],
                alpha=r["alpha"], lr=r["lr"], b1=r["b1"], capacity=bench.CAPACITY, reinit=bench.REINIT,
                low=r["low"], high=r["high"], seed=seed, device=device).run(n)

    try:
        one_run(0, 3)  # warm-up; compiles in mode "compile"
    except Exception as e:  # noqa: BLE001  (reported to the parent, which skips this contender)
        print(f"failed {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", flush=True)
        return
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"ready mode={mode} device={device.type} threads={threads} torch={torch.__version__} "
          f"name={name.replace(' ', '_')}", flush=True)
    for line in sys.stdin:
        one_run(int(line), steps)
        print("done", flush=True)


if __name__ == "__main__":
    import sys

    _serve(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "eager")
