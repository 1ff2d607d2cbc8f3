"""Issue 20 stranger report: no CD health alarms for MCMC-free objectives, unknown options named, KSD messages."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ebmppl import Energy, fit
from ebmppl.goodness import ksd_test
from ebmppl.health import TrainingHealth
from ebmppl.noise import NoiseLadder, noise_conditional
from ebmppl.objectives import multiscale_dsm
from ebmppl.targets import gaussian

# data of scale 0.01 and an energy whose level sits near -5000 by construction (as multi-σ DSM's E = f/σ does
# at a small σ): the size of |E| says nothing about the fit when no chains are contrasted with the data
X = 0.01 * jax.random.normal(jax.random.key(0), (256, 2))
OFFSET = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2) / 1e-4 - 5000.0, jnp.zeros(2), event_shape=(2,))
CD_ALARMS = ("running away", "not a fit", "CD gap", "target_acceptance", "num_mcmc_steps")


def _alarms(health):
    return [m for _, m in health.warnings if any(a in m for a in CD_ALARMS)]


@pytest.mark.parametrize("objective", ["sm", "ed"])
def test_no_runaway_alarm_for_mcmc_free_objectives(objective):
    result = fit(OFFSET, jax.random.key(1), X, objective=objective, num_steps=20, chunk_size=10, progress_bar=False)
    assert result.health.objective == objective and result.health.chains is False
    assert abs(result.health.records[-1]["energy_pos"]) > result.health.energy_limit  # would have warned before
    assert _alarms(result.health) == []


def test_no_runaway_alarm_for_a_multiscale_dsm_trainer():
    # passed as a Trainer (the stranger's form): the objective is read from the Objective itself
    ladder = NoiseLadder.geometric(0.1, 5e-4, 4)
    e = noise_conditional(lambda p, x, s: 0.5 * jnp.sum((x - p) ** 2) / (s**2 + 1e-4) - 2500.0, jnp.zeros(2), (2,),
                          ladder)
    result = fit(e, jax.random.key(1), X, objective=multiscale_dsm(e, optax.adam(1e-3), continuous=True),
                 num_steps=20, chunk_size=10, progress_bar=False)
    assert result.health.objective == "multiscale_dsm" and result.health.chains is False
    assert _alarms(result.health) == []


def _feed(health, steps=(10, 20, 30), acceptance=0.05):
    """Records as fit's chunks leave them (the final_check doctest's pattern), without a slow fit."""
    for s in steps:
        health(s, None, {"energy_pos": np.array([-5e3]), "energy_neg": np.array([10.0]),
                         "cd_gap": np.array([-5010.0]), "acceptance_rate": np.array([acceptance])})
    health.final_check(steps[-1])
    return [m for _, m in health.warnings]


def test_cd_runaway_still_warns_and_drl_advice_names_its_options():
    cd = _feed(TrainingHealth(OFFSET, window=4, grace=0, emit=False, objective="cd"))
    assert any("running away" in m and "target_acceptance" in m for m in cd)
    assert any("not a fit" in m for m in cd) and any("CD gap" in m for m in cd)
    # no objective named (a custom Trainer): judged as CD, as before
    assert any("running away" in m for m in _feed(TrainingHealth(OFFSET, window=4, grace=0, emit=False)))
    # (an MCMC-free objective reports no acceptance)
    free = TrainingHealth(OFFSET, window=4, grace=0, emit=False, objective="multiscale_dsm")
    assert _feed(free, acceptance=np.nan) == []
    drl = _feed(TrainingHealth(OFFSET, window=4, grace=0, emit=False, objective="drl"))
    assert any("running away" in m for m in drl) and any("not a fit" in m for m in drl)
    assert all("step_scale" in m for m in drl)
    assert not any("target_acceptance" in m or "sampler_params" in m or "alpha" in m for m in drl)
    trainer = _feed(TrainingHealth(OFFSET, window=4, grace=0, emit=False, objective="drl", advice_for="trainer"))
    assert any("diffusion_recovery_likelihood(energy, optimizer, num_mcmc_steps=" in m for m in trainer)


def test_cd_fit_with_runaway_energies_still_warns():
    result = fit(OFFSET, jax.random.key(1), X, objective="cd", num_steps=10, chunk_size=10, progress_bar=False,
                 recipe="none", sampler="mala", sampler_params={"step_size": 1e-3}, num_mcmc_steps=2)
    assert result.health.chains is True
    assert any("running away" in m for _, m in result.health.warnings)


def test_unknown_objective_option_names_the_valid_ones():
    with pytest.raises(TypeError, match=r"unknown option 'tt' for objective 'ed'; its options are t, num_negatives, w"):
        fit(OFFSET, jax.random.key(1), X, objective="ed", tt=0.5, num_steps=2, progress_bar=False)
    with pytest.raises(TypeError, match=r"unknown option 'target_acceptance' for objective 'sm'"):
        fit(OFFSET, jax.random.key(1), X, objective="sm", target_acceptance=0.6, num_steps=2, progress_bar=False)


def test_ksd_test_says_the_minimum_and_low_power():
    t = gaussian([0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]])
    x = t.sample(jax.random.key(0), 300)
    with pytest.raises(ValueError, match="needs at least 10 independent draws, got 1") as err:
        ksd_test(t.energy, jax.random.key(1), x[:1])
    assert "ESS" not in str(err.value) and "chains" not in str(err.value)
    few = ksd_test(t.energy, jax.random.key(1), x[:50], num_bootstrap=200)
    assert not few.reject and "little power" in few.verdict and "classifier_two_sample_test" in few.verdict
    many = ksd_test(t.energy, jax.random.key(1), x, num_bootstrap=200)
    assert not many.reject and "little power" not in many.verdict
