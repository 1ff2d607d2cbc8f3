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
guard; no checkpoints, no progress bar). The pure-JAX reference is the loop a
JAX user writes by hand: plain arrays, one jitted ``lax.scan`` over steps, the
chain inlined, ``lax.conv_general_dilated`` for convolutions. For the ConvNet,
ebmppl is also run with ``conv_impl="lax"`` to show what its CPU formulation
(im2col GEMMs, ``ebmppl.nn.conv2d``) buys. PyTorch runs in eager mode (see
``torch_reference.py``). All compiled/warmed first; runs interleaved;
speeds are medians over rounds, ratios the median of the per-round ratios
(contenders of one round run seconds apart, so the machine's drift cancels).

Achieved GFLOP/s = (XLA's FLOP count of K score evaluations + one loss
gradient on the batch) × steps per second, as a fraction of the float32
matrix-multiply peak measured in the same run.

Usage::

    python benchmarks/bench_cd_steps.py [--model mlp|conv|both] [--repeats 3]
"""

from __future__ import annotations

import argparse
import jax
import jax.numpy as jnp
import numpy as np
import optax

from _common import compiled_flops, interleaved_times, matmul_peak_gflops, paired_speedup, save
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


def contenders(model: str, repeats_steps: int):
    r = RECIPES[model]
    steps = repeats_steps or r["steps"]
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
    runs, energies = {}, {}
    for name, net in nets.items():
        energy = Energy.from_equinox(net, event_shape=event)
        energies[name] = energy
        trainer = contrastive_divergence(energy, optax.adam(r["lr"], b1=r["b1"], b2=0.999), sampler=sampler,
                                         chain_init=chain_init, num_mcmc_steps=K, alpha=r["alpha"])

        def run_ebmppl(seed, energy=energy, trainer=trainer):
            res = fit(energy, data, key=jax.random.key(seed), num_steps=steps, batch_size=BATCH, objective=trainer,
                      chunk_size=max(1, steps // 5), progress_bar=False)
            jax.block_until_ready(res.state.params)

        runs[name] = run_ebmppl
    ref = reference(ref_energy, ref_init, data, r, steps)
    runs["pure JAX"] = lambda seed: jax.block_until_ready(ref(jax.random.key(seed)))
    try:
        import torch  # noqa: F401  (only to know it is installed; it runs in its own process)

        from torch_reference import TorchWorker

        worker = TorchWorker(model, steps)
        runs["PyTorch (eager)"] = worker
    except ImportError:
        print("PyTorch not installed (pip install -e '.[bench]'): skipping the PyTorch contender")
    return runs, energies["ebmppl"], data, r, steps


def flops_per_step(energy: Energy, data, r) -> float:
    """K score evaluations on a batch + one CD loss gradient (XLA's count, convolutions as convolutions)."""
    x = data[:BATCH]
    score = compiled_flops(lambda x: energy.score(x), x)
    grad = compiled_flops(lambda p: jax.grad(lambda q: cd_loss(energy, q, x, x, r["alpha"])[0])(p), energy.params)
    return K * score + grad


def main() -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["mlp", "conv", "both"], default="both")
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--steps", type=int, default=0, help="override the steps per timed run")
    args = parser.parse_args()
    peak = matmul_peak_gflops()
    out = []
    for model in (["mlp", "conv"] if args.model == "both" else [args.model]):
        runs, energy, data, r, steps = contenders(model, args.steps)
        times = interleaved_times(runs, args.repeats)
        seconds = {name: float(np.median(t)) for name, t in times.items()}
        if hasattr(runs.get("PyTorch (eager)"), "close"):
            runs["PyTorch (eager)"].close()
        if model == "conv":  # count the model's FLOPs as convolutions, whichever formulation ran
            lax_net = ConvEnergy(1, width=CONV_WIDTH, conv_impl="lax", key=jax.random.key(1))
            energy = Energy.from_equinox(lax_net, event_shape=(1, 8, 8))
        flops = flops_per_step(energy, data, r)
        rows = {name: {"steps_per_s": steps / s, "gflops": flops * steps / s / 1e9,
                       "fraction_of_matmul_peak": flops * steps / s / 1e9 / peak,
                       "speedup_of_ebmppl": paired_speedup(times, "ebmppl", name)} for name, s in seconds.items()}
        result = {"benchmark": f"cd_steps_{model}", "steps": steps, "repeats": args.repeats,
                  "flops_per_step": flops, "matmul_peak_gflops": peak, "contenders": rows,
                  "ratio_ebmppl_over_pure_jax": rows["pure JAX"]["speedup_of_ebmppl"]["median"]}
        if "PyTorch (eager)" in rows:
            result["ratio_ebmppl_over_pytorch"] = rows["PyTorch (eager)"]["speedup_of_ebmppl"]["median"]
        save(f"cd_steps_{model}", result)
        out.append(result)
    return out


if __name__ == "__main__":
    main()
