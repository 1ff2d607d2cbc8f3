"""User paths found by a docs-only trial: energies far from the origin and coarse grids.

An energy returned by ``fit`` lives on the data's scale (here centred at
(5000, -20000), spread 1000). Defaults that assume mass near the origin gave
confident wrong answers: AIS 34-40 nats off with a tight error bar, chains
started 20 000 units away. Each test failed before ``Energy.typical_region``.
"""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ebmppl
from ebmppl.logz import LogZWarning
from ebmppl.recipes import Standardized

CENTER, SCALE = (5000.0, -20000.0), (1000.0, 400.0)


def far_gaussian():
    """N(CENTER, diag(SCALE²)) written as fit returns energies: log Z = log 2π exactly."""
    fn = Standardized(lambda p, z: 0.5 * jnp.sum(z**2), shift=CENTER, scale=SCALE,
                      offset=float(np.log(SCALE).sum()))
    return ebmppl.Energy(fn, None, event_shape=(2,), probe=jnp.asarray(CENTER))


def test_log_partition_defaults_put_the_base_where_the_mass_is():
    with warnings.catch_warnings():
        warnings.simplefilter("error", LogZWarning)  # a trustworthy estimate comes without a warning
        est = ebmppl.log_partition(far_gaussian(), jax.random.key(0))
    assert est.ess > 30
    assert abs(est.log_z - math.log(2 * math.pi)) < 4 * est.stderr + est.stderr**2 / 2


def test_an_estimate_on_few_effective_weights_says_so():
    # a base 40 spreads away from the mass: before, a tight error bar on a value tens of nats off
    with pytest.warns(LogZWarning, match="effective sample size"):
        ebmppl.log_partition(far_gaussian(), jax.random.key(0), method="importance", num_chains=256,
                             base_center=0.0, base_scale=3000.0)


def test_chains_start_where_the_mass_is():
    out = ebmppl.sample(far_gaussian(), jax.random.key(1), sampler="mala", num_chains=4, num_warmup=200,
                        num_samples=200, progress_bar=False)
    draws = np.asarray(out.positions).reshape(-1, 2)
    z = (draws.mean(0) - np.array(CENTER)) / np.asarray(ebmppl.diagnostics.mcse(np.asarray(out.positions)))
    assert np.all(np.abs(z) < 5), z


def test_a_grid_too_coarse_for_the_energy_warns_and_reports_its_error():
    narrow = ebmppl.Energy(lambda p, x: 0.5 * jnp.sum((x / 0.01) ** 2), None, event_shape=(2,))
    truth = math.log(2 * math.pi * 0.01**2)
    with pytest.warns(LogZWarning, match="too coarse"):
        coarse = ebmppl.log_partition(narrow, method="grid", limits=(-10, 10, -10, 10))
    fine = ebmppl.log_partition(narrow, method="grid", limits=(-0.1, 0.1, -0.1, 0.1))
    assert abs(fine.log_z - truth) < max(3 * fine.stderr, 1e-4)
    assert coarse.stderr > 0.01  # the error bar is not 0 on a grid that misses the detail


def test_compare_with_a_mean_only_truth_says_the_spread_is_not_checked():
    target = ebmppl.targets.gaussian([0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]])
    result = ebmppl.diagnostics.compare(target.energy, ["ula"], key=jax.random.key(0), num_chains=2,
                                        num_warmup=50, num_samples=50, true_mean=np.zeros(2),
                                        progress_bar=False)
    assert "sd not checked" in result.bias_check
