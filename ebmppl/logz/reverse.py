"""Reverse AIS: from samples of ``p`` back to the base, unbiased for ``1/Z`` (a stochastic upper bound on log Z).

The samples are checked for convergence first (split R-hat and bulk/tail
ESS, through :mod:`ebmppl._arviz`): reverse AIS from samples that are not
from ``p`` is no upper bound and proves nothing.
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ebmppl import _arviz
from ebmppl.logz.estimate import LogZWarning

__all__ = ["MAX_RHAT", "MIN_SAMPLE_ESS"]

MAX_RHAT = 1.01
"""Largest split R-hat of the samples that reverse AIS accepts as converged (more with few draws)."""
MIN_SAMPLE_ESS = 100
"""Smallest bulk and tail ESS of the samples that reverse AIS accepts as converged."""


def _rhat_limit(chains: int, draws: int, num_coordinates: int) -> float:
    """The R-hat above which draws are refused: ``MAX_RHAT``, or more where exact draws would exceed it by chance.

    For independent draws split into ``k = 2·chains`` halves of length ``n``,
    ``B/W`` follows ``F(k-1, ·) ≈ χ²_{k-1}/(k-1)``, so split R-hat ≈ ``1 + (F-1)/(2n)``.
    The limit is that expression at the ``1 - 0.001/(2m)`` quantile (bulk and
    tail R-hat of ``m`` coordinates, Bonferroni): with few draws even exact
    samples exceed 1.01 (256 draws in 2-D often reach 1.03), and refusing them
    would be a false alarm.
    """
    from scipy.stats import chi2

    k, n = 2 * chains, max(draws // 2, 1)
    q = float(chi2.ppf(1.0 - 0.001 / (2 * max(num_coordinates, 1)), k - 1)) / (k - 1)
    return max(MAX_RHAT, 1.0 + (q - 1.0) / (2.0 * n))


def _reverse_starts(samples: Any, event_shape: tuple[int, ...], num_chains: int, require_converged: bool, ftype
                    ) -> tuple[jax.Array, jax.Array | None, list[str]]:
    """Check the samples for reverse AIS and pick its starts.

    Returns ``(starts, rest, notes)``: at most ``num_chains`` draws, evenly
    spaced through the chains; the draws not used as starts (for fitting the
    base), or ``None``; and reasons to call the estimate unreliable.
    """
    positions = samples.positions if hasattr(samples, "positions") else samples
    arr = np.asarray(positions)
    ev = len(event_shape)
    notes: list[str] = []
    if arr.ndim == 2 + ev and tuple(arr.shape[2:]) == tuple(event_shape):
        chains, draws = arr.shape[:2]
        if draws < 4:
            raise ValueError(f"samples: {draws} draws per chain are too few to check convergence; pass at least 4 "
                             "(better hundreds) per chain.")
        flat = np.asarray(arr, np.float64).reshape(chains, draws, -1)
        if chains == 1:  # ArviZ needs two chains: split the one in halves (what split R-hat does anyway)
            flat = flat[:, : 2 * (draws // 2)].reshape(2, draws // 2, -1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # constant coordinates: R-hat is nan there
            rhat = float(np.nanmax(_arviz.rhat(flat), initial=1.0))
            ess = float(np.nanmin(np.minimum(_arviz.ess(flat, "bulk"), _arviz.ess(flat, "tail")),
                                  initial=float(chains * draws)))
        limit = _rhat_limit(flat.shape[0], flat.shape[1], flat.shape[2])
        if rhat > limit or ess < MIN_SAMPLE_ESS:
            seen = (f"the samples are not shown to come from the energy: largest split R-hat {rhat:.3f} "
                    f"(limit {limit:.3f}), smallest bulk/tail ESS {ess:.0f} (limit {MIN_SAMPLE_ESS}) over {chains} "
                    f"chains × {draws} draws; reverse AIS from them is no upper bound and proves nothing")
            if require_converged:
                raise ValueError(f"samples: {seen}. Run the chains longer (num_warmup, num_samples) or with an exact "
                                 "sampler (sampler='nuts' or 'hmc'), or pass require_converged=False to get an "
                                 "estimate flagged unreliable.")
            notes.append(seen)
        arr = arr.reshape(chains * draws, *event_shape)
    elif arr.ndim == 1 + ev and tuple(arr.shape[1:]) == tuple(event_shape):
        warnings.warn(
            f"samples of shape {arr.shape} carry no chain structure, so their convergence could not be checked; "
            "reverse AIS is an upper bound only if they come from the energy. Pass the Samples from ebmppl.sample or "
            "an array (chains, draws, *event_shape); exact independent draws x can be passed as x[None] (one chain).",
            LogZWarning, stacklevel=3)
    else:
        raise ValueError(f"samples must be a Samples, (chains, draws, *event_shape) or (n, *event_shape) with "
                         f"event_shape {tuple(event_shape)}; got shape {arr.shape}.")
    arr = jnp.asarray(arr, ftype)
    if not bool(jnp.all(jnp.isfinite(arr))):
        raise ValueError("samples hold non-finite values (NaN or inf): the chains diverged; rerun them.")
    m = arr.shape[0]
    if m <= num_chains:
        return arr, None, notes
    pick = np.unique(np.round(np.linspace(0, m - 1, num_chains)).astype(int))
    rest = np.setdiff1d(np.arange(m), pick)
    return arr[pick], arr[rest], notes


