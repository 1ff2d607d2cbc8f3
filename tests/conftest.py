"""Shared targets and helpers: Monte-Carlo tolerances come from ESS, not from tuning."""

import jax
import numpy as np
import pytest

from ebmppl import diagnostics
from ebmppl.targets import gaussian, ill_conditioned_gaussian

jax.config.update("jax_default_matmul_precision", "highest")

# helper programs run in their own process (other XLA flags, float64): not test modules
collect_ignore_glob = ["scripts/*"]


@pytest.fixture(scope="session")
def gauss2d():
    return gaussian([1.0, -1.0], [[1.0, 0.5], [0.5, 2.0]])


@pytest.fixture(scope="session")
def gauss10d():
    return ill_conditioned_gaussian(10, 100.0)


def z_scores(values: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """|mean of values - truth| / MCSE, per statistic; ``values`` is (chain, draw, k)."""
    est = values.mean(axis=(0, 1))
    se = diagnostics.mcse(values)
    return np.abs(est - truth) / se


def moment_z_scores(draws: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """z-scores of the means and of every covariance entry (centred at the true mean)."""
    centred = draws - mean
    iu = np.triu_indices(mean.shape[0])
    products = centred[..., iu[0]] * centred[..., iu[1]]
    return z_scores(draws, mean), z_scores(products, cov[iu])


def langevin_stationary_cov(cov, step, noise_var):
    """Stationary covariance of x' = x - h P (x - m) + σ ξ for a Gaussian N(m, Σ), P = Σ⁻¹.

    V = A V A + σ² I with A = I - hP gives V = σ² (2hP - h²P²)⁻¹.
    """
    p = np.linalg.inv(cov)
    return noise_var * np.linalg.inv(2 * step * p - step**2 * p @ p)


# Tallies of the reliability tests (tests/test_reliability.py), reported at the end of the run:
# how many bad inputs were tried, how many faults injected, and how many were lost (a silent wrong
# result, a crash without a documented error, a damaged checkpoint loaded as good). Lost must stay 0.
RELIABILITY = {"bad inputs tried": 0, "faults injected": 0, "lost": 0}


def pytest_sessionfinish(session):
    # under pytest-xdist each worker counts its own tests: hand the tally to the controller
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["reliability"] = dict(RELIABILITY)


def pytest_configure(config):
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_CollectWorkerTallies())


class _CollectWorkerTallies:
    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error):
        for k, v in getattr(node, "workeroutput", {}).get("reliability", {}).items():
            RELIABILITY[k] += v


def pytest_terminal_summary(terminalreporter):
    if RELIABILITY["bad inputs tried"] or RELIABILITY["faults injected"]:
        terminalreporter.write_line(
            "reliability: " + ", ".join(f"{v} {k}" for k, v in RELIABILITY.items()))
