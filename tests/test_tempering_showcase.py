"""Issue 18's must-shows for parallel tempering, through the public API.

Four modes (2-D, 8 sd apart, weights 0.1/0.2/0.3/0.4): parallel tempering's
mode weights lie within 4 Monte-Carlo standard errors of the truth with split
R-hat ≤ 1.01; MALA on the same gradient budget does not. Twenty dimensions,
two modes 13.4 sd apart: at least 10 round trips per 1000 swap rounds per
chain. And :func:`ebmppl.plots.plot_ladder` draws a run's ladder.
"""

from __future__ import annotations

import jax
import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from ebmppl import ChainHealthWarning, sample, samplers
from ebmppl.compare import mode_weights
from ebmppl.plots import plot_ladder
from ebmppl.diagnostics import rhat as split_rhat  # rank-normalised split R-hat, as compare() reports
from ebmppl.targets import four_modes, gaussian_mixture

MAX_MCSE = 4.0
WARMUP, DRAWS, CHAINS = 500, 1500, 4
REPLICAS = 8
PT_GRADS_PER_STEP = 2 * (REPLICAS - 1)  # MALA + one refresh at every level above the exactly drawn reference


@pytest.fixture(scope="module")
def target():
    return four_modes()


@pytest.fixture(scope="module")
def tempered(target):
    pt = samplers.parallel_tempering(kernel="mala", num_replicas=REPLICAS)
    return sample(target.energy, jax.random.key(0), sampler=pt,
                  num_chains=CHAINS, num_warmup=WARMUP, num_samples=DRAWS, progress_bar=False)


def _indicators(x, modes):
    return (modes.assign(np.asarray(x))[..., None] == np.arange(modes.num_modes)).astype(float)


def test_parallel_tempering_gets_the_four_mode_weights(tempered, target):
    w = mode_weights(tempered.positions, target.modes)
    assert np.all(w.z <= MAX_MCSE), (w.estimate, w.mcse)
    assert np.all(w.per_chain > 0), "every chain visits every mode"
    rhat_x = np.asarray(split_rhat(np.asarray(tempered.positions)))
    rhat_modes = np.asarray(split_rhat(_indicators(tempered.positions, target.modes)))
    assert rhat_x.max() <= 1.01 and rhat_modes.max() <= 1.01, (rhat_x, rhat_modes)
    assert np.all(np.asarray(tempered.stats.num_grad_evals) == PT_GRADS_PER_STEP)
    s = samplers.tempering_summary(tempered)
    assert s.round_trips.min() > 0 and s.round_trip_rate <= 1.05 * s.ideal_round_trip_rate + 0.01


def test_mala_on_the_same_gradient_budget_is_not_converged(target):
    budget = (WARMUP + DRAWS) * PT_GRADS_PER_STEP  # per chain, warm-up included; MALA costs 1 gradient per step
    with pytest.warns(ChainHealthWarning, match="chains disagree"):  # sample() itself sees it
        out = sample(target.energy, jax.random.key(0), sampler="mala", num_chains=CHAINS, num_warmup=WARMUP,
                     num_samples=budget - WARMUP, progress_bar=False)
    assert int(np.sum(out.stats.num_grad_evals)) == CHAINS * (budget - WARMUP)
    w = mode_weights(out.positions, target.modes)
    rhat = np.asarray(split_rhat(np.asarray(out.positions))).max()
    assert rhat > 1.01 or np.any(w.z > MAX_MCSE), (rhat, w.estimate)


@pytest.mark.slow
def test_twenty_dimensions_round_trips():
    dim, m = 20, 1.5  # means 2·1.5·√20 ≈ 13.4 sd apart
    t = gaussian_mixture([0.3, 0.7], np.stack([-m * np.ones(dim), m * np.ones(dim)]), [np.eye(dim)] * 2)
    out = sample(t.energy, jax.random.key(1), sampler=samplers.parallel_tempering(kernel="mala", num_replicas=12),
                 num_chains=4, num_warmup=1500, num_samples=1000, progress_bar=False)
    s = samplers.tempering_summary(out)
    assert 1000 * s.round_trip_rate >= 10, s
    assert np.all(s.round_trips >= 5), s
    w = mode_weights(out.positions, t.modes)
    assert np.all(w.z <= MAX_MCSE), (w.estimate, w.mcse)


def test_plot_ladder_takes_a_summary_or_samples_and_axes(tempered):
    import matplotlib.pyplot as plt

    s = samplers.tempering_summary(tempered)
    fig = plot_ladder(s)
    assert len(fig.axes) == 4 and f"{s.barrier:.2f}" in fig._suptitle.get_text()
    plt.close(fig)
    fig, axes = plt.subplots(1, 3)
    assert plot_ladder(tempered, ax=axes) is fig
    with pytest.raises(ValueError, match="three matplotlib axes"):
        plot_ladder(s, ax=axes[:2])
    plt.close("all")
    with pytest.raises(TypeError, match="parallel tempering"):
        plot_ladder(sample(four_modes().energy, jax.random.key(0), sampler="mala", num_chains=2, num_warmup=10,
                           num_samples=10, progress_bar=False))
