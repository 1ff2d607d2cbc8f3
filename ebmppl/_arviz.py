"""Every ArviZ call ebmppl makes lives here: a leaf of the base layer.

:mod:`ebmppl.samplers` (``Samples.to_arviz``), :mod:`ebmppl.logz` (the
convergence check of reverse AIS), :mod:`ebmppl.diagnostics` and
:func:`ebmppl.compare` all call ArviZ through this module and nothing else.
It imports nothing from ebmppl.

ArviZ 0.23 (Python 3.11) uses ``InferenceData``; ArviZ 1.x (Python >= 3.12)
moves to ``DataTree`` and the ``arviz_base``/``arviz_stats``/``arviz_plots``
split. Keeping the calls in one module means 1.x support is a change here
and nowhere else.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

__all__ = ["to_inference_data", "from_dict", "from_numpyro", "summary", "rhat", "ess", "mcse", "autocorr", "plot_trace", "plot_rank"]


def _az():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the 1.x-refactor notice
        import arviz as az
    return az


def to_inference_data(samples: Any, var_name: str = "x") -> Any:
    """Convert :class:`ebmppl.Samples` to ``InferenceData`` with ``posterior`` and ``sample_stats``.

    ``sample_stats`` uses ArviZ's names: ``acceptance_rate``, ``diverging``,
    ``n_steps`` (gradient evaluations) and ``lp`` (``-E/T``). The posterior
    holds the draws as ``var_name``; for a NumPyro model sampled through
    :func:`ebmppl.numpyro.model_energy` it holds the model's named sites in
    their constrained space instead (deterministic sites included).

    Examples
    --------
    >>> import jax
    >>> from ebmppl import sample
    >>> from ebmppl.targets import banana
    >>> out = sample(banana().energy, jax.random.key(0), sampler="mala", num_chains=2,
    ...              num_warmup=100, num_samples=50, progress_bar=False)
    >>> idata = to_inference_data(out)
    >>> idata.posterior["x"].shape
    (2, 50, 2)
    >>> sorted(idata.sample_stats.data_vars)
    ['acceptance_rate', 'diverging', 'lp', 'n_steps']
    """
    az = _az()
    positions = np.asarray(samples.positions)
    stats = samples.stats
    sample_stats = {
        "acceptance_rate": np.asarray(stats.acceptance_rate),
        "diverging": np.asarray(stats.is_divergent),
        "n_steps": np.asarray(stats.num_grad_evals),
        "lp": np.asarray(stats.logdensity),
    }
    # a sampler's own statistics beyond the common four (parallel tempering's swap acceptance, ...)
    common = ("acceptance_rate", "is_divergent", "num_grad_evals", "logdensity")
    sample_stats.update({name: np.asarray(value) for name, value in zip(stats._fields, stats)
                         if name not in common})
    postprocess = getattr(samples, "postprocess", None)
    if postprocess is not None:  # a NumPyro model (ebmppl.numpyro.model_energy): its named, constrained sites
        sites = {name: np.asarray(value) for name, value in postprocess(samples.positions).items()}
        return az.from_dict(posterior=sites, sample_stats=sample_stats)
    dims = {var_name: [f"{var_name}_dim_{i}" for i in range(positions.ndim - 2)]}
    return az.from_dict(posterior={var_name: positions}, sample_stats=sample_stats, dims=dims)


def from_dict(posterior: dict[str, Any], sample_stats: dict[str, Any] | None = None,
              dims: dict[str, list[str]] | None = None) -> Any:
    """``InferenceData`` from named draws ``(chain, draw, *shape)`` (``az.from_dict``), e.g. a model's sites.

    Examples
    --------
    >>> idata = from_dict({"z": np.zeros((2, 10, 5))}, {"acceptance_rate": np.ones((2, 10))}, {"z": ["example"]})
    >>> idata.posterior["z"].dims
    ('chain', 'draw', 'example')
    """
    return _az().from_dict(posterior={k: np.asarray(v) for k, v in posterior.items()},
                           sample_stats=None if sample_stats is None else
                           {k: np.asarray(v) for k, v in sample_stats.items()}, dims=dims)


def from_numpyro(mcmc: Any, **kwargs: Any) -> Any:
    """``az.from_numpyro`` for a model with energy factors, with ``log_likelihood`` left out.

    ArviZ files every ``numpyro.factor`` site (so every
    :func:`ebmppl.numpyro.energy_factor`) under ``log_likelihood``. An energy
    factor is a prior term, not a likelihood, and ``az.loo``/``az.waic`` would
    silently score it; so the group is dropped unless you pass
    ``log_likelihood=True``.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
    >>> from numpyro.infer import MCMC, NUTS
    >>> mcmc = MCMC(NUTS(lambda: numpyro.sample("z", dist.Normal())), num_warmup=50, num_samples=50,
    ...             progress_bar=False)
    >>> mcmc.run(jax.random.key(0))
    >>> "log_likelihood" in from_numpyro(mcmc).groups()
    False
    """
    az = _az()
    kwargs.setdefault("log_likelihood", False)
    return az.from_numpyro(mcmc, **kwargs)


def _per_dimension(draws: np.ndarray, diagnostic: str, **kwargs: Any) -> np.ndarray:
    """ArviZ's ``diagnostic`` (``rhat``, ``ess``, ``mcse``) of ``draws`` ``(chain, draw, *shape)``, shaped ``shape``.

    A scalar quantity (one value per draw, as fit's health probe checks at every chunk) goes to ArviZ as a
    ``(chain, draw)`` array: the same numbers without building an xarray Dataset (~4x less time, ~1.5 ms).
    """
    az, draws = _az(), np.asarray(draws)
    if draws.ndim >= 2 and int(np.prod(draws.shape[2:], dtype=int)) == 1:
        value = getattr(az, diagnostic)(draws.reshape(draws.shape[:2]), **kwargs)
        return np.full(draws.shape[2:], float(value))
    return np.asarray(getattr(az, diagnostic)(az.convert_to_dataset(draws), **kwargs)["x"])


def rhat(draws: np.ndarray) -> np.ndarray:
    """Rank-normalised split R-hat per dimension of ``draws`` ``(chain, draw, *shape)``.

    Examples
    --------
    >>> draws = np.random.default_rng(0).normal(size=(4, 500, 2))
    >>> bool(np.all(rhat(draws) < 1.01))
    True
    """
    return _per_dimension(draws, "rhat", method="rank")


def ess(draws: np.ndarray, method: str = "bulk") -> np.ndarray:
    """Bulk (or ``method="tail"``) effective sample size per dimension of ``draws``.

    Examples
    --------
    >>> draws = np.random.default_rng(0).normal(size=(4, 500, 2))
    >>> bool(np.all(ess(draws) > 1500))
    True
    """
    return _per_dimension(draws, "ess", method=method)


def mcse(draws: np.ndarray, method: str = "mean") -> np.ndarray:
    """Monte-Carlo standard error of the mean (or ``method="sd"``) per dimension.

    Examples
    --------
    >>> draws = np.random.default_rng(0).normal(size=(4, 500, 1))
    >>> round(float(mcse(draws)[0]), 2)   # about 1 / sqrt(2000)
    0.02
    """
    return _per_dimension(draws, "mcse", method=method)


def autocorr(x: np.ndarray) -> np.ndarray:
    """Autocorrelation of a 1-D series (``az.autocorr``, FFT based).

    Examples
    --------
    >>> float(autocorr(np.random.default_rng(0).normal(size=1000))[0])
    1.0
    """
    return np.asarray(_az().autocorr(np.asarray(x, np.float64)))


def summary(idata: Any, **kwargs: Any) -> Any:
    """``az.summary`` (a pandas DataFrame: mean, sd, HDI, MCSE, ESS, R-hat).

    Examples
    --------
    >>> import arviz as az
    >>> idata = az.from_dict(posterior={"x": np.random.default_rng(0).normal(size=(2, 100))})
    >>> list(summary(idata).columns)[:2]
    ['mean', 'sd']
    """
    return _az().summary(idata, **kwargs)


def plot_trace(idata: Any, **kwargs: Any) -> Any:
    """``az.plot_trace``: marginal densities and traces per chain.

    Examples
    --------
    >>> import arviz as az, matplotlib; matplotlib.use("Agg")
    >>> idata = az.from_dict(posterior={"x": np.random.default_rng(0).normal(size=(2, 100))})
    >>> plot_trace(idata).shape
    (1, 2)
    """
    return _az().plot_trace(idata, **kwargs)


def plot_rank(idata: Any, **kwargs: Any) -> Any:
    """``az.plot_rank``: rank histograms per chain (flat when chains agree).

    Examples
    --------
    >>> import arviz as az, matplotlib; matplotlib.use("Agg")
    >>> idata = az.from_dict(posterior={"x": np.random.default_rng(0).normal(size=(2, 100))})
    >>> _ = plot_rank(idata)
    """
    return _az().plot_rank(idata, **kwargs)
