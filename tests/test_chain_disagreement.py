"""sample() says aloud when its chains disagree beyond their Monte-Carlo error (found by a stranger: a learned
two-mode prior sampled by 4 MALA chains gave mode weights 0.73 / 0.27 against the true 0.29 / 0.71, silently)."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ebmppl
from ebmppl.samplers.sample import ChainHealthWarning, split_rhat

TWO_WELLS = ebmppl.Energy(lambda p, x: jnp.sum(2.0 * (jnp.abs(x) - 4.0) ** 2), None, event_shape=(1,))


def test_chains_in_different_modes_are_reported():
    with pytest.warns(ChainHealthWarning, match="chains disagree"):
        ebmppl.sample(TWO_WELLS, jax.random.key(0), sampler="mala", num_chains=4, num_samples=400,
                      init=jnp.array([[-4.0], [4.0], [4.0], [4.0]]), progress_bar=False)


@pytest.mark.parametrize("sampler", ["mala", "nuts"])
def test_a_slowly_mixing_unimodal_run_is_not_called_disagreement(sampler):
    # 4 MALA chains on a 50-D Gaussian: split R-hat exceeds 1.01 in some coordinates by noise alone (ESS ~ 50
    # per chain); the chain means agree within their Monte-Carlo error, so nothing is reported
    gauss = ebmppl.Energy(lambda p, x: 0.5 * jnp.sum(x**2), None, event_shape=(50,))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ChainHealthWarning)
        out = ebmppl.sample(gauss, jax.random.key(0), sampler=sampler, num_chains=4, num_samples=500,
                            progress_bar=False)
    assert out.positions.shape == (4, 500, 50)


def test_split_rhat_matches_arviz_classic_form():
    x = np.random.default_rng(1).normal(size=(4, 300, 3)) + np.array([0.0, 0.0, 0.3, 0.0])[:, None, None]
    from ebmppl.diagnostics import rhat

    # classic split R-hat and ArviZ's rank-normalised one agree closely on Gaussian draws
    assert np.allclose(split_rhat(x), rhat(x), atol=0.01)


def test_the_on_device_moments_judge_as_the_float64_ones_far_from_the_origin():
    # sample() reduces the disagreement check's moments on the devices in float32 (shifted by the first draw);
    # on a well-mixed Gaussian centred at 1e5 (sd 1) nothing is reported, and its split R-hat from those moments
    # equals the float64 host computation on the same draws
    from ebmppl.samplers.sample import _moments, _rhat

    far = ebmppl.Energy(lambda p, x: 0.5 * jnp.sum((x - 1e5) ** 2), None, event_shape=(3,))
    init = 1e5 + jax.random.normal(jax.random.key(1), (4, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ChainHealthWarning)
        out = ebmppl.sample(far, jax.random.key(0), sampler="mala", num_chains=4, num_samples=1000, init=init,
                            progress_bar=False)
    x = np.asarray(out.positions)
    on_device = _rhat(jax.jit(lambda a: _moments(a, jnp))(out.positions), 1000)  # as _assemble computes them
    assert np.allclose(on_device, _rhat(_moments(x), 1000), atol=1e-4), (on_device, split_rhat(x))
