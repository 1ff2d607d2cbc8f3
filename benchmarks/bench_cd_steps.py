"""CD training steps per second: ebmppl.fit vs a hand-written pure-JAX loop, in one process.

Both sides run the default two-moons configuration of ``ebmppl fit``: MLP
2-128-128-128-1 (SiLU), batch 128, K = 20 Langevin steps (step 0.005, noise
0.1), replay buffer of 10,000 with 5 % re-initialisation, L2 energy penalty,
Adam. The reference is the loop a JAX user would write by hand: plain
arrays for the weights, one jitted ``lax.scan`` over training steps with the
Langevin chain inlined. ebmppl runs through the public ``fit`` (chunked
scans, metrics, divergence guard, no checkpoints, no progress bar). Both are
compiled first; runs are interleaved; medians are reported.

Usage::

    python benchmarks/bench_cd_steps.py [--steps 1000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ebmppl import Energy, buffer, fit, samplers
from ebmppl.data import two_moons
from ebmppl.nn import MLPEnergy
from ebmppl.objectives import contrastive_divergence

WIDTHS, BATCH, K, STEP, NOISE, CAPACITY, REINIT, ALPHA, LR = (128, 128, 128), 128, 20, 0.005, 0.1, 10_000, 0.05, 0.05, 1e-3


def reference_trainer(data, num_steps):
    """Pure JAX: same math, no library."""
    sizes = (2, *WIDTHS, 1)

    def init_params(key):
        params = []
        for a, b, k in zip(sizes[:-1], sizes[1:], jax.random.split(key, len(sizes) - 1), strict=True):
            kw, kb = jax.random.split(k)
            lim = 1 / np.sqrt(a)
            params.append((jax.random.uniform(kw, (b, a), minval=-lim, maxval=lim),
                           jax.random.uniform(kb, (b,), minval=-lim, maxval=lim)))
        return params

    def energy(params, x):
        for w, b in params[:-1]:
            x = jax.nn.silu(w @ x + b)
        w, b = params[-1]
        return (w @ x + b)[0]

    batched = jax.vmap(energy, in_axes=(None, 0))
    grad_x = jax.vmap(jax.grad(energy, argnums=1), in_axes=(None, 0))
    opt = optax.adam(LR, b1=0.0, b2=0.999)

    def train_step(carry, _):
        params, opt_state, buf, key = carry
        key, k_batch, k_idx, k_mask, k_noise, k_chain = jax.random.split(key, 6)
        batch = data[jax.random.randint(k_batch, (BATCH,), 0, data.shape[0])]
        idx = jax.random.randint(k_idx, (BATCH,), 0, CAPACITY)
        fresh = jax.random.bernoulli(k_mask, REINIT, (BATCH, 1))
        x = jnp.where(fresh, jax.random.uniform(k_noise, (BATCH, 2), minval=-2.5, maxval=2.5), buf[idx])

        def langevin(x, k):
            return x - STEP * grad_x(params, x) + NOISE * jax.random.normal(k, x.shape), None

        x, _ = jax.lax.scan(langevin, x, jax.random.split(k_chain, K))
        x = jax.lax.stop_gradient(x)

        def loss(p):
            ep, en = batched(p, batch), batched(p, x)
            return ep.mean() - en.mean() + ALPHA * (jnp.mean(ep**2) + jnp.mean(en**2))

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, buf.at[idx].set(x), key), value

    @jax.jit
    def run(key):
        k_params, k_buf, key = jax.random.split(key, 3)
        params = init_params(k_params)
        carry = (params, opt.init(params), jax.random.uniform(k_buf, (CAPACITY, 2), minval=-2.5, maxval=2.5), key)
        carry, losses = jax.lax.scan(train_step, carry, None, length=num_steps)
        return carry[0], losses

    return run


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=pathlib.Path, default=None)
    args = parser.parse_args()

    data = two_moons().sample(jax.random.key(0), 10_000)
    energy = Energy.from_equinox(MLPEnergy(2, WIDTHS, key=jax.random.key(1)), event_shape=(2,))
    sampler = samplers.langevin(step_size=STEP, noise_scale=NOISE)
    chain_init = buffer.replay_buffer(CAPACITY, REINIT, buffer.uniform_noise(-2.5, 2.5))
    optimizer = optax.adam(LR, b1=0.0, b2=0.999)
    # built once and reused, so fit compiles it once (as in a user's sweep over seeds)
    trainer = contrastive_divergence(energy, optimizer, sampler=sampler, chain_init=chain_init, num_mcmc_steps=K,
                                     alpha=ALPHA)

    def run_ebmppl(seed):
        result = fit(energy, data, key=jax.random.key(seed), num_steps=args.steps, batch_size=BATCH,
                     objective=trainer, chunk_size=args.steps // 5, progress_bar=False)
        jax.block_until_ready(result.state.params)

    reference = reference_trainer(data, args.steps)

    def run_reference(seed):
        jax.block_until_ready(reference(jax.random.key(seed)))

    # First calls compile (reported apart); timed calls reuse the compiled programs.
    t0 = time.perf_counter()
    run_ebmppl(0)
    first_ebmppl = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_reference(0)
    first_reference = time.perf_counter() - t0

    times = {"ebmppl": [], "reference": []}
    for r in range(args.repeats):
        for name, fn in (("ebmppl", run_ebmppl), ("reference", run_reference)):
            t0 = time.perf_counter()
            fn(r + 1)
            times[name].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) for k, v in times.items()}
    result = {
        "benchmark": "cd_steps_two_moons_default",
        "steps": args.steps, "repeats": args.repeats,
        "ebmppl_steps_per_s": args.steps / med["ebmppl"],
        "reference_steps_per_s": args.steps / med["reference"],
        "ratio_ebmppl_over_reference": med["reference"] / med["ebmppl"],
        "first_call_s": {"ebmppl": first_ebmppl, "reference": first_reference},
        "jax": jax.__version__,
    }
    print(json.dumps(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
