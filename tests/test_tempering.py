"""Parallel tempering (samplers.parallel_tempering) and stepping-stone log Z, through the public API."""

import os
import subprocess
import sys
import textwrap
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebmppl import Energy, sample, samplers
from ebmppl._arviz import ess
from ebmppl.logz import LogZWarning
from ebmppl.logz.stepping_stone import stepping_stone
from ebmppl.samplers.tempering import equalise_ladder
from ebmppl.targets import gaussian, gaussian_mixture
from conftest import SUITE_XLA_FLAGS


def _quiet_sample(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sample(*args, progress_bar=False, **kwargs)


def _z(draws: np.ndarray, truth: float) -> float:
    """(estimate − truth) / MCSE, the MCSE from the ESS of the pooled draws."""
    se = draws.std() / np.sqrt(float(ess(draws)))
    return (draws.mean() - truth) / se


def test_target_level_is_exact_on_a_correlated_gaussian():
    # the swaps and the per-level refresh must leave the target invariant: mean and second moments within 4 MCSE
    cov = np.array([[2.0, 0.8], [0.8, 1.0]])
    t = gaussian([1.0, -2.0], cov)
    out = _quiet_sample(t.energy, jax.random.key(3), sampler=samplers.parallel_tempering("mala", 4), num_chains=4,
                        num_warmup=400, num_samples=2000)
    x = np.asarray(out.positions, np.float64)
    for i, m in enumerate([1.0, -2.0]):
        assert abs(_z(x[..., i], m)) < 4
        assert abs(_z((x[..., i] - m) ** 2, cov[i, i])) < 4
    assert abs(_z((x[..., 0] - 1.0) * (x[..., 1] + 2.0), cov[0, 1])) < 4


def test_two_modes_weighted_correctly_where_mala_is_stuck():
    t = gaussian_mixture([0.25, 0.75], [[-5.0, 0.0], [5.0, 0.0]], [0.5 * np.eye(2)] * 2)
    pt = _quiet_sample(t.energy, jax.random.key(0), sampler=samplers.parallel_tempering("mala", 6), num_chains=4,
                       num_warmup=400, num_samples=1000)
    right = (np.asarray(pt.positions[..., 0]) > 0).astype(float)
    assert abs(_z(right, 0.75)) < 4
    summary = samplers.tempering_summary(pt)
    assert summary.round_trips.min() > 0
    # the same number of gradient evaluations spent by MALA alone: every chain stays in its starting mode
    grads = int(pt.stats.num_grad_evals.sum(axis=1).mean())
    mala = _quiet_sample(t.energy, jax.random.key(0), sampler="mala", num_chains=4, num_warmup=500,
                         num_samples=grads)
    per_chain = (np.asarray(mala.positions[..., 0]) > 0).mean(axis=1)
    assert set(np.round(per_chain, 6)) <= {0.0, 1.0}


def test_ladder_equalisation_places_levels_at_equal_barrier():
    betas = jnp.array([0.0, 0.1, 0.5, 1.0])
    rejection = jnp.array([0.6, 0.3, 0.3])
    new = np.asarray(equalise_ladder(betas, rejection), np.float64)
    # Λ(β) is linear between the old levels; at the new levels it must be equally spaced
    barrier = np.interp(new, np.asarray(betas), np.concatenate([[0.0], np.cumsum(np.asarray(rejection))]))
    np.testing.assert_allclose(np.diff(barrier), 1.2 / 3, rtol=1e-5)
    assert new[0] == 0.0 and new[-1] == 1.0 and np.all(np.diff(new) > 0)


def test_warmup_equalises_swap_acceptance_and_counts_round_trips():
    t = gaussian_mixture([0.5, 0.5], [[-4.0, 0.0], [4.0, 0.0]], [0.5 * np.eye(2)] * 2)
    out = _quiet_sample(t.energy, jax.random.key(1), sampler=samplers.parallel_tempering("mala", 6), num_chains=8,
                        num_warmup=600, num_samples=600)
    s = samplers.tempering_summary(out)
    assert s.betas[0] == 0 and s.betas[-1] == 1 and np.all(np.diff(s.betas) > 0)
    # 8 chains × 600 rounds / 2 attempts per pair: binomial error of a pair's acceptance ≈ 0.01; allow a
    # spread of 0.1 for the adaptation's residual (the ladder is fitted on the previous round's noisy rates)
    assert np.ptp(s.swap_acceptance) < 0.1
    assert s.barrier == pytest.approx(np.sum(1 - s.swap_acceptance))
    # DEO's round-trip rate is within a factor 2 of its ideal 1/(2 + 2Λ)
    assert s.ideal_round_trip_rate / 2 < s.round_trip_rate <= s.ideal_round_trip_rate * 1.1
    assert s.swap_rounds == 600 and s.round_trips.shape == (8,)
    assert "round trips" in str(s)


def test_identical_levels_swap_always_and_labels_travel_deterministically():
    # reference = target: ℓ is constant, every swap is accepted, and DEO moves each state one level per round
    e = Energy(lambda p, x: 0.5 * jnp.sum(x**2) + jnp.log(2 * jnp.pi), None, event_shape=(2,))
    pt = samplers.parallel_tempering("mala", 4)
    out = _quiet_sample(e, jax.random.key(0), sampler=pt, num_chains=2, num_warmup=0, num_samples=400,
                        sampler_params={"reference_mean": jnp.zeros(2), "reference_scale": jnp.ones(2)})
    s = samplers.tempering_summary(out)
    np.testing.assert_allclose(s.swap_acceptance, 1.0)
    # a lifted walk on 4 levels: every label completes a round trip every 2·4 rounds, i.e. 4 trips per 8 rounds
    assert abs(s.round_trip_rate - 0.5) <= 4 / 400 + 1e-9  # up to one trip per label at the ends


def test_statistics_reach_arviz_and_survive_thinning():
    out = _quiet_sample(gaussian([0.0], [[1.0]]).energy, jax.random.key(0),
                        sampler=samplers.parallel_tempering("hmc", 3), num_chains=2, num_warmup=60,
                        num_samples=30, thinning=2)
    idata = out.to_arviz()
    assert idata.posterior["x"].shape == (2, 30, 1)
    assert idata.sample_stats["swap_acceptance"].shape == (2, 30, 2)
    assert idata.sample_stats["level_acceptance"].shape == (2, 30, 3)
    assert set(np.unique(np.isnan(np.asarray(idata.sample_stats["swap_acceptance"])).sum(-1))) <= {0, 1}
    assert out.params["kernel_step_size"].shape == (3,) and out.params["kernel_inverse_mass_matrix"].shape == (3, 1)


def test_sampler_values_and_bad_options():
    assert samplers.parallel_tempering("mala", 4) == samplers.parallel_tempering(samplers.mala(), 4)
    assert hash(samplers.parallel_tempering("mala", 4)) == hash(samplers.parallel_tempering(samplers.mala(), 4))
    assert samplers.parallel_tempering("mala", 4) != samplers.parallel_tempering("mala", 5)
    assert samplers.parallel_tempering("ula").exact is False and samplers.parallel_tempering("nuts").exact is True
    assert "parallel_tempering" in samplers.available()
    with pytest.raises(ValueError, match="num_replicas must be an int >= 2"):
        samplers.parallel_tempering("mala", 1)
    with pytest.raises(TypeError, match="not parallel tempering itself"):
        samplers.parallel_tempering(samplers.parallel_tempering())
    with pytest.raises(ValueError, match="unknown sampler 'malla'"):
        samplers.parallel_tempering("malla")
    mala = _quiet_sample(gaussian([0.0], [[1.0]]).energy, jax.random.key(0), sampler="mala", num_chains=2,
                         num_warmup=10, num_samples=10)
    with pytest.raises(TypeError, match="drawn by parallel tempering"):
        samplers.tempering_summary(mala)


def test_stepping_stone_log_z_within_its_error_on_a_scaled_mixture():
    # a normalised two-mode mixture times e^{1.5}: log Z = 1.5
    t = gaussian_mixture([0.3, 0.7], [[-4.0, 0.0], [4.0, 0.0]], [0.5 * np.eye(2)] * 2)
    e = Energy(lambda p, x: t.energy.energy_fn(t.energy.params, x) - 1.5, None, event_shape=(2,))
    est = stepping_stone(e, jax.random.key(0), sampler=samplers.parallel_tempering("mala", 8),
                         sampler_params={"reference_scale": jnp.full(2, 6.0)}, num_warmup=500, num_samples=500)
    assert est.reliable and est.method == "stepping-stone"
    assert abs(est.log_z - 1.5) < 4 * est.stderr and est.stderr < 0.1


def test_stepping_stone_says_when_the_ladder_is_too_short():
    t = gaussian(np.zeros(20), 0.01 * np.eye(20))
    with pytest.warns(LogZWarning, match="effective weights"):
        est = stepping_stone(t.energy, jax.random.key(0), sampler=samplers.parallel_tempering("mala", 2),
                             num_warmup=100, num_samples=100)
    assert not est.reliable and "num_replicas" in est.advice
    with pytest.raises(ValueError, match="parallel_tempering"):
        stepping_stone(t.energy, jax.random.key(0), sampler=samplers.mala())
    with pytest.raises(ValueError, match="num_chains must be an int >= 4"):
        stepping_stone(t.energy, jax.random.key(0), num_chains=2)


@pytest.mark.slow
def test_sharded_parallel_tempering_draws_are_identical():
    script = textwrap.dedent("""
        import jax, numpy as np
        from ebmppl import sample, samplers
        from ebmppl.targets import banana
        pt = samplers.parallel_tempering("mala", 4)
        kw = dict(sampler=pt, num_chains=4, num_warmup=0, num_samples=50, progress_bar=False)
        one = sample(banana().energy, jax.random.key(0), devices=1, **kw)
        two = sample(banana().energy, jax.random.key(0), devices=2, **kw)
        print("MAXDIFF", float(np.max(np.abs(np.asarray(one.positions) - np.asarray(two.positions)))))
    """)
    env = {**os.environ, "EBMPPL_CPU_DEVICES": "2", "JAX_PLATFORMS": "cpu"}
    env["XLA_FLAGS"] = SUITE_XLA_FLAGS  # no forced device count; the suite's compile flags
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    diff = float(next(ln for ln in run.stdout.splitlines() if ln.startswith("MAXDIFF")).split()[1])
    assert diff < 1e-5
