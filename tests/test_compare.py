"""Sampler comparison: numbers equal ArviZ's, non-converged runs are flagged in table and figure."""

import arviz as az
import jax
import matplotlib
import numpy as np
import pytest

from ebmppl import samplers
from ebmppl.diagnostics import COLUMNS, compare, moment_threshold, plot_comparison
from ebmppl.targets import TARGETS

matplotlib.use("Agg")

CASES = {
    # target: (samplers, chains, warm-up, draws)
    # small budgets: the tests below compare numbers with ArviZ's on the same draws and check flags, which hold
    # at any length (whether a run converges is not what they test)
    "banana": (["mala", "nuts"], 4, 300, 300),
    "funnel": (["nuts", "mala"], 4, 300, 300),
    "mixture": (["nuts", "hmc"], 4, 300, 300),
    "gaussian_100d": (["nuts", "mala"], 4, 200, 200),
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
        mixing = row["rhat_max"] <= 1.01 and min(row["ess_bulk_min"], row["ess_tail_min"]) >= 400
        unbiased = max(row["mean_err_mcse"], row["std_err_mcse"]) <= comparison.max_mcse
        assert row["bias_check"] == comparison.bias_check == "exact moments"
        assert row["converged"] == (mixing and unbiased)


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


def test_moment_scores_use_arviz_mcse_and_the_bonferroni_bound():
    t = TARGETS["gaussian"]()
    c = compare(t, ["mala"], key=jax.random.key(3), num_warmup=300, num_samples=500, progress_bar=False)
    draws = np.asarray(c.samples["mala"].positions, np.float64)
    idata = az.from_dict(posterior={"x": draws})
    z_sd = np.abs(draws.std((0, 1), ddof=1) - t.std) / np.asarray(az.mcse(idata, method="sd")["x"])
    z_mean = np.abs(draws.mean((0, 1)) - t.mean) / np.asarray(az.mcse(idata, method="mean")["x"])
    np.testing.assert_allclose(c.table.loc[0, "std_err_mcse"], z_sd.max(), rtol=1e-6)
    np.testing.assert_allclose(c.table.loc[0, "mean_err_mcse"], z_mean.max(), rtol=1e-6)
    # 2 means + 2 sds, 1 % family-wise: z_{1 - 0.01/8}
    assert c.max_mcse == pytest.approx(moment_threshold(4)) and moment_threshold(4) == pytest.approx(3.0233, abs=1e-4)
    strict = compare(t, ["mala"], key=jax.random.key(3), num_warmup=300, num_samples=500, progress_bar=False,
                     max_mcse=1e-3)
    assert strict.max_mcse == 1e-3 and not strict.table.loc[0, "converged"]
    assert "MCSE (limit 0.00)" in strict.table.loc[0, "flag"]


def test_without_a_truth_bias_is_not_checked_in_table_and_figure():
    energy = TARGETS["gaussian"]().energy
    c = compare(energy, ["mala"], key=jax.random.key(4), num_warmup=200, num_samples=300, progress_bar=False)
    row = c.table.iloc[0]
    assert c.bias_check == row["bias_check"] == "not checked" and np.isnan(c.max_mcse)
    assert np.isnan(row["mean_err_mcse"]) and "bias not checked" in row["flag"]
    fig = plot_comparison(c)
    assert "bias not checked" in fig._suptitle.get_text()
    assert any(ax.get_title() == "bias not checked" for ax in fig.axes)
    matplotlib.pyplot.close(fig)


def test_a_reference_run_serves_as_the_truth():
    t = TARGETS["gaussian"]()
    c = compare(t.energy, {"ula": samplers.ula(step_size=0.5), "mala": "mala"}, key=jax.random.key(5),
                num_warmup=300, num_samples=1000, reference="nuts", reference_samples=2000, progress_bar=False)
    assert c.reference is not None and c.reference.positions.shape == (4, 2000, 2)
    assert c.bias_check.startswith("reference run (nuts") and (c.table["bias_check"] == c.bias_check).all()
    table = c.table.set_index("sampler")
    assert table.loc["mala", "converged"], table.loc["mala", "flag"]
    assert not table.loc["ula", "converged"] and "sd[" in table.loc["ula", "flag"]
    # a given reference (Samples) is used as is; one that did not converge is refused with a warning
    again = compare(t.energy, ["mala"], key=jax.random.key(5), num_warmup=300, num_samples=1000,
                    reference=c.reference, progress_bar=False)
    assert again.reference is c.reference and again.table.loc[0, "converged"]
    with pytest.warns(UserWarning, match="reference run .* did not converge"):
        short = compare(t.energy, ["mala"], key=jax.random.key(5), num_warmup=10, num_samples=100,
                        reference=samplers.ula(step_size=1e-4), reference_samples=20, progress_bar=False)
    assert short.bias_check == "not checked"


def test_compare_validates_input():
    with pytest.raises(ValueError, match="samplers is empty"):
        compare(TARGETS["gaussian"](), [], key=jax.random.key(0))
    with pytest.raises(TypeError, match="target must be"):
        compare(lambda x: x, ["nuts"], key=jax.random.key(0))
    with pytest.raises(ValueError, match="unknown sampler"):
        compare(TARGETS["gaussian"](), ["gibs"], key=jax.random.key(0))
    with pytest.raises(ValueError, match="max_mcse"):
        compare(TARGETS["gaussian"](), ["nuts"], key=jax.random.key(0), max_mcse=0.0)
    with pytest.raises(TypeError, match="reference must be"):
        compare(TARGETS["gaussian"]().energy, ["nuts"], key=jax.random.key(0), reference=3)
    with pytest.raises(ValueError, match="true_std must have one entry"):
        compare(TARGETS["gaussian"]().energy, ["nuts"], key=jax.random.key(0), true_std=[1.0, 1.0, 1.0])
