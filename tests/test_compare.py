"""Sampler comparison: numbers equal ArviZ's, non-converged runs are flagged in table and figure."""

import arviz as az
import jax
import matplotlib
import numpy as np
import pytest

from ebmppl import samplers
from ebmppl.diagnostics import COLUMNS, compare, plot_comparison
from ebmppl.targets import TARGETS

matplotlib.use("Agg")

CASES = {
    # target: (samplers, chains, warm-up, draws)
    "banana": (["mala", "nuts"], 4, 500, 500),
    "funnel": (["nuts", "mala"], 4, 500, 500),
    "mixture": (["nuts", "hmc"], 4, 300, 300),
    "gaussian_100d": (["nuts", "mala"], 4, 300, 300),
}


@pytest.fixture(scope="module")
def comparisons():
    return {
        target: compare(TARGETS[target](), names, key=jax.random.key(0), num_chains=chains, num_warmup=warm,
                        num_samples=draws, progress_bar=False)
        for target, (names, chains, warm, draws) in CASES.items()
    }


@pytest.mark.parametrize("target", sorted(CASES))
def test_rhat_and_ess_equal_arviz_on_the_same_draws(comparisons, target):
    comparison = comparisons[target]
    assert list(comparison.table.columns) == COLUMNS
    for _, row in comparison.table.iterrows():
        out = comparison.samples[row["sampler"]]
        idata = az.from_dict(posterior={"x": np.asarray(out.positions, np.float64)})
        np.testing.assert_allclose(row["rhat_max"], float(az.rhat(idata, method="rank")["x"].max()), rtol=1e-6)
        np.testing.assert_allclose(row["ess_bulk_min"], float(az.ess(idata, method="bulk")["x"].min()), rtol=1e-6)
        np.testing.assert_allclose(row["ess_tail_min"], float(az.ess(idata, method="tail")["x"].min()), rtol=1e-6)
        assert row["grad_evals"] == int(np.asarray(out.stats.num_grad_evals).sum())
        assert row["converged"] == (row["rhat_max"] <= 1.01 and min(row["ess_bulk_min"], row["ess_tail_min"]) >= 400)


def test_four_mode_mixture_is_flagged_in_table_and_figure(comparisons):
    comparison = comparisons["mixture"]
    # modes 7 standard deviations apart: each chain stays in its mode, R-hat sees it
    assert not comparison.table["converged"].any()
    assert all("R-hat" in flag for flag in comparison.table["flag"])
    markdown = comparison.to_markdown()
    assert markdown.count("**NO**") == len(comparison.table)
    fig = plot_comparison(comparison)
    assert "NOT converged" in fig._suptitle.get_text()
    titles = [ax.get_title() for ax in fig.axes]
    assert sum("NOT CONVERGED" in t for t in titles) == len(comparison.table)
    matplotlib.pyplot.close(fig)


def test_moment_errors_in_mcse_units_on_a_gaussian():
    c = compare(TARGETS["gaussian"](), ["nuts"], key=jax.random.key(1), num_chains=4, num_warmup=500,
                num_samples=1000, progress_bar=False)
    row = c.table.iloc[0]
    assert row["converged"] and row["mean_err_mcse"] < 4 and row["std_err_mcse"] < 4


def test_diverged_sampler_is_a_row_not_a_crash():
    c = compare(TARGETS["gaussian"](), {"wild": samplers.langevin(step_size=50.0, noise_scale=1.0), "nuts": "nuts"},
                key=jax.random.key(2), num_warmup=50, num_samples=100, progress_bar=False)
    wild = c.table.set_index("sampler").loc["wild"]
    assert not wild["converged"] and wild["flag"].startswith("diverged")
    assert c.samples["wild"] is None


def test_compare_validates_input():
    with pytest.raises(ValueError, match="samplers is empty"):
        compare(TARGETS["gaussian"](), [], key=jax.random.key(0))
    with pytest.raises(TypeError, match="target must be"):
        compare(lambda x: x, ["nuts"], key=jax.random.key(0))
    with pytest.raises(ValueError, match="unknown sampler"):
        compare(TARGETS["gaussian"](), ["gibbs"], key=jax.random.key(0))
