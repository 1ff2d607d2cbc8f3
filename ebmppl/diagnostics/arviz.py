"""The ArviZ layer of :mod:`ebmppl.diagnostics`: the functions of :mod:`ebmppl._arviz`, the one module that calls ArviZ.

Examples
--------
>>> import numpy as np
>>> from ebmppl.diagnostics import arviz
>>> bool(np.all(arviz.rhat(np.random.default_rng(0).normal(size=(4, 500, 2))) < 1.01))
True
"""

from __future__ import annotations

from ebmppl._arviz import autocorr, ess, from_numpyro, mcse, plot_rank, plot_trace, rhat, summary, to_inference_data

__all__ = ["to_inference_data", "from_numpyro", "summary", "rhat", "ess", "mcse", "autocorr", "plot_trace", "plot_rank"]
