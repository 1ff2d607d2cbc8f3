"""Discrete samplers (``ebmppl.samplers.discrete``) against exact enumeration.

The must-show of issue 19: on a 4×4 Ising torus and on a 16-spin model with
random couplings, every discrete sampler's magnetisation and pair
correlations lie within 4 Monte-Carlo standard errors (MCSE from the ESS,
``ebmppl.diagnostics.mcse``) of their exact values by enumerating the
2**16 states (``ebmppl.discrete.exact_expectation``); the same on a 3-state
Potts model on a 3×3 torus (3**9 states) for the categorical samplers. Then
``sample``/``compare`` on discrete energies, and bad input.

Budget (XLA's compile time dominates): one compiled program per sampler serves
both 16-spin models, sampled as ONE 32-spin product target ``p(x, y) =
p_torus(x) p_random(y)``. Its marginals are the two models, so each half's
statistics are judged against that model's exact values; a sampler wrong on
either model is wrong on that marginal of the product. (Vmapping over the two
parameter sets instead doubles the compile time.)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebmppl import Energy, compare, sample, samplers
from ebmppl.diagnostics import mcse
from ebmppl.discrete import exact_expectation, ising, potts, rbm, rbm_joint
from ebmppl.samplers import init_chains, run_chains
from ebmppl.support import BINARY, SPINS, Categorical

LIMIT = 4.0  # the bar: |estimate − exact| ≤ 4 MCSE
NUM_CHAINS, NUM_DRAWS, BURN_IN = 8, 1000, 100

L = 4
SITES = np.arange(L * L).reshape(L, L)
BONDS = np.array([(SITES[i, j], SITES[i, (j + 1) % L]) for i in range(L) for j in range(L)]
                 + [(SITES[i, j], SITES[(i + 1) % L, j]) for i in range(L) for j in range(L)])
CHECKERBOARD = (tuple(SITES[(np.add.outer(range(L), range(L)) % 2) == 0]),
                tuple(SITES[(np.add.outer(range(L), range(L)) % 2) == 1]))
UPPER = np.triu_indices(L * L, 1)


def _moments(x):
    """The statistics judged: magnetisation mean(x) and every pair product x_i x_j (i < j)."""
    return jnp.concatenate([jnp.mean(x)[None], jnp.outer(x, x)[UPPER]])


class SpinModels(NamedTuple):
    torus: Energy  # ising(lattice=(4, 4)), β = 0.3, field 0.1
    dense: Energy  # 16 spins, random Gaussian couplings and fields, β = 0.3
    product: Energy  # both at once: 32 spins, E(x, y) = E_torus(x) + E_dense(y)
    pairs: list[list[int]]  # per model, the pairs judged (indices into UPPER)
    exact: list[np.ndarray]  # per model, exact _moments by enumeration


@pytest.fixture(scope="module")
def spin_models():
    """The 4×4 torus and the random-coupling model, their product, the pairs to judge (the torus's 32
    nearest-neighbour bonds; every pair of the dense model) and their exact moments by enumeration."""
    torus = ising(lattice=(L, L), beta=0.3, field=0.1)
    rng = np.random.default_rng(0)
    J = rng.normal(0.0, 0.5, (16, 16))
    J = np.triu(J, 1) + np.triu(J, 1).T
    dense = ising(jnp.asarray(J, jnp.float32), field=jnp.asarray(rng.normal(0.0, 0.2, 16), jnp.float32), beta=0.3)
    product = Energy(lambda p, x: torus.energy_fn(p[0], x[:16]) + dense.energy_fn(p[1], x[16:]),
                     (torus.params, dense.params), event_shape=(32,), support=SPINS)
    pair_index = {(int(a), int(b)): k for k, (a, b) in enumerate(zip(*UPPER))}
    torus_pairs = [pair_index[tuple(sorted((int(a), int(b))))] for a, b in BONDS]
    exact = [np.asarray(exact_expectation(m, _moments), np.float64) for m in (torus, dense)]
    return SpinModels(torus, dense, product, [torus_pairs, list(range(len(UPPER[0])))], exact)


def _run(sampler, energy, key, thinning, support=SPINS):
    """``NUM_CHAINS`` chains from uniform states, ``BURN_IN`` draws dropped: ``(draws, energy evaluations)``."""
    sampler = samplers.bind_support(sampler, energy)  # as sample() does: the energy's support
    ld = energy.logdensity_fn
    dim = int(np.prod(energy.event_shape))

    @jax.jit
    def run(key):
        k_init, k_state, k_draw = jax.random.split(key, 3)
        states = init_chains(sampler, ld, k_state, support.uniform(k_init, (NUM_CHAINS,), energy.event_shape))
        # one scan (one compiled loop) through burn-in and draws
        _, xs, stats = run_chains(sampler, ld, k_draw, states, sampler.default_params(dim), BURN_IN + NUM_DRAWS,
                                  thinning)
        return xs[:, BURN_IN:], stats.num_energy_evals[:, BURN_IN:].sum()

    return run(key)


def _judge(draws, model, models, label):
    """Magnetisation and the model's pairs within LIMIT MCSE of exact; ``draws`` (chain, draw, 16)."""
    series = np.asarray(jax.vmap(jax.vmap(_moments))(draws), np.float64)
    z = _scores(series, models.exact[model])
    judged = {"magnetisation": z[0], **{f"pair {UPPER[0][k]}-{UPPER[1][k]}": z[1 + k] for k in models.pairs[model]}}
    worst = max(judged, key=judged.get)
    assert judged[worst] <= LIMIT, f"{label}: {worst} off by {judged[worst]:.2f} MCSE"


def _scores(series, exact):
    """``|mean − exact| / MCSE`` per statistic; ``series`` (chain, draw, k)."""
    return np.abs(series.mean((0, 1)) - exact) / mcse(series)


# every discrete sampler, and its steps per kept draw (single-site samplers: one sweep's worth of sites)
SPIN_SAMPLERS = {
    "gibbs": (samplers.gibbs(support=SPINS), 32),
    "gibbs_sweep": (samplers.gibbs(sweep=True, support=SPINS), 1),
    "discrete_metropolis": (samplers.discrete_metropolis(support=SPINS), 32),
    "gibbs_with_gradients": (samplers.gibbs_with_gradients(support=SPINS), 32),
    "dmala": (samplers.dmala(step_size=0.5, support=SPINS), 2),
}


@pytest.mark.parametrize("name", list(SPIN_SAMPLERS))
def test_spin_models_match_enumeration_within_4_mcse(name, spin_models):
    """Magnetisation and pair correlations of the torus and the random-coupling model within 4 MCSE of exact.

    (``block_gibbs`` is tested below on the torus's checkerboard and on an RBM: the dense model has no two
    non-interacting sites, and block Gibbs with one block per site is ``gibbs(sweep=True)``.)
    """
    sampler, thinning = SPIN_SAMPLERS[name]
    draws, evals = _run(sampler, spin_models.product, jax.random.key(1), thinning)
    assert set(np.unique(np.asarray(draws)).tolist()) == {-1.0, 1.0}
    _judge(draws[..., :16], 0, spin_models, f"{name} on the 4x4 torus")
    _judge(draws[..., 16:], 1, spin_models, f"{name} on the random-coupling model")
    # the energy evaluations of the thinned steps are summed (not the last step's kept)
    per_step = 32 if name == "gibbs_sweep" else 1
    assert int(evals) == NUM_CHAINS * NUM_DRAWS * thinning * per_step


def test_block_gibbs_on_the_checkerboard_of_the_torus(spin_models):
    """Two blocks (the checkerboard's colours), each without a bond inside: exact, two block draws per step."""
    torus = spin_models.torus
    sampler = samplers.block_gibbs(blocks=CHECKERBOARD, support=SPINS)
    draws, evals = _run(sampler, torus, jax.random.key(2), 1)
    _judge(draws, 0, spin_models, "block Gibbs on the 4x4 torus")
    assert int(evals) == NUM_CHAINS * NUM_DRAWS * (16 + 2)  # 8 + 1 evaluations per block


# ------------------------------------------------------------------ categorical: a Potts model
POTTS_L, POTTS_K = 3, 3
POTTS_SITES = np.arange(POTTS_L**2).reshape(POTTS_L, POTTS_L)
POTTS_BONDS = np.array([(POTTS_SITES[i, j], POTTS_SITES[i, (j + 1) % POTTS_L]) for i in range(POTTS_L)
                        for j in range(POTTS_L)] + [(POTTS_SITES[i, j], POTTS_SITES[(i + 1) % POTTS_L, j])
                                                    for i in range(POTTS_L) for j in range(POTTS_L)])


def _potts_moments(x):
    """Fraction of the variables in each category, and whether each bond's two variables agree."""
    return jnp.concatenate([x.mean(0), jnp.sum(x[POTTS_BONDS[:, 0]] * x[POTTS_BONDS[:, 1]], axis=1)])


POTTS_SAMPLERS = {  # every exact sampler's categorical branch (dula is biased by design)
    "gibbs": (samplers.gibbs(support=Categorical(POTTS_K)), 9),
    "discrete_metropolis": (samplers.discrete_metropolis(support=Categorical(POTTS_K)), 9),
    "gibbs_with_gradients": (samplers.gibbs_with_gradients(support=Categorical(POTTS_K)), 9),
    "dmala": (samplers.dmala(step_size=1.0, support=Categorical(POTTS_K)), 1),
}


@pytest.fixture(scope="module")
def potts_model():
    """3-state Potts on a 3×3 torus (3**9 = 19683 states), β = 0.6, a field favouring state 0, and exact moments."""
    model = potts(POTTS_K, lattice=(POTTS_L, POTTS_L), beta=0.6, field=jnp.array([0.3, 0.0, 0.0]))
    return model, np.asarray(exact_expectation(model, _potts_moments), np.float64)


@pytest.mark.parametrize("name", list(POTTS_SAMPLERS))
def test_potts_matches_enumeration_within_4_mcse(name, potts_model):
    model, exact = potts_model
    sampler, thinning = POTTS_SAMPLERS[name]
    xs, _ = _run(sampler, model, jax.random.key(3), thinning, model.support)
    assert bool(jnp.all(model.support.contains(xs.reshape(-1, *model.event_shape), model.event_shape)))
    z = _scores(np.asarray(jax.vmap(jax.vmap(_potts_moments))(xs), np.float64), exact)
    assert z.max() <= LIMIT, f"{name}: statistic {int(z.argmax())} off by {z.max():.2f} MCSE (fractions 0-2, bonds)"


# ------------------------------------------------------------------ block Gibbs on an RBM's joint state
def test_block_gibbs_on_an_rbm_joint_state_matches_enumeration():
    """Visible and hidden layers as the two blocks (``block_gibbs.rbm``) of ``rbm_joint``'s energy over (v, h)."""
    joint = rbm_joint(rbm(6, 3, key=jax.random.key(4), scale=1.0))
    sampler = samplers.block_gibbs.rbm(6, 3)
    xs, evals = _run(sampler, joint, jax.random.key(5), 1, BINARY)
    stats = lambda x: jnp.concatenate([x, (x[:6, None] * x[None, 6:]).reshape(-1)])  # noqa: E731
    series = np.asarray(jax.vmap(jax.vmap(stats))(xs), np.float64)
    exact = np.asarray(exact_expectation(joint, stats), np.float64)
    z = _scores(series, exact)
    assert z.max() <= LIMIT, f"unit means, v-h correlations: statistic {int(z.argmax())} off by {z.max():.2f}"
    assert int(evals) == NUM_CHAINS * NUM_DRAWS * (6 + 1 + 3 + 1)


# ------------------------------------------------------------------ sample() and compare() on discrete energies
DMALA_RUN = dict(num_chains=4, num_warmup=200, num_samples=400, progress_bar=False)  # compare() below: the same


def test_sample_binds_the_support_adapts_dmala_and_counts_energy_evaluations(spin_models):
    torus = spin_models.torus
    out = sample(torus, jax.random.key(6), sampler="dmala", **DMALA_RUN)
    assert out.positions.shape == (4, 400, 16)
    assert set(np.unique(np.asarray(out.positions)).tolist()) == {-1.0, 1.0}  # draws are the support's values
    # warm-up tuned α towards DMALA's target acceptance (0.574)
    assert float(out.params["step_size"]) != samplers.dmala().step_size
    assert 0.4 < float(np.mean(out.health.acceptance)) < 0.75
    # one energy-and-gradient evaluation per DMALA step
    assert np.all(np.asarray(out.stats.num_energy_evals) == 1) and np.all(np.asarray(out.stats.num_grad_evals) == 1)
    idata = out.to_arviz()
    assert idata.posterior["x"].shape == (4, 400, 16) and "num_energy_evals" in idata.sample_stats


def test_compare_judges_discrete_runs_on_statistics_against_enumeration(spin_models):
    """compare() on the torus: magnetisation and log-density, exact by enumeration; ESS per energy evaluation.

    Same sampler and budget as the sample() test above, so the compiled programs are reused."""
    torus = spin_models.torus
    c = compare(torus, jax.random.key(7), {"dmala": samplers.dmala()}, min_ess=100, **DMALA_RUN)
    row = c.table.iloc[0]
    assert c.statistics == ["mean(x)", "logdensity"] and c.bias_check == "exact (enumeration of 65536 states)"
    assert row["mean_err_mcse"] <= c.max_mcse and row["std_err_mcse"] <= c.max_mcse, row["flag"]
    assert row["energy_evals"] == 4 * 400
    np.testing.assert_allclose(row["ess_per_1k_energy_evals"], 1000 * row["ess_bulk_min"] / 1600)
    # a user statistic: the per-bond correlation of one bond
    c = compare(torus, jax.random.key(7), {"dmala": samplers.dmala()}, min_ess=100,
                statistics=lambda x: {"bond": x[0] * x[1]}, **DMALA_RUN)
    assert c.statistics == ["bond"] and c.table.loc[0, "mean_err_mcse"] <= c.max_mcse


# ------------------------------------------------------------------ bad input
@pytest.fixture(scope="module")
def spins4():
    return Energy(lambda b, x: -b * jnp.sum(x * jnp.roll(x, 1)), 0.3, event_shape=(4,), support=SPINS)


def test_discrete_and_continuous_samplers_refuse_the_other_kind_of_energy(spins4):
    run = dict(num_chains=2, num_warmup=0, num_samples=2, progress_bar=False)
    with pytest.raises(TypeError, match="sampler 'mala' moves continuous positions.*Use a discrete sampler"):
        sample(spins4, jax.random.key(0), sampler="mala", **run)
    with pytest.raises(TypeError, match="sampler 'parallel_tempering' moves continuous"):
        sample(spins4, jax.random.key(0), sampler="parallel_tempering", **run)
    gauss = Energy(lambda p, x: 0.5 * jnp.sum(x**2), None, event_shape=(4,))
    with pytest.raises(TypeError, match="sampler 'gibbs_with_gradients' draws discrete states.*declare it"):
        sample(gauss, jax.random.key(0), sampler="gibbs_with_gradients", **run)
    with pytest.raises(ValueError, match="built for support Binary\\(low=0.0, high=1.0\\).*SPINS|built for support"):
        sample(spins4, jax.random.key(0), sampler=samplers.gibbs(support=BINARY), **run)
    with pytest.raises(ValueError, match="init: the starting states of chain 1 are not states"):
        sample(spins4, jax.random.key(0), sampler="gibbs", init=jnp.array([[1.0, -1, 1, 1], [0.0, 1, 1, 1]]), **run)


def test_bad_discrete_sampler_options_name_the_fix():
    with pytest.raises(TypeError, match="must be a discrete support"):
        samplers.gibbs(support="binary")
    with pytest.raises(ValueError, match="step_size must be a finite number > 0"):
        samplers.dmala(step_size=0.0)
    with pytest.raises(ValueError, match="blocks must not overlap: coordinate 1"):
        samplers.block_gibbs(blocks=((0, 1), (1, 2)))
    with pytest.raises(ValueError, match="blocks\\[1\\] is empty"):
        samplers.block_gibbs(blocks=((0, 1), ()))
    ld = lambda x: jnp.sum(x)  # noqa: E731
    with pytest.raises(ValueError, match="block_gibbs needs blocks="):
        s = samplers.block_gibbs(support=SPINS)
        s.step(jax.random.key(0), s.init(None, jnp.ones(3), ld), ld, {})
    with pytest.raises(ValueError, match="cover each of the 3 coordinates"):
        s = samplers.block_gibbs(blocks=((0,), (1,)), support=SPINS)
        s.step(jax.random.key(0), s.init(None, jnp.ones(3), ld), ld, {})
    with pytest.raises(TypeError, match="has no support to move on"):
        s = samplers.gibbs()
        s.step(jax.random.key(0), s.init(None, jnp.ones(3), ld), ld, {})
    with pytest.raises(ValueError, match="one-hot along its last axis of length 3"):
        s = samplers.gibbs(support=Categorical(3))
        s.step(jax.random.key(0), s.init(None, jnp.ones((2, 4)), ld), ld, {})
    with pytest.raises(ValueError, match="coordinates 0 and 1 interact"):
        samplers.check_blocks(lambda x: x[0] * x[1], ((0, 1),), SPINS.uniform(jax.random.key(0), (2,), (2,)), SPINS)
    # the blocks the tests above use have no bond inside
    samplers.check_blocks(lambda x: jnp.sum(x[BONDS[:, 0]] * x[BONDS[:, 1]]), CHECKERBOARD,
                          SPINS.uniform(jax.random.key(0), (2,), (16,)), SPINS)


def test_compare_statistics_must_be_a_function_of_one_state(spins4):
    with pytest.raises(TypeError, match="statistics must be a function of one state"):
        compare(spins4, jax.random.key(0), ["gibbs"], statistics="magnetisation", progress_bar=False)
    with pytest.raises(ValueError, match="scalars or 1-D arrays"):
        compare(spins4, jax.random.key(0), ["gibbs"], statistics=lambda x: jnp.outer(x, x), progress_bar=False)
