"""Ising coupling learning (Grathwohl et al. 2021 setup, reduced): Gibbs with Gradients against Gibbs.

The full experiment (10×10 lattice, 2000 samples, 3 seeds, the published
−log RMSE beside ours) is ``benchmarks/bench_ising_learning.py``; here a 6×6
torus at the same coupling σ = 0.1 (papers' units; ``2σ`` in
``ebmppl.discrete.ising``'s), the same PCD through ``ebmppl.fit`` (dense
learnable couplings, field frozen, Adam 1e-3 and ℓ1 0.01 in the papers'
units, persistent chains) at K = 5 sampler steps per iteration, 3 seeds per
sampler on one data set. Tolerances come from the seeds' spread (Welch
standard error of the difference of means) and from the data's own standard
error; nothing is tuned to a threshold.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ebmppl
from ebmppl.buffer import replay_buffer, support_noise
from ebmppl.discrete import ising, ising_log_partition
from ebmppl.samplers.discrete import block_gibbs

L, SIGMA, NUM_DATA, CHAINS, K, ITERATIONS, SEEDS = 6, 0.1, 2000, 128, 5, 200, 3

# ~30 s of CPU in all, nearly all of it compiling the sampler and the two trainers (module-scoped fixtures)
pytestmark = pytest.mark.slow


def _effective(J):
    return 0.5 * (J + J.T) * (1.0 - jnp.eye(J.shape[0]))


def _neg_log_rmse(J, truth):
    """−log RMSE of the couplings in the papers' units (``J / 2``), over all ``D²`` entries."""
    return -float(jnp.log(jnp.sqrt(jnp.mean((_effective(J) / 2 - truth / 2) ** 2))))


def _l1(weight):
    def update(grads, state, params):
        return jax.tree_util.tree_map(lambda g, p: g + weight * jnp.sign(p + p.T), grads, params), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


@pytest.fixture(scope="module")
def problem():
    """Truth and 2000 samples of it: 2000 chains of checkerboard block Gibbs (``ebmppl.sample``), 50 sweeps each."""
    true_model = ising(lattice=(L, L), coupling=2 * SIGMA)
    site = np.arange(L * L)
    colours = tuple(tuple(site[(site // L + site % L) % 2 == c].tolist()) for c in (0, 1))
    draws = ebmppl.sample(true_model, jax.random.key(0), sampler=block_gibbs(blocks=colours), num_chains=NUM_DATA,
                          num_samples=1, num_warmup=50, adapt=False, progress_bar=False)
    data = jnp.asarray(draws.positions)[:, -1]
    return np.asarray(true_model.params["couplings"]), data


@pytest.fixture(scope="module")
def learned(problem):
    """Final −log RMSE of PCD with each sampler, ``SEEDS`` seeds each (compiled once per sampler)."""
    truth, data = problem
    optimizer = optax.multi_transform(
        {"couplings": optax.chain(_l1(0.01 / 2), optax.adam(2e-3)), "field": optax.set_to_zero()},
        {"couplings": "couplings", "field": "field"})
    scores = {}
    for sampler in ("gibbs_with_gradients", "gibbs"):
        for seed in range(SEEDS):
            J0 = 0.02 * jax.random.normal(jax.random.key(1000 + seed), truth.shape)
            model = ising(np.asarray(_effective(J0)))
            result = ebmppl.fit(model, jax.random.key(seed), data, num_steps=ITERATIONS, batch_size=CHAINS,
                                optimizer=optimizer, sampler=sampler, num_mcmc_steps=K, chunk_size=ITERATIONS,
                                chain_init=replay_buffer(capacity=CHAINS, reinit_prob=0.0,
                                                         noise=support_noise(model.support)),
                                progress_bar=False, health=False)
            scores.setdefault(sampler, []).append(_neg_log_rmse(result.energy.params["couplings"], truth))
    return {s: np.asarray(v) for s, v in scores.items()}


def test_training_data_match_the_exact_bond_correlation(problem):
    truth, data = problem
    bonds = truth != 0
    per_chain = np.asarray(jnp.sum(data * (data @ bonds), axis=1)) / bonds.sum()
    h = 1e-5  # exact mean bond correlation: d log Z / d coupling (transfer matrix) over the bond count
    exact = (ising_log_partition(L, L, coupling=2 * SIGMA + h)
             - ising_log_partition(L, L, coupling=2 * SIGMA - h)) / (2 * h) / bonds.sum() * 2
    se = per_chain.std(ddof=1) / np.sqrt(len(per_chain))
    assert abs(per_chain.mean() - exact) < 4 * se, (per_chain.mean(), exact, se)


def test_gibbs_with_gradients_learns_the_couplings_better_than_gibbs_at_equal_steps(learned, problem):
    gwg, gibbs = learned["gibbs_with_gradients"], learned["gibbs"]
    se = np.sqrt(gwg.var(ddof=1) / len(gwg) + gibbs.var(ddof=1) / len(gibbs))
    assert gwg.mean() - gibbs.mean() > 4 * se, (gwg, gibbs)
    # and GwG learned something: better than the estimate J = 0 by more than 4 seed-to-seed sd
    zero = _neg_log_rmse(jnp.zeros(problem[0].shape), problem[0])
    assert gwg.mean() - zero > 4 * gwg.std(ddof=1), (gwg, zero)
