"""CD training steps per second: ebmppl vs a hand-written pure-JAX loop vs PyTorch eager, in one run.

Two recipes, each implemented three ways with the same model and the same
arithmetic (replay buffer of 10,000 with 5 % re-initialisation from uniform
noise, batch 128, K = 20 practical-Langevin steps, CD loss with the α(E⁺² +
E⁻²) penalty, Adam):

* **mlp** — two moons, MLP 2-128-128-128-1 (SiLU), Langevin step 0.005, noise 0.1;
* **conv** — the 8x8 digits, ``ConvEnergy(width=32)`` (3x3 convs 32-64-128,
  strides 1-2-2, SiLU, mean pool, linear), Langevin step 1, noise 0.005,
  clamped to [-1, 1].

ebmppl runs through the public ``fit`` (chunked scans, metrics, divergence
guard, training-health checks; no checkpoints, no progress bar) with its
default ``chunk_size`` (a host round trip and a health check every 50 steps,
once in a run that is shorter; until Dec 2026 the benchmark chose
``num_steps // 5``, which put a health check every 2 steps into the 10-step
ConvNet runs, ~8 % of their time, and every 200 into the MLP runs: neither
is what a user gets) and its default ``devices``: on CPU
``import ebmppl`` makes one XLA device per usable core and ``fit`` shards the
batch over them (the device count it ran with is reported); the row
``ebmppl (1 device)`` is the same call with ``devices=None``. The pure-JAX reference is the loop a
JAX user writes by hand: plain arrays, one jitted ``lax.scan`` over steps, the
chain inlined, ``lax.conv_general_dilated`` for convolutions. For the ConvNet,
ebmppl is also run with ``conv_impl="lax"`` to show what its CPU formulation
(im2col GEMMs, ``ebmppl.nn.conv2d``) buys. PyTorch runs in eager mode (see
``torch_reference.py``) on every usable core (``torch.set_num_threads``;
on CUDA on the GPU), and with the model wrapped in ``torch.compile`` where
that works (row ``PyTorch (torch.compile)``; the ratio bar is against eager,
and the best PyTorch is reported too). All compiled/warmed first; runs interleaved;
speeds are medians over rounds, ratios the median of the per-round ratios
(contenders of one round run seconds apart, so the machine's drift cancels).

Achieved GFLOP/s = (XLA's FLOP count of K score evaluations + one loss
gradient on the batch) × steps per second, as a fraction of the float32
matrix-multiply peak (the larger of one big GEMM and one GEMM per device at
once: the machine's peak, not one core's). The peak is measured in every
round beside the contenders, so a fraction is the median over rounds of
achieved / peak measured seconds apart.

Usage::

    python benchmarks/bench_cd_steps.py [--model mlp|conv|both] [--repeats 12] [--steps N]
        [--torch eager,compile] [--ebmppl-devices default|all|N]
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from _common import (compiled_flops, device_description, interleaved_times, matmul_peak_gflops, matmul_peaks,
                     paired_speedup, save)
from ebmppl import Energy, buffer, fit, samplers
from ebmppl.data import load_digits, two_moons
from ebmppl.nn import ConvEnergy, MLPEnergy
from ebmppl.objectives import cd_loss, contrastive_divergence

BATCH, K, CAPACITY, REINIT = 128, 20, 10_000, 0.05
RECIPES = {
    "mlp": dict(steps=1000, step=0.005, noise=0.1, clamp=None, alpha=0.05, lr=1e-3, b1=0.0, low=-2.5, high=2.5),
    "conv": dict(steps=10, step=1.0, noise=0.005, clamp=(-1.0, 1.0), alpha=0.1, lr=1e-4, b1=0.0, low=-1.0, high=1.0),
}
WIDTHS, CONV_WIDTH = (128, 128, 128), 32
ACCELERATOR_STEPS = {"mlp": 400, "conv": 100}  # steps per timed run on a GPU/TPU: an H200 runs ebmppl's MLP
# run in 0.2 s and PyTorch eager's ConvNet run in 3 s (2000 / 500 steps did not fit a 15-minute device lease)


# ---------------------------------------------------------------- pure JAX, written by hand
def mlp_init(key):
    sizes, params = (2, *WIDTHS, 1), []
    for a, b, k in zip(sizes[:-1], sizes[1:], jax.random.split(key, len(sizes) - 1), strict=True):
        kw, kb = jax.random.split(k)
        lim = 1 / np.sqrt(a)
        params.append((jax.random.uniform(kw, (b, a), minval=-lim, maxval=lim),
                       jax.random.uniform(kb, (b,), minval=-lim, maxval=lim)))
    return params


def mlp_energy(params, x):
    for w, b in params[:-1]:
        x = jax.nn.silu(w @ x + b)
    w, b = params[-1]
    return (w @ x + b)[0]


def conv_init(key):
    c, params = CONV_WIDTH, []
    for (o, i), k in zip(((c, 1), (2 * c, c), (4 * c, 2 * c)), jax.random.split(key, 3), strict=True):
        lim = 1 / np.sqrt(9 * i)
        params.append((jax.random.uniform(k, (o, i, 3, 3), minval=-lim, maxval=lim), jnp.zeros(o)))
    kh = jax.random.fold_in(key, 9)
    params.append((jax.random.uniform(kh, (1, 4 * c), minval=-0.1, maxval=0.1), jnp.zeros(1)))
    return params


def conv_energy(params, x):
    for (w, b), stride in zip(params[:3], (1, 2, 2), strict=True):
        x = jax.lax.conv_general_dilated(x[None], w, (stride, stride), ((1, 1), (1, 1)),
                                         dimension_numbers=("NCHW", "OIHW", "NCHW"))[0]
        x = jax.nn.silu(x + b[:, None, None])
    w, b = params[3]
    return (w @ jnp.mean(x, axis=(1, 2)) + b)[0]


def reference(energy, init, data, r, num_steps):
    batched = jax.vmap(energy, in_axes=(None, 0))
    grad_x = jax.vmap(jax.grad(energy, argnums=1), in_axes=(None, 0))
    opt = optax.adam(r["lr"], b1=r["b1"], b2=0.999)
    shape = data.shape[1:]

    def train_step(carry, _):
        params, opt_state, buf, key = carry
        key, k_batch, k_idx, k_mask, k_noise, k_chain = jax.random.split(key, 6)
        batch = data[jax.random.randint(k_batch, (BATCH,), 0, data.shape[0])]
        idx = jax.random.randint(k_idx, (BATCH,), 0, CAPACITY)
        fresh = jax.random.bernoulli(k_mask, REINIT, (BATCH,) + (1,) * len(shape))
        noise = jax.random.uniform(k_noise, (BATCH, *shape), minval=r["low"], maxval=r["high"])
        x = jnp.where(fresh, noise, buf[idx])

        def langevin(x, k):
            x = x - r["step"] * grad_x(params, x) + r["noise"] * jax.random.normal(k, x.shape)
            return (x if r["clamp"] is None else jnp.clip(x, *r["clamp"])), None

        x, _ = jax.lax.scan(langevin, x, jax.random.split(k_chain, K))
        x = jax.lax.stop_gradient(x)

        def loss(p):
            ep, en = batched(p, batch), batched(p, x)
            return ep.mean() - en.mean() + r["alpha"] * (jnp.mean(ep**2) + jnp.mean(en**2))

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, buf.at[idx].set(x), key), value

    @jax.jit
    def run(key):
        k_params, k_buf, key = jax.random.split(key, 3)
        params = init(k_params)
        buf = jax.random.uniform(k_buf, (CAPACITY, *shape), minval=r["low"], maxval=r["high"])
        carry, losses = jax.lax.scan(train_step, (params, opt.init(params), buf, key), None, length=num_steps)
        return carry[0], losses

    return run


# ---------------------------------------------------------------- the three contenders
def load_data(model: str):
    return two_moons().sample(jax.random.key(0), 10_000) if model == "mlp" else jnp.asarray(load_digits("train")[0])


TORCH_ROWS = {"eager": "PyTorch (eager)", "compile": "PyTorch (torch.compile)"}
PEAK = "float32 matmul peak"  # timed in the rounds like a contender, not a row of the table


def devices_used(result) -> int:
    """How many devices a ``fit`` ran on (its parameters are replicated over them)."""
    return len(jax.tree.leaves(result.state.params)[0].sharding.device_set)


def torch_contenders(model: str, steps: int, modes: list[str]) -> tuple[dict, dict]:
    """One PyTorch worker process per mode; modes that fail to start (no torch, no compiler) are skipped."""
    runs, info = {}, {}
    try:
        import torch  # noqa: F401  (only to know it is installed; it runs in its own process)
    except ImportError:
        print("PyTorch not installed (pip install -e '.[bench]'): skipping the PyTorch contenders")
        return runs, info
    from torch_reference import TorchWorker

    for mode in modes:
        try:
            worker = TorchWorker(model, steps, mode)
        except RuntimeError as e:
            print(f"skipping {TORCH_ROWS[mode]}: {e}")
            continue
        runs[TORCH_ROWS[mode]], info[TORCH_ROWS[mode]] = worker, worker.info
    return runs, info


def contenders(model: str, repeats_steps: int, torch_modes=("eager",), ebmppl_devices="default"):
    """The timed callables of one recipe: ebmppl (default devices and one device), pure JAX, PyTorch."""
    r = RECIPES[model]
    steps = repeats_steps or (r["steps"] if jax.default_backend() == "cpu" else ACCELERATOR_STEPS[model])
    data = load_data(model)
    if model == "mlp":
        nets = {"ebmppl": MLPEnergy(2, WIDTHS, key=jax.random.key(1))}
        ref_energy, ref_init, event = mlp_energy, mlp_init, (2,)
    else:
        nets = {impl_name: ConvEnergy(1, width=CONV_WIDTH, conv_impl=impl, key=jax.random.key(1))
                for impl_name, impl in (("ebmppl", "auto"), ("ebmppl (conv_impl='lax')", "lax"))}
        ref_energy, ref_init, event = conv_energy, conv_init, (1, 8, 8)
    sampler = samplers.langevin(step_size=r["step"], noise_scale=r["noise"], clamp=r["clamp"])
    chain_init = buffer.replay_buffer(CAPACITY, REINIT, buffer.uniform_noise(r["low"], r["high"]))
    default_kw = {} if ebmppl_devices == "default" else {"devices": ebmppl_devices}
    variants = {"ebmppl": default_kw}
    if len(jax.devices()) > 1:
        variants["ebmppl (1 device)"] = {"devices": None}
    runs, energies, used = {}, {}, {}
    for name, net in nets.items():
        energy = Energy.from_equinox(net, event_shape=event)
        energies[name] = energy
        trainer = contrastive_divergence(energy, optax.adam(r["lr"], b1=r["b1"], b2=0.999), sampler=sampler,
                                         chain_init=chain_init, num_mcmc_steps=K, alpha=r["alpha"])
        for suffix, dev_kw in variants.items():
            if name != "ebmppl" and suffix != "ebmppl":
                continue  # conv_impl='lax' only with the default devices
            row = suffix if name == "ebmppl" else name

            def run_ebmppl(seed, energy=energy, trainer=trainer, dev_kw=dev_kw, row=row):
                res = fit(energy, jax.random.key(seed), data, num_steps=steps, batch_size=BATCH, objective=trainer,
                          progress_bar=False, **dev_kw)
                jax.block_until_ready(res.state.params)
                used[row] = devices_used(res)

            runs[row] = run_ebmppl
    ref = reference(ref_energy, ref_init, data, r, steps)
    runs["pure JAX"] = lambda seed: jax.block_until_ready(ref(jax.random.key(seed)))
    torch_runs, torch_info = torch_contenders(model, steps, list(torch_modes))
    runs.update(torch_runs)
    return runs, energies["ebmppl"], data, r, steps, used, torch_info


def flops_per_step(energy: Energy, data, r) -> float:
    """K score evaluations on a batch + one CD loss gradient (XLA's count, convolutions as convolutions)."""
    x = data[:BATCH]
    score = compiled_flops(lambda x: energy.score(x), x)
    grad = compiled_flops(lambda p: jax.grad(lambda q: cd_loss(energy, q, x, x, r["alpha"])[0])(p), energy.params)
    return K * score + grad


def parse_devices(text: str):
    """``--ebmppl-devices``: ``default`` (fit's own default), ``all``, ``none`` or a count."""
    if text in ("default", "all"):
        return text
    if text == "none":
        return None
    return int(text)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["mlp", "conv", "both"], default="both")
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--steps", type=int, default=0, help="override the steps per timed run")
    parser.add_argument("--torch", default="eager,compile",
                        help="PyTorch modes to run, comma-separated from eager,compile ('' for none)")
    parser.add_argument("--ebmppl-devices", default="default", type=parse_devices,
                        help="devices= of the main ebmppl row: default (fit's default), all, none, or a count")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds of rest before each timed call")
    args = parser.parse_args(argv)
    modes = [m for m in args.torch.split(",") if m]
    peaks = matmul_peaks()  # the two ways of filling the machine (one GEMM, one per device); per round: the larger
    bf16_peak = matmul_peak_gflops(dtype=jnp.bfloat16) if jax.default_backend() != "cpu" else None
    out = []
    for model in (["mlp", "conv"] if args.model == "both" else [args.model]):
        runs, energy, data, r, steps, used, torch_info = contenders(model, args.steps, modes, args.ebmppl_devices)
        round_peaks: list[float] = []  # the matmul peak measured again in every round, beside the contenders
        runs[PEAK] = lambda seed: round_peaks.append(matmul_peak_gflops())
        times = interleaved_times(runs, args.repeats, pause=args.pause)
        del times[PEAK]
        round_peaks = round_peaks[1:]  # the warm-up call dropped: one figure per round
        seconds = {name: float(np.median(t)) for name, t in times.items()}
        for run in runs.values():
            if hasattr(run, "close"):
                run.close()
        if model == "conv":  # count the model's FLOPs as convolutions, whichever formulation ran
            lax_net = ConvEnergy(1, width=CONV_WIDTH, conv_impl="lax", key=jax.random.key(1))
            energy = Energy.from_equinox(lax_net, event_shape=(1, 8, 8))
        flops = flops_per_step(energy, data, r)
        # fraction of the peak: round by round (the GEMMs ran seconds from the contender), median over rounds
        rows = {name: {"steps_per_s": steps / s, "gflops": flops * steps / s / 1e9,
                       "fraction_of_matmul_peak": float(np.median(flops * steps / np.asarray(times[name]) / 1e9
                                                                  / np.asarray(round_peaks))),
                       "speedup_of_ebmppl": paired_speedup(times, "ebmppl", name)} for name, s in seconds.items()}
        for name, n in used.items():
            rows[name]["devices"] = n
        for name, info in torch_info.items():
            rows[name]["torch"] = info
        result = {"benchmark": f"cd_steps_{model}", "steps": steps, "repeats": args.repeats, "batch": BATCH,
                  "flops_per_step": flops, "matmul_peak_gflops": float(np.median(round_peaks)),
                  "matmul_peak_rounds": round_peaks, "matmul_peaks_at_start": peaks, "contenders": rows,
                  "ebmppl_devices": used.get("ebmppl", 1), "device": device_description(),
                  "cpu_threads": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
                  "ratio_ebmppl_over_pure_jax": rows["pure JAX"]["speedup_of_ebmppl"]["median"]}
        if bf16_peak is not None:
            result["matmul_peak_gflops_bf16"] = bf16_peak
        if "PyTorch (eager)" in rows:
            result["ratio_ebmppl_over_pytorch"] = rows["PyTorch (eager)"]["speedup_of_ebmppl"]["median"]
        if TORCH_ROWS["compile"] in rows:
            result["ratio_ebmppl_over_pytorch_compile"] = rows[TORCH_ROWS["compile"]]["speedup_of_ebmppl"]["median"]
        torch_rows = [n for n in TORCH_ROWS.values() if n in rows]
        if torch_rows:
            best = max(torch_rows, key=lambda n: rows[n]["steps_per_s"])
            result["best_pytorch"] = best
            result["ratio_ebmppl_over_best_pytorch"] = rows[best]["speedup_of_ebmppl"]["median"]
        save(f"cd_steps_{model}", result)
        out.append(result)
    return out


if __name__ == "__main__":
    main()
