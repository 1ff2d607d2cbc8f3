"""Sampler throughput, ESS per gradient, scaling with chains/dimension/K, compile time and memory.

(b) **Against raw loops.** ``ebmppl.sample`` with fixed kernel parameters vs
the loop a BlackJAX user writes (``jit(scan(vmap(kernel)))``) for MALA and
HMC: chain-steps per second, ratio ebmppl / raw. And ebmppl's NUTS vs
NumPyro's NUTS (``chain_method="vectorized"``, same chains, warm-up and
draws) on the same target: bulk ESS per 1000 gradient evaluations, ESS per
second (compile apart), wall time.

(c) **Scaling.** MALA on an MLP energy: chain-steps per second and compile
time for 1 … 4096 chains (d = 16) and for d = 2 … 1024 (256 chains); CD
training steps per second for K = 1 … 40 (the MLP recipe of
``bench_cd_steps.py``).

(d) **Memory.** The device memory XLA plans for the compiled sampling
program (arguments + outputs + temporaries), per chain count.

Usage::

    python benchmarks/bench_sampling.py [--repeats 5] [--quick] [--smoke]

``--smoke`` runs every part with tiny sizes (seconds; the figures mean nothing):
it checks that the script works, e.g. through ``run_gpu.py --smoke``.
"""

from __future__ import annotations

import argparse
import time

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import optax

import ebmppl
from _common import compiled_memory_bytes, interleaved, interleaved_times, paired_speedup, save
from ebmppl import buffer, samplers
from ebmppl.data import two_moons
from ebmppl.nn import MLPEnergy
from ebmppl.objectives import contrastive_divergence
from ebmppl.samplers import init_chains, run_chains
from ebmppl.targets import gaussian


def correlated_gaussian(dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(dim, dim))
    return gaussian(rng.normal(size=dim), a @ a.T / dim + np.eye(dim))


def against_raw_loops(repeats: int, chains: int = 64, draws: int = 2000, dim: int = 10) -> dict:
    energy = correlated_gaussian(dim).energy
    logdensity = lambda x: -energy.energy_fn(energy.params, x)  # noqa: E731
    init = jax.random.normal(jax.random.key(0), (chains, dim))
    out = {}
    for name, sampler, kernel, blackjax_init, kwargs in (
        ("mala", samplers.mala(step_size=0.05), blackjax.mala.build_kernel(), blackjax.mala.init,
         dict(step_size=0.05)),
        ("hmc", samplers.hmc(step_size=0.1, num_integration_steps=10, jitter=0.0), blackjax.hmc.build_kernel(),
         blackjax.hmc.init, dict(step_size=0.1, inverse_mass_matrix=jnp.ones(dim), num_integration_steps=10)),
    ):
        @jax.jit
        def raw(key, positions, kernel=kernel, blackjax_init=blackjax_init, kwargs=kwargs):
            states = jax.vmap(blackjax_init, in_axes=(0, None))(positions, logdensity)

            def one_step(states, key):
                keys = jax.random.split(key, chains)
                states, info = jax.vmap(lambda k, s: kernel(k, s, logdensity, **kwargs))(keys, states)
                return states, (states.position, info.acceptance_rate)

            _, (xs, acc) = jax.lax.scan(one_step, states, jax.random.split(key, draws))
            return jnp.swapaxes(xs, 0, 1), jnp.swapaxes(acc, 0, 1)

        runs = {
            "ebmppl": lambda seed, sampler=sampler: jax.block_until_ready(ebmppl.sample(
                energy, jax.random.key(seed), sampler=sampler, num_chains=chains, num_warmup=0, num_samples=draws,
                init=init, adapt=False, progress_bar=False).positions),
            "raw BlackJAX": lambda seed, raw=raw: jax.block_until_ready(raw(jax.random.key(seed), init)),
        }
        times = interleaved_times(runs, repeats)
        out[name] = {k: {"chain_steps_per_s": chains * draws / float(np.median(v))} for k, v in times.items()}
        speedup = paired_speedup(times, "ebmppl", "raw BlackJAX")
        out[name]["ratio_ebmppl_over_raw"] = speedup["median"]
        out[name]["ratio_quartiles"] = [speedup["q1"], speedup["q3"]]
    return out


def nuts_against_numpyro(chains: int = 4, warmup: int = 500, draws: int = 1000, dim: int = 10) -> dict:
    """ebmppl's NUTS vs NumPyro's on the same target: ESS per gradient and wall time."""
    from numpyro.infer import MCMC, NUTS

    target = correlated_gaussian(dim)
    energy = target.energy
    res = {}
    # ebmppl (second call: compiled programs reused, so wall time excludes compilation)
    ebmppl.sample(energy, jax.random.key(0), sampler="nuts", num_chains=chains, num_warmup=warmup, num_samples=draws,
                  progress_bar=False)
    t0 = time.perf_counter()
    ours = ebmppl.sample(energy, jax.random.key(1), sampler="nuts", num_chains=chains, num_warmup=warmup,
                         num_samples=draws, progress_bar=False)
    wall = time.perf_counter() - t0
    ess = float(np.min(ebmppl.diagnostics.ess(ours.positions)))
    grads = float(ours.stats.num_grad_evals.sum())
    res["ebmppl NUTS"] = {"min_bulk_ess": ess, "grad_evals_sampling": grads, "ess_per_1000_grads": 1000 * ess / grads,
                          "wall_s": wall}
    # NumPyro NUTS on the same potential
    potential = lambda x: energy.energy_fn(energy.params, x)  # noqa: E731
    init = jax.random.uniform(jax.random.key(2), (chains, dim), minval=-2, maxval=2)
    mcmc = MCMC(NUTS(potential_fn=potential), num_warmup=warmup, num_samples=draws, num_chains=chains,
                chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.key(3), init_params=init, extra_fields=("num_steps",))
    mcmc.run(jax.random.key(4), init_params=init, extra_fields=("num_steps",))  # second run: compiled
    t0 = time.perf_counter()
    mcmc.run(jax.random.key(5), init_params=init, extra_fields=("num_steps",))
    jax.block_until_ready(mcmc.get_samples())
    wall = time.perf_counter() - t0
    xs = np.asarray(mcmc.get_samples(group_by_chain=True))
    steps = np.asarray(mcmc.get_extra_fields(group_by_chain=True)["num_steps"])
    ess = float(np.min(ebmppl.diagnostics.ess(xs)))
    # NumPyro's MCMC.run traces and compiles again on every call, so its wall time includes that
    res["NumPyro NUTS"] = {"min_bulk_ess": ess, "grad_evals_sampling": float(steps.sum()),
                           "ess_per_1000_grads": 1000 * ess / float(steps.sum()), "wall_s": wall}
    return res


def _mlp_energy(dim: int):
    return ebmppl.Energy.from_equinox(MLPEnergy(dim, (128, 128), confinement_scale=3.0, key=jax.random.key(0)),
                                      event_shape=(dim,))


def _sampling_program(energy, chains: int, draws: int):
    sampler = samplers.mala(step_size=0.05)
    params = sampler.default_params(energy.dim)

    def program(energy, x0, key):
        ld = lambda x: -energy.energy_fn(energy.params, x)  # noqa: E731
        states = init_chains(sampler, ld, key, x0)
        return run_chains(sampler, ld, key, states, params, draws)[1]

    x0 = jax.random.normal(jax.random.key(1), (chains, energy.dim))
    return program, (energy, x0, jax.random.key(2))


def scaling(repeats: int, quick: bool, draws: int = 200, steps: int = 200) -> dict:
    """Chain-steps per second, compile time and memory against chains, dimension and K."""
    out = {"chains": [], "dimension": [], "K": []}
    for chains in ([1, 16, 256, 4096] if quick else [1, 4, 16, 64, 256, 1024, 4096]):
        energy = _mlp_energy(16)
        program, args = _sampling_program(energy, chains, draws)
        t0 = time.perf_counter()
        compiled = jax.jit(program).lower(*args).compile()
        compile_s = time.perf_counter() - t0
        seconds = interleaved({"run": lambda seed: jax.block_until_ready(compiled(*args))}, repeats)["run"]
        out["chains"].append({"chains": chains, "chain_steps_per_s": chains * draws / seconds,
                              "compile_s": compile_s, "memory_bytes": compiled_memory_bytes(program, *args)})
    for dim in ([2, 128, 1024] if quick else [2, 16, 128, 1024]):
        energy = _mlp_energy(dim)
        program, args = _sampling_program(energy, 256, draws)
        t0 = time.perf_counter()
        compiled = jax.jit(program).lower(*args).compile()
        compile_s = time.perf_counter() - t0
        seconds = interleaved({"run": lambda seed: jax.block_until_ready(compiled(*args))}, repeats)["run"]
        out["dimension"].append({"dim": dim, "chain_steps_per_s": 256 * draws / seconds, "compile_s": compile_s,
                                 "memory_bytes": compiled_memory_bytes(program, *args)})
    data = two_moons().sample(jax.random.key(0), 10_000)
    energy = ebmppl.Energy.from_equinox(MLPEnergy(2, (128, 128, 128), key=jax.random.key(1)), event_shape=(2,))
    for k in ([1, 20] if quick else [1, 5, 10, 20, 40]):
        trainer = contrastive_divergence(energy, optax.adam(1e-3, b1=0.0), num_mcmc_steps=k, alpha=0.05,
                                         sampler=samplers.langevin(step_size=0.005, noise_scale=0.1),
                                         chain_init=buffer.replay_buffer(10_000, 0.05, buffer.uniform_noise(-2.5, 2.5)))
        t0 = time.perf_counter()
        ebmppl.fit(energy, jax.random.key(0), data, num_steps=steps, objective=trainer, chunk_size=steps,
                   progress_bar=False)
        first = time.perf_counter() - t0
        seconds = interleaved({"run": lambda seed, trainer=trainer: jax.block_until_ready(ebmppl.fit(
            energy, jax.random.key(seed), data, num_steps=steps, objective=trainer, chunk_size=steps,
            progress_bar=False).state.params)}, repeats)["run"]
        out["K"].append({"K": k, "cd_steps_per_s": steps / seconds, "compile_s": max(first - seconds, 0.0)})
    return out


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="fewer sizes")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one round: checks the script runs")
    args = parser.parse_args()
    if args.smoke:
        result = {"benchmark": "sampling", "smoke": True,
                  "against_raw_loops": against_raw_loops(1, draws=20),
                  "nuts_vs_numpyro": nuts_against_numpyro(warmup=20, draws=20),
                  "scaling": scaling(1, True, draws=5, steps=4)}
    else:
        result = {"benchmark": "sampling", "against_raw_loops": against_raw_loops(max(12, args.repeats)),
                  "nuts_vs_numpyro": nuts_against_numpyro(), "scaling": scaling(args.repeats, args.quick)}
    save("sampling", result)
    return result


if __name__ == "__main__":
    main()
