"""Findings of a stranger who learned the redesigned core from the docs only, each a test that failed before its fix."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ebmppl
from ebmppl import Energy, sample, samplers
from ebmppl.samplers import ChainHealthWarning

QUAD = Energy(lambda p, x: 0.5 * jnp.sum(x**2), jnp.zeros(()), event_shape=(2,))
SHORT = dict(num_chains=2, num_warmup=50, num_samples=50, progress_bar=False)


@pytest.mark.parametrize("call", [
    lambda s: sample(QUAD, jax.random.key(0), sampler=s, **SHORT),
    lambda s: ebmppl.log_partition(QUAD, jax.random.key(0), sampler=s),
    lambda s: ebmppl.objectives.contrastive_divergence(QUAD, __import__("optax").adam(1e-3), sampler=s),
])
def test_a_sampler_class_instead_of_a_value_is_an_error_that_says_how(call):
    # before: "got _ModuleMeta" from sample, a raw "default_params() missing 'dim'" from fit and log_partition
    with pytest.raises(TypeError, match=r"MALA is a Sampler class; pass a value: MALA\(\)"):
        call(samplers.MALA)


@pytest.mark.parametrize("metric", [jnp.array([1.0, -1.0]), jnp.array([[1.0, 2.0], [2.0, 1.0]]),
                                    jnp.array([1.0, jnp.nan])])
def test_an_inverse_mass_matrix_that_is_not_positive_is_refused(metric):
    # before: accepted; the run only warned about divergences and advised reparametrising
    with pytest.raises(ValueError, match="inverse_mass_matrix.*positive"):
        sample(QUAD, jax.random.key(0), sampler="hmc", sampler_params={"inverse_mass_matrix": metric}, **SHORT)


def test_a_collapsed_step_size_with_chains_apart_is_reported():
    # a lattice of needle-thin wells: each chain falls into its own, warm-up shrinks the step ~1e-11-fold;
    # before: no warning, draws with R-hat ~1e15 returned as if fine
    needles = Energy(lambda p, x: 1e12 * jnp.sum((x - jax.lax.stop_gradient(jnp.round(x))) ** 2), jnp.zeros(()),
                     event_shape=(2,))
    with pytest.warns(ChainHealthWarning, match="warm-up shrank the step size"):
        sample(needles, jax.random.key(1), sampler="mala", num_chains=4, num_warmup=200, num_samples=50,
               progress_bar=False)


def test_a_tiny_but_healthy_target_scale_is_not_reported_as_a_collapse():
    tiny = Energy(lambda p, x: 1e9 * jnp.sum(x**2), jnp.zeros(()), event_shape=(2,))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ChainHealthWarning)
        out = sample(tiny, jax.random.key(0), sampler="mala", num_chains=4, num_warmup=200, num_samples=100,
                     progress_bar=False)
    assert float(out.params["step_size"]) < 1e-6  # the step did shrink by > 1e5: the chains agree, so no alarm


def test_compare_reports_no_efficiency_per_gradient_for_a_gradient_free_sampler():
    class Walk(samplers.MALA):  # a MALA that reports no gradient evaluations (as a random walk would)
        name = "walk"

        def step(self, key, state, logdensity_fn, params):
            state, stats = super().step(key, state, logdensity_fn, params)
            return state, stats._replace(num_grad_evals=jnp.zeros_like(stats.num_grad_evals))

    result = ebmppl.compare(QUAD, jax.random.key(0), {"walk": Walk()}, num_chains=2, num_warmup=50,
                            num_samples=50)
    row = result.table[0] if isinstance(result.table, list) else result.table.iloc[0]
    # before: grad_evals 0 and ess_per_1k_grads ~1e5 (ESS divided by max(0, 1))
    assert int(row["grad_evals"]) == 0 and np.isnan(row["ess_per_1k_grads"])


def test_the_log_z_advice_uses_the_current_names():
    from ebmppl.logz import estimate

    text = " ".join(str(v) for v in vars(estimate).values() if isinstance(v, (str, dict)))
    assert "transition=" not in text
