"""Issue 15 follow-up (stability): the default ``fit`` stays stable as the energy sharpens, and health advice
is consistent, ordered by what works, and names options that apply to the objective in use.

Before: the "density" recipe's fixed MALA step (0.03 sd) was soon too large for an MLP energy sharpening on
30-D breast-cancer data; acceptance fell 0.96 -> 0.23 -> 0 by step ~900, the chains froze and the data's
energy ran to -5.7e7, returned without an error. The health advice said "larger step size" at one check and
"lower the sampler step size" at the next, listed alpha first, and named fit options (sampler_params,
recipe='density') that raise errors for a Trainer.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ebmppl
from ebmppl import Energy, fit, recipes
from ebmppl.fit import TrainingDiverged
from ebmppl.health import HealthWarning, TrainingHealth
from ebmppl.objectives import contrastive_divergence

pytestmark = pytest.mark.xla_optimized  # long-running programs: compiled with XLA's optimisations


def gaussian_energy(d):
    return Energy(lambda p, x: 0.5 * jnp.sum(((x - p["m"]) * jnp.exp(p["s"])) ** 2),
                  {"m": jnp.zeros(d), "s": jnp.zeros(d)}, event_shape=(d,))


@pytest.fixture(scope="module")
def data5():
    # a scale and a dimension no other test uses
    return 40.0 - 7.0 * jax.random.normal(jax.random.key(51), (600, 5))


def test_the_density_step_shrinks_towards_the_target_acceptance(data5):
    """A step far too large for the data (3 sd in 5-D): the recipe's adaptation brings acceptance to its target."""
    full = fit(gaussian_energy(5), data5, key=jax.random.key(5), num_steps=200, recipe="density",
               sampler_params={"step_size": 3.0}, num_mcmc_steps=3, batch_size=32, progress_bar=False,
               chunk_size=50)
    step, acc = full.history["step_size"], full.history["acceptance_rate"]
    assert np.all(step <= 3.0) and step[-1] < 1.0  # only shrinks; and it did
    # acceptance over the last half against the target, within 4 standard errors from 10 batch means
    tail = acc[100:].reshape(10, -1).mean(1)
    se = tail.std(ddof=1) / np.sqrt(len(tail))
    assert abs(tail.mean() - recipes.DENSITY_TARGET_ACCEPTANCE) < 4 * se + 0.02
    assert acc[:10].mean() < 0.2  # where it started: the fixed step would have stayed there
    # the energy records the step training ended with, for the samplers later used with it
    recorded = full.energy.sampler_settings.params["step_size"]
    assert recorded == pytest.approx(3.0 * float(np.exp(full.state.buffer.log_step_scale)), rel=1e-6)


def test_the_adapted_step_is_checkpointed_and_resumes_bit_identically(data5, tmp_path):
    e = gaussian_energy(5)
    trainer = contrastive_divergence(e, optax.adam(1e-2, b1=0.0), sampler="mala", num_mcmc_steps=3, alpha=0.0,
                                     sampler_params={"step_size": 50.0}, target_acceptance=0.6)
    kwargs = {"objective": trainer, "batch_size": 32, "progress_bar": False, "chunk_size": 20}
    full = fit(e, data5, key=jax.random.key(5), num_steps=60, checkpoint_dir=tmp_path / "a", **kwargs)
    fit(e, data5, key=jax.random.key(5), num_steps=40, checkpoint_dir=tmp_path / "b", **kwargs)
    resumed = fit(e, data5, key=jax.random.key(5), num_steps=60, checkpoint_dir=tmp_path / "b", resume=True,
                  **kwargs)
    assert float(resumed.state.buffer.log_step_scale) == float(full.state.buffer.log_step_scale) < 0
    np.testing.assert_array_equal(full.history["step_size"], resumed.history["step_size"])
    np.testing.assert_array_equal(full.history["loss"], resumed.history["loss"])


def test_a_step_that_is_accepted_often_enough_is_left_exactly_as_given():
    """The unbiased default on easy data is untouched: the step stays DENSITY_STEP bit for bit."""
    x = 1.0 + np.sqrt(0.5) * jax.random.normal(jax.random.key(52), (500, 2))
    result = fit(gaussian_energy(2), x, key=jax.random.key(1), num_steps=60, chunk_size=30, progress_bar=False)
    assert result.recipe == "density"
    assert np.all(result.history["step_size"] == np.float32(recipes.DENSITY_STEP))
    assert float(result.state.buffer.log_step_scale) == 0.0


def test_adaptation_options_are_validated():
    e = gaussian_energy(2)
    with pytest.raises(ValueError, match="target_acceptance must be in"):
        contrastive_divergence(e, optax.adam(1e-3), sampler="mala", target_acceptance=1.5)
    with pytest.raises(ValueError, match="adapt_rate must be > 0"):
        contrastive_divergence(e, optax.adam(1e-3), sampler="mala", target_acceptance=0.6, adapt_rate=0.0)


def _health(advice_for):
    return TrainingHealth(gaussian_energy(2), window=4, grace=0, emit=False, advice_for=advice_for)


def _feed(health, acceptances, energy=1.0, gap=-20.0):
    for i, acc in enumerate(acceptances):
        health._probe_energies = []
        record = {"step": 50 * (i + 1), "energy_pos": energy, "energy_neg": energy - gap, "cd_gap": gap,
                  "acceptance_rate": acc, "rhat": 1.5, "ess": 5.0}
        health.records.append(record)
        health._check(record["step"], record)
    return [m for _, m in health.warnings]


@pytest.mark.parametrize("advice_for", ["fit", "density", "trainer"])
def test_step_advice_never_contradicts_itself_and_names_the_cause(advice_for):
    """Falling acceptance with lagging chains: never 'larger steps' while acceptance is low; the cause is named."""
    messages = _feed(_health(advice_for), [0.25, 0.2, 0.1, 0.03, 0.0, 0.0])
    assert messages
    assert not any("larger" in m or "raise the sampler step" in m for m in messages)
    assert any("sharpens faster than the sampler follows" in m for m in messages)
    assert any("lower the sampler step size" in m or "smaller step" in m for m in messages) or advice_for == "density"


@pytest.mark.parametrize("advice_for", ["fit", "density", "trainer"])
def test_runaway_advice_puts_the_learning_rate_first_and_alpha_last(advice_for):
    health = _health(advice_for)
    messages = _feed(health, [0.0], energy=-5e4)
    runaway = next(m for m in messages if "running away" in m)
    assert runaway.index("learning rate") < runaway.index("alpha")
    assert "biases" in runaway and "last resort" in runaway
    assert health.final_check(100) and "not a fit" in health.warnings[-1][1]


def test_advice_for_a_trainer_names_its_builder_not_fit_options():
    """Before: 'fit(..., sampler_params=...)' and recipe='density', both errors for a Trainer."""
    messages = _feed(_health("trainer"), [0.95, 0.0, 0.5], energy=-5e4)
    messages.append(_health("trainer").final_check(1) or "")
    for m in messages:
        assert "fit(..., sampler_params" not in m and "recipe='density'" not in m, m
    assert any("jem_hybrid(joint" in m for m in messages)


@pytest.mark.parametrize("objective, call", [("cd", "contrastive_divergence(energy, optimizer, "),
                                             ("jem", "jem_hybrid(joint, optimizer, "),
                                             ("mcem", "mcem(..., negative=prior_chains(..., ")])
def test_health_advice_names_the_builder_of_the_trainer(objective, call):
    """Before: a contrastive_divergence Trainer was told to pass options to jem_hybrid(joint, ...)."""
    health = TrainingHealth(gaussian_energy(2), window=4, grace=0, emit=False, advice_for="trainer",
                            objective=objective)
    messages = _feed(health, [0.95, 0.0, 0.5], energy=-5e4)
    assert any(call in m for m in messages), messages
    others = {"cd": "contrastive_divergence(", "jem": "jem_hybrid(", "mcem": "mcem("}
    assert not any(other in m for m in messages for name, other in others.items() if name != objective), messages


def test_fit_tells_health_and_the_divergence_guard_which_options_apply():
    e = gaussian_energy(2)
    x = 3.0 + jax.random.normal(jax.random.key(53), (256, 2))
    trainer = contrastive_divergence(e, optax.adam(1e-2), sampler="mala", num_mcmc_steps=2,
                                     sampler_params={"step_size": 0.1})
    assert fit(e, x, key=jax.random.key(0), num_steps=10, objective=trainer, progress_bar=False,
               chunk_size=10).health.advice_for == "trainer"
    assert fit(e, x, key=jax.random.key(0), num_steps=10, progress_bar=False,
               chunk_size=10).health.advice_for == "density"
    wild = contrastive_divergence(e, optax.adam(1e-2), sampler=ebmppl.samplers.langevin(step_size=1e30,
                                                                                         noise_scale=1e30))
    with pytest.raises(TrainingDiverged) as err:
        fit(e, x, key=jax.random.key(0), num_steps=20, objective=wild, progress_bar=False, chunk_size=10)
    text = str(err.value)
    assert "where the Trainer was built" in text and "recipe='density'" not in text
    assert "contrastive_divergence(energy, optimizer, sampler_params=" in text and "jem_hybrid" not in text, text
    assert text.index("step size") < text.index("learning rate") < text.index("alpha")



def _cosh_energy():
    # cosh(θx) overflows for |θx| ≳ 89: fine at unit scale, infinite on raw data of scale 1e3
    return Energy(lambda p, x: jnp.sum(jnp.cosh(p * x)), jnp.float32(1.0), event_shape=(3,))


def test_divergence_on_unscaled_data_names_the_scale_first():
    """Before: data of scale 1e3 from an iterator diverged at step 1 and the advice spoke only of step sizes."""
    x = np.asarray(1e3 * jax.random.normal(jax.random.key(7), (256, 3)), np.float32)
    with pytest.raises(TrainingDiverged) as err:
        fit(_cosh_energy(), jax.random.key(0), [x[i:i + 64] for i in range(0, 256, 64)], num_steps=4, batch_size=64,
            progress_bar=False)
    text = str(err.value)
    assert "batch it diverged on has entries up to |x| = " in text and "standardise them" in text, text
    assert text.index("data's scale") < text.index("step size")
    # the same data standardised still diverge (the default Langevin step is too large for cosh's gradient):
    # then the scale is not blamed
    with pytest.raises(TrainingDiverged) as err:
        fit(_cosh_energy(), jax.random.key(0), [x[i:i + 64] / 1e3 for i in range(0, 256, 64)], num_steps=4,
            batch_size=64, progress_bar=False)
    assert "data's scale" not in str(err.value) and "step size" in str(err.value)


def test_divergence_advice_for_drl_names_its_step_scale_only():
    """DRL has no sampler_params, no gradient clipping and no alpha: its advice offers none of them."""
    from ebmppl.noise import NoiseLadder, noise_conditional
    from ebmppl.objectives import diffusion_recovery_likelihood

    e = noise_conditional(lambda p, x, s: jnp.sum(jnp.cosh(p * x)), jnp.float32(1.0), (3,),
                          NoiseLadder.geometric(1.0, 0.1, 3))
    x = np.asarray(1e3 * jax.random.normal(jax.random.key(7), (256, 3)), np.float32)
    with pytest.raises(TrainingDiverged) as err:
        fit(e, jax.random.key(0), x, num_steps=4, batch_size=64, progress_bar=False,
            objective=diffusion_recovery_likelihood(e, optax.adam(1e-3), num_steps=2))
    text = str(err.value)
    assert "step_scale=0.05" in text and "diffusion_recovery_likelihood(" in text, text
    assert "alpha" not in text and "clip" not in text and "sampler_params" not in text, text
    assert "data the trainer sees has entries up to" in text, text

@pytest.mark.slow
def test_default_fit_on_breast_cancer_does_not_run_away():
    """The stranger's case: MLPEnergy, 30-D breast cancer (427 rows), fit's defaults, 2000 steps."""
    from sklearn.datasets import load_breast_cancer

    from ebmppl.nn import MLPEnergy

    x = load_breast_cancer().data[:427].astype(np.float32)  # raw scale: the recipe standardises
    e = Energy.from_equinox(MLPEnergy(30, key=jax.random.key(0)), event_shape=(30,))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", HealthWarning)
        result = fit(e, x, key=jax.random.key(1), progress_bar=False)
    h = result.history
    assert np.max(np.abs(h["energy_pos"])) < result.health.energy_limit  # before: 5.7e7
    assert np.mean(h["acceptance_rate"][-200:]) > 0.4  # before: 0.00
    assert h["step_size"][-1] < recipes.DENSITY_STEP  # the step followed the energy
    assert not [w for w in caught if "running away" in str(w.message) or "not a fit" in str(w.message)]
