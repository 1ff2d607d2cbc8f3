"""Compare samplers on one energy: same chains, same budget, same keys; one table."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from ebmppl.diagnostics import arviz as azb
from ebmppl.energy import Energy
from ebmppl.samplers import Sampler, Samples, get_sampler, sample
from ebmppl.targets import Target

__all__ = ["compare", "Comparison", "COLUMNS"]

COLUMNS = [
    "sampler", "converged", "rhat_max", "ess_bulk_min", "ess_tail_min", "grad_evals", "ess_per_1k_grads",
    "ess_per_s", "compile_s", "sampling_s", "acceptance", "divergences", "step_size",
    "mean_err_mcse", "std_err_mcse", "flag",
]
"""Columns of :attr:`Comparison.table`, in order."""


@dataclasses.dataclass
class Comparison:
    """What :func:`compare` returns.

    Attributes
    ----------
    name
        Name of the target.
    table
        A pandas DataFrame, one row per sampler (see ``COLUMNS``): max split
        R-hat, min bulk/tail ESS over dimensions, gradient evaluations, bulk
        ESS per 1000 gradient evaluations and per second of sampling (compile
        excluded and reported in ``compile_s``), mean acceptance, divergences,
        adapted step size, the worst error of means and standard deviations in
        units of their Monte-Carlo standard error (where the truth is known),
        ``converged`` and a ``flag`` that says why not.
    samples
        The :class:`~ebmppl.Samples` of every sampler (``None`` where it failed).
    energy
        The energy that was sampled.

    Examples
    --------
    >>> import jax
    >>> from ebmppl.targets import gaussian
    >>> result = compare(gaussian([0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]]), ["mala"], key=jax.random.key(0),
    ...                  num_warmup=200, num_samples=200, progress_bar=False)
    >>> result.name, list(result.table["sampler"]), result.samples["mala"].positions.shape
    ('gaussian', ['mala'], (4, 200, 2))
    """

    name: str
    table: Any
    samples: dict[str, Samples | None]
    energy: Energy

    def to_markdown(self, digits: int = 3) -> str:
        """The table as GitHub-flavoured Markdown; non-converged rows are marked in bold.

        Examples
        --------
        >>> import jax
        >>> from ebmppl.targets import gaussian
        >>> result = compare(gaussian([0.0], [[1.0]]), ["mala"], key=jax.random.key(0), num_warmup=100,
        ...                  num_samples=100, progress_bar=False)
        >>> result.to_markdown().splitlines()[0].startswith("| sampler")
        True
        """
        cols = list(self.table.columns)
        lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        for _, row in self.table.iterrows():
            cells = []
            for c in cols:
                v = row[c]
                if isinstance(v, (float, np.floating)):
                    cells.append("—" if not np.isfinite(v) else f"{v:.{digits}g}")
                elif isinstance(v, (bool, np.bool_)):
                    cells.append("yes" if v else "**NO**")
                else:
                    cells.append(str(v) if v != "" else "")
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def _row(name: str, out: Samples, truth_mean, truth_std, rhat_threshold: float, min_ess: float) -> dict[str, Any]:
    draws = np.asarray(out.positions, np.float64).reshape(out.positions.shape[:2] + (-1,))
    rhat = azb.rhat(draws)
    ess_bulk, ess_tail = azb.ess(draws, "bulk"), azb.ess(draws, "tail")
    grads = int(np.asarray(out.stats.num_grad_evals).sum())
    row = {
        "sampler": name,
        "rhat_max": float(np.max(rhat)),
        "ess_bulk_min": float(np.min(ess_bulk)),
        "ess_tail_min": float(np.min(ess_tail)),
        "grad_evals": grads,
        "ess_per_1k_grads": 1000.0 * float(np.min(ess_bulk)) / max(grads, 1),
        "ess_per_s": float(np.min(ess_bulk)) / max(out.timings["sampling"], 1e-9),
        "compile_s": out.timings["compile"],
        "sampling_s": out.timings["sampling"],
        "acceptance": float(np.nanmean(np.asarray(out.stats.acceptance_rate))) if np.isfinite(np.asarray(out.stats.acceptance_rate)).any() else float("nan"),
        "divergences": int(np.asarray(out.stats.is_divergent).sum()),
        "step_size": float(np.asarray(out.params.get("step_size", np.nan))),
        "mean_err_mcse": float("nan"),
        "std_err_mcse": float("nan"),
    }
    if truth_mean is not None:
        row["mean_err_mcse"] = float(np.max(np.abs(draws.mean((0, 1)) - truth_mean) / azb.mcse(draws, "mean")))
    if truth_std is not None:
        row["std_err_mcse"] = float(np.max(np.abs(draws.std((0, 1), ddof=1) - truth_std) / azb.mcse(draws, "sd")))
    reasons = []
    if not row["rhat_max"] <= rhat_threshold:
        reasons.append(f"R-hat {row['rhat_max']:.3f} > {rhat_threshold}")
    if not row["ess_bulk_min"] >= min_ess:
        reasons.append(f"bulk ESS {row['ess_bulk_min']:.0f} < {min_ess:g}")
    if not row["ess_tail_min"] >= min_ess:
        reasons.append(f"tail ESS {row['ess_tail_min']:.0f} < {min_ess:g}")
    row["converged"] = not reasons
    if row["divergences"]:  # a warning of possible bias, not a convergence criterion
        reasons.append(f"warning: {row['divergences']} divergences")
    row["flag"] = "; ".join(reasons)
    return row


def compare(
    target: Energy | Target,
    samplers: Mapping[str, str | Sampler] | Sequence[str],
    *,
    key: jax.Array,
    num_chains: int = 4,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    rhat_threshold: float = 1.01,
    min_ess: float = 400.0,
    true_mean: np.ndarray | None = None,
    true_std: np.ndarray | None = None,
    name: str | None = None,
    progress_bar: bool = True,
) -> Comparison:
    """Run several samplers on the same energy with the same chains, budget and keys, and tabulate.

    Parameters
    ----------
    target
        An :class:`~ebmppl.Energy`, or a :class:`~ebmppl.targets.Target`
        (whose exact mean and standard deviations are then used).
    samplers
        Names (``["mala", "nuts"]``) or a mapping from a label to a name or a
        :class:`~ebmppl.samplers.Sampler` (``{"hmc-32": samplers.hmc(32)}``).
    key
        One key: every sampler gets the same initial positions and the same sampling key.
    num_chains, num_warmup, num_samples
        The common budget.
    rhat_threshold, min_ess
        A run is flagged as not converged when its max split R-hat exceeds
        ``rhat_threshold`` (Vehtari et al. 2021: 1.01) or its min bulk or tail
        ESS is below ``min_ess`` (their advice: 100 per chain for 4 chains).
    true_mean, true_std
        Known moments (flattened event), for the error columns.
    name
        Label of the target (default: the Target's name or ``"energy"``).
    progress_bar
        Show a progress bar per sampler.

    Returns
    -------
    Comparison

    Examples
    --------
    >>> from ebmppl.targets import banana
    >>> c = compare(banana(), ["mala", "nuts"], key=jax.random.key(0), num_warmup=200, num_samples=200,
    ...             progress_bar=False)
    >>> list(c.table["sampler"])
    ['mala', 'nuts']
    >>> bool(c.table.loc[0, "rhat_max"] > 0.99)
    True
    """
    import pandas as pd

    if isinstance(target, Target):
        energy, name = target.energy, name or target.name
        true_mean = target.mean if true_mean is None else true_mean
        true_std = target.std if true_std is None else true_std
    elif isinstance(target, Energy):
        energy, name = target, name or "energy"
    else:
        raise TypeError(f"target must be an ebmppl.Energy or a Target, got {type(target).__name__}.")
    if not isinstance(samplers, Mapping):
        samplers = {str(s): s for s in samplers}
    if not samplers:
        raise ValueError("samplers is empty; pass at least one sampler name, e.g. ['mala', 'nuts'].")
    resolved = {label: get_sampler(s) if isinstance(s, str) else s for label, s in samplers.items()}
    k_init, k_run = jax.random.split(key)
    init = jax.random.uniform(k_init, (num_chains, *energy.event_shape), minval=-2.0, maxval=2.0)
    rows, results = [], {}
    for label, sampler in resolved.items():
        try:
            out = sample(energy, k_run, sampler=sampler, num_chains=num_chains, num_warmup=num_warmup,
                         num_samples=num_samples, init=init, progress_bar=progress_bar)
        except FloatingPointError as err:  # a diverged run is a result, not a crash
            results[label] = None
            rows.append({"sampler": label, "converged": False, "flag": f"diverged: {err}".split(". ")[0]})
            continue
        results[label] = out
        rows.append(_row(label, out, true_mean, true_std, rhat_threshold, min_ess))
    table = pd.DataFrame(rows).reindex(columns=COLUMNS)
    table["converged"] = table["converged"].astype(bool)
    table["flag"] = table["flag"].fillna("")
    return Comparison(name, table, results, energy)
