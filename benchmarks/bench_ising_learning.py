"""Learning the couplings of a 10×10 lattice Ising model: Gibbs with Gradients against Gibbs, in the published setup.

The experiment of Grathwohl, Swersky, Hashemi, Duvenaud & Maddison ("Oops I
took a gradient", ICML 2021, Sec. "Training Ising models"), as tabulated for
a D = 10² lattice by Zhang, Malkin, Liu, Volokhova, Courville & Bengio
(EB-GFN, ICML 2022): learn the full ``D × D`` coupling matrix of a periodic
2-D Ising model from 2000 of its samples by persistent contrastive
divergence, and score it by the root-mean-square error of the learned
couplings against the truth, over all ``D²`` entries. The papers' model is
``log p(x) = xᵀ J x`` with ``J = σ A`` on ``x ∈ {-1, 1}ᴰ`` (``A`` the lattice's
adjacency); in ebmppl's ``ising`` convention (``E = -½ xᵀ J x``) that is
``J = 2σ A``. RMSEs are reported in the papers' units (``J / 2``), so the
numbers compare directly.

Setup (the papers' settings unless said): σ = 0.1; data: 2000 chains of exact
heat-bath Gibbs (checkerboard sweeps from the lattice's local fields) run
for 1000 sweeps from uniform spins, checked against the exact mean bond
correlation of the transfer matrix; model: ``ebmppl.discrete.ising`` with a
learnable dense ``J`` started at N(0, 0.01²) entries (papers' units), field
fixed at 0; training: ``ebmppl.fit`` with ``objective="cd"`` (the one
trainer), 256 persistent chains (``replay_buffer(capacity=256,
reinit_prob=0)``, starts uniform on the spins), batch 256, Adam with learning
rate 1e-3 and an ℓ1 penalty 0.01 on the couplings (papers' units), K sampler
steps per iteration, the same K for both samplers. A Gibbs step redraws one
site (random scan; the papers' Gibbs scans sites in order), a GwG step
proposes one flip: equal steps are equal single-site moves.

Usage::

    python benchmarks/bench_ising_learning.py            # K = 50 and K = 10, 3 seeds, 1000 iterations
    python benchmarks/bench_ising_learning.py --fast     # one seed, K = 10, 200 iterations (~1 minute)
    python benchmarks/bench_ising_learning.py --samplers dmala dula --steps 10   # Zhang, Liu & Liu's samplers

Writes ``benchmarks/results/ising_learning.json`` and prints the table of
``docs/benchmarks/ising_learning.md``.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from _common import save
from ebmppl import fit
from ebmppl.buffer import replay_buffer, support_noise
from ebmppl.discrete import ising, ising_log_partition, lattice_couplings

LATTICE, SIGMA = 10, 0.1  # the 10x10 column of the published table, sigma = 0.1 (papers' units)
NUM_DATA, DATA_SWEEPS = 2000, 1000
CHAINS = BATCH = 256
LR, L1 = 1e-3, 0.01  # papers' units
INIT_SD = 0.01
SAMPLERS = ("gibbs_with_gradients", "gibbs")
PUBLISHED = {"gibbs": 4.8, "gibbs_with_gradients": 4.8, "EB-GFN": 6.1}  # mean -log RMSE, D = 10^2, sigma = 0.1


def true_couplings(lattice: int = LATTICE, sigma: float = SIGMA) -> np.ndarray:
    """The truth in ebmppl's units: ``J = 2σ A`` on the ``lattice × lattice`` torus."""
    return np.asarray(lattice_couplings((lattice, lattice), 2.0 * sigma))


def draw_data(key: jax.Array, couplings: np.ndarray, lattice: int, num: int, sweeps: int) -> jax.Array:
    """``num`` independent chains of exact checkerboard heat-bath Gibbs, ``sweeps`` sweeps from uniform spins.

    The two colours of the (even) lattice do not interact, so each is redrawn at
    once from its exact conditional ``P(x_i = +1 | rest) = σ(2 h_i)``, ``h = J x``
    (the energy ``-½ xᵀ J x`` changes by ``2 x_i h_i`` when ``x_i`` flips).
    """
    J = jnp.asarray(couplings, jnp.float32)
    site = np.arange(lattice * lattice)
    colours = jnp.asarray(np.stack([(site // lattice + site % lattice) % 2 == c for c in (0, 1)]))

    def sweep(x, k):
        for colour, kc in zip(colours, jax.random.split(k, 2)):
            up = jax.random.uniform(kc, x.shape) < jax.nn.sigmoid(2.0 * (x @ J))
            x = jnp.where(colour, jnp.where(up, 1.0, -1.0), x)
        return x, None

    k0, k1 = jax.random.split(key)
    x0 = jnp.where(jax.random.bernoulli(k0, 0.5, (num, lattice * lattice)), 1.0, -1.0)
    return jax.lax.scan(sweep, x0, jax.random.split(k1, sweeps))[0]


def bond_correlation(data: jax.Array, couplings: np.ndarray) -> tuple[float, float]:
    """Mean ``x_i x_j`` over the bonds: the data's value and its standard error (chains independent)."""
    bonds = jnp.asarray(couplings != 0, jnp.float32)
    per_chain = np.asarray(jnp.sum(data * (data @ bonds), axis=1) / jnp.sum(bonds))
    return float(per_chain.mean()), float(per_chain.std(ddof=1) / np.sqrt(len(per_chain)))


def exact_bond_correlation(lattice: int = LATTICE, sigma: float = SIGMA) -> float:
    """Exact mean bond correlation of the torus: ``d log Z / d coupling`` over the bond count (transfer matrix)."""
    c, h = 2.0 * sigma, 1e-5
    dlogz = (ising_log_partition(lattice, lattice, coupling=c + h)
             - ising_log_partition(lattice, lattice, coupling=c - h)) / (2 * h)
    return dlogz / (2 * lattice * lattice)


def _l1(weight: float) -> optax.GradientTransformation:
    """Adds ``weight · sign(J_eff)``: the subgradient of ``weight Σ|J_eff|`` (``J_eff`` the energy's symmetric J)."""
    def update(grads, state, params):
        return jax.tree_util.tree_map(lambda g, p: g + weight * jnp.sign(p + p.T), grads, params), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


# the papers' Adam(lr) + l1 on J/2, in our units (J = 2 x theirs): lr x 2, l1 subgradient / 2; field frozen.
# One object for every run, so that fits with the same sampler and K reuse their compiled steps.
OPTIMIZER = optax.multi_transform(
    {"couplings": optax.chain(_l1(L1 / 2), optax.adam(2 * LR)), "field": optax.set_to_zero()},
    {"couplings": "couplings", "field": "field"})


def effective(J: jax.Array) -> jax.Array:
    """The coupling matrix the energy uses: ``½ (J + Jᵀ)`` with a zero diagonal."""
    return 0.5 * (J + J.T) * (1.0 - jnp.eye(J.shape[0]))


def rmse(J: jax.Array, truth: np.ndarray) -> float:
    """RMSE of the learned couplings in the papers' units (``J / 2``), over all ``D²`` entries."""
    return float(jnp.sqrt(jnp.mean((effective(J) / 2 - truth / 2) ** 2)))


def learn(data: jax.Array, truth: np.ndarray, sampler: str, num_mcmc_steps: int, num_steps: int, seed: int,
          record_every: int = 50) -> dict:
    """Fit a dense Ising model to ``data`` with ``ebmppl.fit`` (PCD); the RMSE every ``record_every`` iterations."""
    n = truth.shape[0]
    J0 = 2.0 * INIT_SD * jax.random.normal(jax.random.key(1000 + seed), (n, n))  # papers' N(0, 0.01²), our units
    model = ising(np.asarray(effective(J0)))
    curve = [(0, rmse(model.params["couplings"], truth))]
    t0 = time.perf_counter()
    result = fit(model, jax.random.key(seed), data, num_steps=num_steps, batch_size=BATCH, optimizer=OPTIMIZER,
                 sampler=sampler, num_mcmc_steps=num_mcmc_steps,
                 chain_init=replay_buffer(capacity=CHAINS, reinit_prob=0.0, noise=support_noise(model.support)),
                 chunk_size=record_every, progress_bar=False, health=False,
                 callbacks=[lambda step, state, metrics: curve.append((step, rmse(state.params["couplings"], truth)))])
    seconds = time.perf_counter() - t0
    acceptance = np.asarray(result.history.get("acceptance_rate", np.nan), float)  # nan for Gibbs (no MH test)
    return {"sampler": sampler, "num_mcmc_steps": num_mcmc_steps, "seed": seed, "seconds": seconds,
            "iterations": [s for s, _ in curve], "neg_log_rmse": [-float(np.log(r)) for _, r in curve],
            "final": -float(np.log(curve[-1][1])),
            "acceptance": float(np.nanmean(acceptance)) if np.isfinite(acceptance).any() else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="one seed, K = 10, 200 iterations")
    parser.add_argument("--iters", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, nargs="+", default=[50, 10], help="sampler steps per iteration")
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS),
                        help="discrete samplers to compare, e.g. dmala dula (Zhang, Liu & Liu's; step sizes 0.2 and "
                             "0.1 by default, as in their script)")
    args = parser.parse_args()
    if args.fast:
        args.iters, args.seeds, args.steps = 200, 1, [10]

    truth = true_couplings()
    t0 = time.perf_counter()
    data = jax.jit(draw_data, static_argnums=(2, 3, 4))(jax.random.key(2021), truth, LATTICE, NUM_DATA, DATA_SWEEPS)
    corr, corr_se = bond_correlation(data, truth)
    exact = exact_bond_correlation()
    print(f"data: {NUM_DATA} x {LATTICE}x{LATTICE} spins in {time.perf_counter() - t0:.1f} s; mean bond "
          f"correlation {corr:.4f} ± {corr_se:.4f} (exact {exact:.4f}, {abs(corr - exact) / corr_se:.1f} SE)")
    zero = -float(np.log(rmse(jnp.zeros_like(jnp.asarray(truth)), truth)))

    runs = []
    for K in args.steps:
        for seed in range(args.seeds):
            for sampler in args.samplers:
                run = learn(data, truth, sampler, K, args.iters, seed)
                runs.append(run)
                print(f"K={K:3d} seed={seed} {sampler:22s} -log RMSE {run['final']:.3f} ({run['seconds']:.0f} s)")

    summary = []
    for K in args.steps:
        for sampler in args.samplers:
            finals = [r["final"] for r in runs if r["sampler"] == sampler and r["num_mcmc_steps"] == K]
            summary.append({"sampler": sampler, "num_mcmc_steps": K, "mean": float(np.mean(finals)),
                            "sd": float(np.std(finals, ddof=1)) if len(finals) > 1 else None, "n": len(finals),
                            "seconds": float(np.mean([r["seconds"] for r in runs if r["sampler"] == sampler
                                                      and r["num_mcmc_steps"] == K]))})
    header = f"-log RMSE after {args.iters} iterations (mean ± sd over {args.seeds} seed(s))"
    print(f"\n| sampler | K | {header} | published |")
    print("|---|---|---|---|")
    for row in summary:
        sd = "" if row["sd"] is None else f" ± {row['sd']:.2f}"
        published = PUBLISHED.get(row["sampler"], "—")
        print(f"| {row['sampler']} | {row['num_mcmc_steps']} | {row['mean']:.2f}{sd} | {published} |")
    print(f"| J = 0 (learns nothing) | | {zero:.2f} | |")
    name = "ising_learning" if list(args.samplers) == list(SAMPLERS) else "ising_learning_" + "_".join(args.samplers)
    save(name, {"setup": {"lattice": LATTICE, "sigma": SIGMA, "num_data": NUM_DATA,
                                      "data_sweeps": DATA_SWEEPS, "chains": CHAINS, "batch": BATCH, "lr": LR,
                                      "l1": L1, "iterations": args.iters, "seeds": args.seeds},
                            "data_bond_correlation": [corr, corr_se, exact], "zero_estimate": zero,
                            "published": PUBLISHED, "summary": summary, "runs": runs})


if __name__ == "__main__":
    main()
