"""Compare samplers on one energy: same chains, same budget, same keys; one table.

A workflow (it runs :func:`ebmppl.sample` and reads :mod:`ebmppl.targets`), so
it sits above :mod:`ebmppl.diagnostics` rather than inside it;
``ebmppl.diagnostics.compare`` is its deprecated old address.

A run is *converged* when its chains agree (split R-hat), carry enough
information (bulk and tail ESS) and, where a truth is known, reproduce it: every
mean and standard deviation within ``max_mcse`` Monte-Carlo standard errors of
the target's exact moments, or of a long reference run's moments (whose own
Monte-Carlo error is added in quadrature). Without a truth, bias cannot be
judged and the table says so (``bias_check == "not checked"``).

Multimodal targets get two more checks. Where the modes are known (a
:class:`~ebmppl.targets.Target` from :func:`~ebmppl.targets.gaussian_mixture`
carries :class:`~ebmppl.targets.Modes`), the weight of each mode in the draws
(the mean responsibility: the fraction of draws in it, for separated modes)
must lie within ``max_mcse`` Monte-Carlo standard errors of the true weight. Whether or not they are known,
chains stuck in disjoint regions are flagged: chains whose mode occupancy, or
whose means, disagree beyond their Monte-Carlo error (the test of
:func:`ebmppl.sample`'s chain-disagreement warning).
"""

from __future__ import annotations

import dataclasses
import statistics
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from ebmppl import _arviz as azb
from ebmppl._deprecation import UNSET, EbmpplDeprecationWarning
from ebmppl._validation import check_energy, check_int, check_key
from ebmppl.energy import Energy
from ebmppl.samplers import Sampler, Samples, as_sampler, sample
from ebmppl.samplers.sample import _disagreement, split_rhat
from ebmppl.targets import Modes, Target

__all__ = ["compare", "Comparison", "ModeWeights", "mode_weights", "COLUMNS", "moment_threshold"]

COLUMNS = [
    "sampler", "converged", "rhat_max", "ess_bulk_min", "ess_tail_min", "grad_evals", "ess_per_1k_grads",
    "ess_per_s", "compile_s", "sampling_s", "acceptance", "divergences", "step_size",
    "bias_check", "mean_err_mcse", "std_err_mcse", "mode_weights", "mode_err_mcse", "stuck_chains", "flag",
]
"""Columns of :attr:`Comparison.table`, in order."""

BIAS_NOT_CHECKED = "not checked"
"""``bias_check`` of a run that had no truth to be judged against."""


def moment_threshold(num_tests: int, family_alpha: float = 0.01) -> float:
    """The default ``max_mcse`` of :func:`compare`: a Bonferroni bound for ``num_tests`` moment checks.

    Each check is ``|estimate - truth| / MCSE``, close to a standard normal for
    a correct sampler (the MCSE is ESS-based, so autocorrelation is accounted
    for). Flagging a run when any of ``num_tests`` such scores exceeds
    ``z = Φ⁻¹(1 - family_alpha / (2 · num_tests))`` falsely flags a correct run
    with probability at most ``family_alpha`` (Bonferroni), whatever the
    dimension: 2.8 for one test, 3.0 for the 4 moments of a 2-D target, 3.7 for
    40 (20-D), 4.1 for 200 (100-D).

    Parameters
    ----------
    num_tests
        How many scores are compared with the bound (means plus standard deviations).
    family_alpha
        Probability of flagging a correct run for its moments, in (0, 1).

    Returns
    -------
    float

    Examples
    --------
    >>> round(moment_threshold(4), 2), round(moment_threshold(40), 2)
    (3.02, 3.66)
    """
    check_int("num_tests", num_tests, 1)
    if not 0.0 < float(family_alpha) < 1.0:
        raise ValueError(f"family_alpha must be in (0, 1), got {family_alpha!r}.")
    return float(statistics.NormalDist().inv_cdf(1.0 - float(family_alpha) / (2 * num_tests)))


class _Truth(NamedTuple):
    """What the moments of a run are judged against (``None``: unknown)."""

    mean: np.ndarray | None
    std: np.ndarray | None
    mean_se: np.ndarray | float  # Monte-Carlo error of the truth itself (0 when exact)
    std_se: np.ndarray | float
    source: str  # the bias_check column


class ModeWeights(NamedTuple):
    """How one run divided its draws among the known modes (:attr:`Comparison.mode_weights`).

    Attributes
    ----------
    estimate
        ``(k,)`` the weight of mode k in the draws, pooled over chains: the
        mean of its responsibility (:meth:`ebmppl.targets.Modes.responsibilities`),
        which is the fraction of draws in mode k for well-separated modes and
        unbiased however much they overlap.
    mcse
        ``(k,)`` Monte-Carlo standard errors of ``estimate``: ArviZ's, from the
        ESS of each mode's responsibility series (autocovariances within each
        chain, combined across chains as for any mean: chains that disagree
        widen it).
    truth
        ``(k,)`` the true weights.
    z
        ``(k,)`` ``|estimate - truth| / mcse``. For a mode no draw was
        assigned to (:meth:`~ebmppl.targets.Modes.assign`), or every draw was,
        the series is (nearly) constant and its MCSE meaningless; ``z`` is then
        the normal score of the chance of that under the truth with ``ess``
        independent draws, ``(1 - w)^ess`` (or ``w^ess``), so it is held to
        the same bound.
    per_chain
        ``(chain, k)`` fraction of each chain's draws assigned to each mode.
    ess
        The effective number of draws used for never-visited modes (by
        default the run's minimum bulk ESS).

    Examples
    --------
    >>> import jax
    >>> from ebmppl.targets import four_modes
    >>> t = four_modes()
    >>> draws = t.sample(jax.random.key(0), 4000).reshape(4, 1000, 2)
    >>> w = mode_weights(draws, t.modes)
    >>> w.estimate.round(1).tolist(), bool(w.z.max() < 3)   # exact draws: within their MCSE
    ([0.1, 0.2, 0.3, 0.4], True)
    """

    estimate: np.ndarray
    mcse: np.ndarray
    truth: np.ndarray
    z: np.ndarray
    per_chain: np.ndarray
    ess: float

    def describe(self, limit: float, shown: int = 3) -> str:
        """``"mode weights 0.25/0.25/0.50/0.00 vs 0.10/0.20/0.30/0.40 (mode 3 never visited, ...)"``.

        Examples
        --------
        >>> w = ModeWeights(np.array([0.5, 0.5, 0.0]), np.array([0.01, 0.01, 0.0]), np.array([0.4, 0.4, 0.2]),
        ...                 np.array([10.0, 10.0, np.inf]), np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), 500.0)
        >>> w.describe(3.0)
        'mode weights 0.50/0.50/0.00 vs 0.40/0.40/0.20 (mode 2 never visited, mode 0 off by 10.0 MCSE, mode 1 off by 10.0 MCSE; limit 3.00)'
        >>> w.describe(3.0, shown=1)
        'mode weights 0.50/0.50/0.00 vs 0.40/0.40/0.20 (mode 2 never visited, 2 more of 3 off; limit 3.00)'
        """
        text = f"mode weights {_slashed(self.estimate)} vs {_slashed(self.truth)}"
        bad = np.flatnonzero(~(self.z <= limit))
        bad = bad[np.argsort(-np.nan_to_num(self.z[bad], nan=np.inf), kind="stable")][:shown]
        visits = self.per_chain.sum(axis=0)
        unvisited = [i for i in np.flatnonzero(visits == 0) if i not in bad]
        parts = [f"mode {i} never visited" if visits[i] == 0 else
                 f"every draw in mode {i}" if np.all(self.per_chain[:, i] == 1) else
                 f"mode {i} off by {self.z[i]:.1f} MCSE" for i in bad]
        parts += [f"mode {i} never visited" for i in unvisited]
        more = np.sum(~(self.z <= limit)) - len(bad)
        if more:
            parts.append(f"{more} more of {self.z.size} off")
        if len(bad):
            parts[-1] += f"; limit {limit:.2f}"
        return f"{text} ({', '.join(parts)})" if parts else text


def _slashed(values: np.ndarray) -> str:
    return "/".join(f"{v:.2f}" for v in values)


def mode_weights(draws: np.ndarray | jax.Array, modes: Modes, ess: float | None = None) -> ModeWeights:
    """Fraction of the draws in each known mode, with Monte-Carlo errors and scores against the true weights.

    Parameters
    ----------
    draws
        ``(chain, draw, *event_shape)`` positions (the event flattened must have
        the modes' dimension).
    modes
        The mixture's components (:class:`ebmppl.targets.Modes`, e.g. ``target.modes``).
    ess
        Effective number of independent draws, used for modes that are never
        visited (default: the minimum bulk ESS of ``draws``).

    Returns
    -------
    ModeWeights

    Examples
    --------
    >>> import jax
    >>> from ebmppl.targets import four_modes
    >>> t = four_modes()
    >>> stuck = np.broadcast_to(t.modes.means[[0, 3]][:, None, :], (2, 500, 2))  # chain 0 in mode 0, chain 1 in 3
    >>> w = mode_weights(stuck + np.random.default_rng(0).normal(size=(2, 500, 2)), t.modes)
    >>> w.estimate.round(3).tolist(), w.per_chain.tolist()
    ([0.5, 0.0, 0.0, 0.5], [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    """
    from scipy.stats import norm

    x = np.asarray(draws, np.float64)
    if x.ndim < 3:
        raise ValueError(f"draws must be (chain, draw, *event_shape), got shape {x.shape}.")
    x = x.reshape(x.shape[:2] + (-1,))
    responsibilities = modes.responsibilities(x)  # (chain, draw, k); their mean is unbiased for the weights
    estimate = responsibilities.mean((0, 1))
    mcse = azb.mcse(responsibilities, "mean")
    truth = modes.weights
    z = _scores(estimate, mcse, truth, 0.0)
    # a mode no draw reached (or the only one reached) has no spread to judge by: score the chance of that
    # under the truth with n independent draws instead
    per_chain = _indicators(x, modes).mean(axis=1)
    visits = per_chain.sum(axis=0)
    n = float(np.min(azb.ess(x, "bulk"))) if ess is None else float(ess)
    n = n if np.isfinite(n) else 0.0
    never, only = visits == 0, visits == per_chain.shape[0]
    with np.errstate(divide="ignore"):
        log_chance = np.where(never, n * np.log1p(-truth), n * np.log(truth))
    z = np.where(never | only, norm.isf(0.5 * np.exp(log_chance)), z)
    return ModeWeights(estimate, mcse, truth, z, per_chain, n)


def _indicators(draws: np.ndarray, modes: Modes) -> np.ndarray:
    """``(chain, draw, k)`` series: 1.0 where the draw's most probable mode is k."""
    return (modes.assign(draws)[..., None] == np.arange(modes.num_modes)).astype(np.float64)


def _chains_text(per_chain: np.ndarray, shown: int = 8) -> str:
    """``"chain 0: mode 3 100%; chain 1: mode 0 61%, mode 1 39%"`` (modes holding at least 5 % of a chain)."""
    parts = []
    for c, occupancy in enumerate(per_chain[:shown]):
        held = [i for i in np.argsort(-occupancy, kind="stable") if occupancy[i] >= 0.05]
        parts.append(f"chain {c}: " + ", ".join(f"mode {i} {occupancy[i]:.0%}" for i in held))
    return "; ".join(parts) + ("; ..." if len(per_chain) > shown else "")


def _stuck(draws: np.ndarray, weights: ModeWeights | None, indicators: np.ndarray | None) -> str | None:
    """A short reason when chains sit in disjoint regions, or None.

    With known modes: the chains' mode-indicator series disagree beyond their
    Monte-Carlo error; with or without: the chains' means do. Both are
    :func:`ebmppl.samplers.sample`'s disagreement test (split R-hat above 1.01
    AND an F test of the chain means against batch-means MCSE).
    """
    if weights is not None and indicators is not None and _disagreement(indicators) is not None:
        return f"stuck chains: their mode occupancy differs ({_chains_text(weights.per_chain)})"
    if _disagreement(draws) is not None:
        rhat = split_rhat(draws)
        worst = int(np.argmax(np.nan_to_num(rhat, nan=np.inf)))
        means = draws[:, :, worst].mean(1)
        shown = ", ".join(f"{m:.3g}" for m in means[:8]) + (", ..." if means.size > 8 else "")
        return (f"stuck chains: their means disagree beyond their MCSE (x[{worst}]: chain means {shown}; split "
                f"R-hat {rhat[worst]:.2f})")
    return None


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
        adapted step size, what the moments were judged against
        (``bias_check``: ``"exact moments"``, ``"reference run (...)"`` or
        ``"not checked"``), the worst error of means and standard deviations in
        units of their Monte-Carlo standard error (``nan`` where no truth is
        known), where the modes are known the estimated mode weights
        (``mode_weights``, e.g. ``"0.10/0.21/0.29/0.40"``) and the worst weight
        error in MCSE (``mode_err_mcse``), whether chains sit in disjoint
        regions (``stuck_chains``), ``converged`` and a ``flag`` that says why
        not (which moment or mode weight is off by how many MCSE, which chains
        hold which mode; ``"bias not checked"`` where there was no truth).
    samples
        The :class:`~ebmppl.Samples` of every sampler (``None`` where it failed).
    energy
        The energy that was sampled.
    max_mcse
        The bound the moment and mode-weight errors were held to (``nan`` when
        neither was checked).
    bias_check
        What the moments were judged against (as in the table's ``bias_check``).
    reference
        The reference run, when ``compare(reference=...)`` made or received one.
    modes
        The known modes the weights were judged against (``None``: not known).
    mode_weights
        Per sampler, its :class:`ModeWeights` (estimate, MCSE, truth, scores,
        per-chain occupancy); empty when the modes are not known.

    Examples
    --------
    >>> import jax
    >>> from ebmppl.targets import gaussian
    >>> result = compare(gaussian([0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]]), jax.random.key(0), ["mala"],
    ...                  num_warmup=200, num_samples=200, progress_bar=False)
    >>> result.name, list(result.table["sampler"]), result.samples["mala"].positions.shape
    ('gaussian', ['mala'], (4, 200, 2))
    >>> result.bias_check, round(result.max_mcse, 2)   # 2 means + 2 sds, 1 % family-wise
    ('exact moments', 3.02)
    """

    name: str
    table: Any
    samples: dict[str, Samples | None]
    energy: Energy
    max_mcse: float = float("nan")
    bias_check: str = BIAS_NOT_CHECKED
    reference: Samples | None = None
    modes: Modes | None = None
    mode_weights: dict[str, ModeWeights] = dataclasses.field(default_factory=dict)

    def to_markdown(self, digits: int = 3) -> str:
        """The table as GitHub-flavoured Markdown; non-converged runs and stuck chains are marked in bold.

        Examples
        --------
        >>> import jax
        >>> from ebmppl.targets import gaussian
        >>> result = compare(gaussian([0.0], [[1.0]]), jax.random.key(0), ["mala"], num_warmup=100,
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
                elif isinstance(v, (bool, np.bool_)) and c == "stuck_chains":
                    cells.append("**yes**" if v else "no")
                elif isinstance(v, (bool, np.bool_)):
                    cells.append("yes" if v else "**NO**")
                else:
                    cells.append(str(v) if v != "" else "")
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def _scores(estimate: np.ndarray, mcse: np.ndarray, truth: np.ndarray, truth_se) -> np.ndarray:
    """``|estimate - truth| / sqrt(mcse² + truth_se²)`` per dimension; ``inf`` for an error with zero MCSE,
    ``nan`` where the draws themselves are not finite."""
    err = np.abs(estimate - truth)
    se = np.sqrt(np.asarray(mcse, np.float64) ** 2 + np.asarray(truth_se, np.float64) ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = err / se
    return np.where((se == 0) & (err == 0), 0.0, np.where((se == 0) & (err > 0), np.inf, z))


def _moment_failures(kind: str, z: np.ndarray, limit: float, shown: int = 3) -> str:
    """``"sd[0] off by 13.1 MCSE, sd[1] off by 12.0 MCSE (limit 3.02)"`` for the worst scores above ``limit``."""
    bad = np.flatnonzero(~(z <= limit))  # nan counts as a failure
    if not bad.size:
        return ""
    bad = bad[np.argsort(-np.nan_to_num(z[bad], nan=np.inf), kind="stable")]
    parts = [f"{kind}[{i}] not finite" if np.isnan(z[i]) else f"{kind}[{i}] off by {z[i]:.1f} MCSE"
             for i in bad[:shown]]
    more = f" and {bad.size - shown} more of {z.size}" if bad.size > shown else ""
    return ", ".join(parts) + more + f" (limit {limit:.2f})"


def _row(name: str, out: Samples, truth: _Truth, max_mcse: float, rhat_threshold: float,
         min_ess: float, modes: Modes | None = None) -> tuple[dict[str, Any], ModeWeights | None]:
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
        # a gradient-free sampler has no efficiency per gradient (nan shows as n/a), not an infinite one
        "ess_per_1k_grads": 1000.0 * float(np.min(ess_bulk)) / grads if grads > 0 else float("nan"),
        "ess_per_s": float(np.min(ess_bulk)) / max(out.timings["sampling"], 1e-9),
        "compile_s": out.timings["compile"],
        "sampling_s": out.timings["sampling"],
        "acceptance": float(np.nanmean(np.asarray(out.stats.acceptance_rate))) if np.isfinite(np.asarray(out.stats.acceptance_rate)).any() else float("nan"),
        "divergences": int(np.asarray(out.stats.is_divergent).sum()),
        "step_size": float(np.asarray(out.params.get("step_size", np.nan))),
        "bias_check": truth.source,
        "mean_err_mcse": float("nan"),
        "std_err_mcse": float("nan"),
        "mode_weights": "",
        "mode_err_mcse": float("nan"),
    }
    reasons = []
    if not row["rhat_max"] <= rhat_threshold:
        reasons.append(f"R-hat {row['rhat_max']:.4f} > {rhat_threshold}")
    if not row["ess_bulk_min"] >= min_ess:
        reasons.append(f"bulk ESS {row['ess_bulk_min']:.0f} < {min_ess:g}")
    if not row["ess_tail_min"] >= min_ess:
        reasons.append(f"tail ESS {row['ess_tail_min']:.0f} < {min_ess:g}")
    # bias: every mean and sd within max_mcse of the truth (MCSEs from ArviZ, ESS-based; the sd's by the
    # delta method on the second central moment); the truth's own MC error, if any, adds in quadrature
    if truth.mean is not None:
        z = _scores(draws.mean((0, 1)), azb.mcse(draws, "mean"), truth.mean, truth.mean_se)
        row["mean_err_mcse"] = float(np.max(np.nan_to_num(z, nan=np.inf)))
        if failed := _moment_failures("mean", z, max_mcse):
            reasons.append(failed)
    if truth.std is not None:
        z = _scores(draws.std((0, 1), ddof=1), azb.mcse(draws, "sd"), truth.std, truth.std_se)
        row["std_err_mcse"] = float(np.max(np.nan_to_num(z, nan=np.inf)))
        if failed := _moment_failures("sd", z, max_mcse):
            reasons.append(failed)
    # multimodality: mode weights against the truth where known; chains stuck in disjoint regions always
    weights = indicators = None
    if modes is not None:
        indicators = _indicators(draws, modes)
        weights = mode_weights(draws, modes, ess=row["ess_bulk_min"])
        row["mode_weights"] = _slashed(weights.estimate)
        row["mode_err_mcse"] = float(np.max(np.nan_to_num(weights.z, nan=np.inf, posinf=np.inf)))
    stuck = _stuck(draws, weights, indicators)
    row["stuck_chains"] = stuck is not None
    if weights is not None and (stuck or not row["mode_err_mcse"] <= max_mcse):
        reasons.append(weights.describe(max_mcse))
    if stuck:
        reasons.append(stuck)
    row["converged"] = not reasons
    if row["divergences"]:  # a warning of possible bias, not a convergence criterion
        reasons.append(f"warning: {row['divergences']} divergences")
    if truth.mean is None and truth.std is None:
        reasons.append("bias not checked (no truth: pass true_mean/true_std or reference='nuts')")
    row["flag"] = "; ".join(reasons)
    return row, weights


def _flat_moment(value: Any, name: str, dim: int) -> np.ndarray | None:
    if value is None:
        return None
    arr = np.asarray(value, np.float64).reshape(-1)
    if arr.size == 1 and dim > 1:
        arr = np.full(dim, arr.item())
    if arr.size != dim:
        raise ValueError(f"{name} must have one entry per dimension of the event ({dim}), got {arr.size}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf; pass the finite moments of the target (or None).")
    return arr


def _reference_truth(reference: Samples, dim: int, known_mean, known_std, label: str, rhat_threshold: float,
                     min_ess: float) -> _Truth:
    """Moments of a reference run and their Monte-Carlo errors, or 'not checked' if the run is not trustworthy."""
    positions = np.asarray(reference.positions, np.float64)
    if positions.ndim < 3 or int(np.prod(positions.shape[2:])) != dim:
        raise ValueError(f"reference positions have shape {positions.shape}; expected (chain, draw, *event_shape) "
                         f"with {dim} values per draw.")
    draws = positions.reshape(positions.shape[:2] + (-1,))
    rhat_max, ess_min = float(np.max(azb.rhat(draws))), float(np.min(azb.ess(draws, "bulk")))
    ess_min = min(ess_min, float(np.min(azb.ess(draws, "tail"))))
    if not (rhat_max <= rhat_threshold and ess_min >= min_ess):
        warnings.warn(f"compare: the reference run ({label}) did not converge (R-hat {rhat_max:.3f}, min ESS "
                      f"{ess_min:.0f}); bias is not checked. Give it more warm-up and draws (reference_samples=).",
                      UserWarning, stacklevel=3)
        return _Truth(known_mean, known_std, 0.0, 0.0, _known_source(known_mean, known_std))
    source = f"reference run ({label}, {draws.shape[0]}×{draws.shape[1]} draws)"
    mean, mean_se = (known_mean, 0.0) if known_mean is not None else (draws.mean((0, 1)), azb.mcse(draws, "mean"))
    std, std_se = (known_std, 0.0) if known_std is not None else (draws.std((0, 1), ddof=1), azb.mcse(draws, "sd"))
    return _Truth(mean, std, mean_se, std_se, source)


def _known_source(mean, std) -> str:
    """How bias is judged from the exact moments given; a mean-only truth cannot catch a wrong spread."""
    if mean is None and std is None:
        return BIAS_NOT_CHECKED
    if mean is None or std is None:
        return f"exact {'means' if std is None else 'sds'} only ({'sd' if std is None else 'mean'} not checked)"
    return "exact moments"


def _key_and_samplers(key: Any, samplers: Any, keywords: dict[str, Any]) -> tuple[Any, Any]:
    """``(key, samplers)`` from ``compare``'s arguments, new order ``(target, key, samplers)`` or the old
    ``(target, samplers, key=key)`` (deprecated: one release)."""
    unknown = sorted(set(keywords) - {"key", "samplers"})
    if unknown:
        raise TypeError(f"compare() got unexpected keyword arguments {unknown}.")
    if "key" in keywords:
        if samplers is not UNSET or ("samplers" in keywords and key is not UNSET):
            raise TypeError("compare: pass the key once, as the 2nd positional argument: "
                            "compare(target, key, samplers).")
        if key is not UNSET:  # the old order: compare(target, samplers, key=key)
            warnings.warn("compare: compare(target, samplers, key=key) is deprecated; the key is the 2nd positional "
                          "argument: compare(target, key, samplers). The old order will be removed in the next "
                          "release.", EbmpplDeprecationWarning, stacklevel=3)
            samplers = key
        key = keywords["key"]
    if "samplers" in keywords:
        if samplers is not UNSET:
            raise TypeError("compare: samplers given twice (positionally and as samplers=).")
        samplers = keywords["samplers"]
    if key is UNSET:
        raise TypeError("compare: missing the key: compare(target, jax.random.key(0), ['mala', 'nuts']).")
    if samplers is UNSET:
        raise TypeError("compare: missing the samplers: compare(target, key, ['mala', 'nuts']).")
    return key, samplers


def compare(
    target: Energy | Target,
    key: jax.Array = UNSET,
    samplers: Mapping[str, str | Sampler] | Sequence[str] = UNSET,
    /,
    *,
    num_chains: int = 4,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    rhat_threshold: float = 1.01,
    min_ess: float = 400.0,
    true_mean: np.ndarray | None = None,
    true_std: np.ndarray | None = None,
    max_mcse: float | None = None,
    reference: str | Sampler | Samples | None = None,
    reference_samples: int | None = None,
    modes: Modes | None = None,
    name: str | None = None,
    progress_bar: bool = True,
    **keywords: Any,
) -> Comparison:
    """Run several samplers on the same energy with the same chains, budget and keys, and tabulate.

    Parameters
    ----------
    target
        An :class:`~ebmppl.Energy`, or a :class:`~ebmppl.targets.Target`
        (whose exact mean and standard deviations, and modes where it has
        them, are then used).
    key
        One key: every sampler gets the same initial positions and the same sampling key
        (also accepted as ``key=``).
    samplers
        Names (``["mala", "nuts"]``) or a mapping from a label to a name or a
        :class:`~ebmppl.samplers.Sampler` (``{"hmc-32": samplers.hmc(32)}``)
        (also accepted as ``samplers=``). The old order ``compare(target,
        samplers, key=key)`` works for one release with an
        :class:`~ebmppl._deprecation.EbmpplDeprecationWarning`.
    num_chains, num_warmup, num_samples
        The common budget.
    rhat_threshold, min_ess
        A run is flagged as not converged when its max split R-hat exceeds
        ``rhat_threshold`` (Vehtari et al. 2021: 1.01) or its min bulk or tail
        ESS is below ``min_ess`` (their advice: 100 per chain for 4 chains).
    true_mean, true_std
        Known moments (flattened event). With a truth, a run is converged only
        if every mean and standard deviation lies within ``max_mcse`` Monte-Carlo
        standard errors of it; the ``flag`` names each moment that does not.
    max_mcse
        The bound on ``|estimate - truth| / MCSE`` for every moment. ``None``
        (default): :func:`moment_threshold` of the number of moments checked, a
        Bonferroni bound that flags a correct sampler with probability at most
        1 % in any dimension (3.0 for a 2-D target, 3.7 for 20-D, 4.1 for
        100-D). The MCSEs are ArviZ's: ESS-based for the mean, and for the
        standard deviation the delta method on the ESS of the squared
        deviations.
    reference
        The truth when the target's moments are unknown: a sampler name or
        :class:`~ebmppl.samplers.Sampler` (``"nuts"``) run once, with its own
        key, for ``reference_samples`` draws per chain, or a
        :class:`~ebmppl.Samples` you made. Its moments serve as the truth and
        its Monte-Carlo errors are added in quadrature to each run's. A
        reference that fails ``rhat_threshold``/``min_ess`` itself is not used
        (a warning says so). Exact moments, where known, take precedence.
    reference_samples
        Draws per chain of a reference run made here (default ``4 * num_samples``).
    modes
        The known components of a mixture (:class:`~ebmppl.targets.Modes`;
        default: the Target's ``modes``). A run is converged only if every
        mode's weight in the draws (:func:`mode_weights`: the mean
        responsibility, i.e. the fraction of draws in the mode when modes are
        separated) lies within ``max_mcse`` MCSE of its true weight (the MCSE
        from the ESS of the mode's series; a mode never visited is scored by
        the chance ``(1 - w)^ESS`` of missing it). The weights join the
        moments in the Bonferroni family of ``max_mcse``.
    name
        Label of the target (default: the Target's name or ``"energy"``).
    progress_bar
        Show a progress bar per sampler.

    Returns
    -------
    Comparison
        Without a truth (no known moments, no ``reference``) ``converged``
        judges mixing only: ``bias_check`` is ``"not checked"`` and the flag says so.
        Chains stuck in disjoint regions (their mode occupancy, or their means,
        disagree beyond Monte-Carlo error: split R-hat above 1.01 and an F test
        of the chain means, as in :func:`ebmppl.sample`'s warning) are
        flagged (``stuck_chains``) and not converged, truth or no truth.

    Examples
    --------
    >>> from ebmppl.targets import banana
    >>> c = compare(banana(), jax.random.key(0), ["mala", "nuts"], num_warmup=200, num_samples=200,
    ...             progress_bar=False)
    >>> list(c.table["sampler"])
    ['mala', 'nuts']
    >>> bool(c.table.loc[0, "rhat_max"] > 0.99)
    True

    A biased sampler is caught by its moments, even when its chains agree:

    >>> from ebmppl import samplers
    >>> from ebmppl.targets import gaussian
    >>> c = compare(gaussian([0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]]), jax.random.key(0),
    ...             {"ula": samplers.ula(step_size=0.5)}, num_warmup=300, num_samples=1000, progress_bar=False)
    >>> bool(c.table.loc[0, "converged"]), "sd[" in c.table.loc[0, "flag"]
    (False, True)

    Chains that keep to the modes they start in are caught by the mode weights they report:

    >>> from ebmppl.targets import four_modes
    >>> c = compare(four_modes(), jax.random.key(0), ["mala"], num_warmup=300, num_samples=300,
    ...             progress_bar=False)
    >>> c.table.loc[0, ["converged", "stuck_chains"]].tolist()
    [False, True]
    >>> "mode weights" in c.table.loc[0, "flag"], c.mode_weights["mala"].truth.round(2).tolist()
    (True, [0.1, 0.2, 0.3, 0.4])
    """
    import pandas as pd

    key, samplers = _key_and_samplers(key, samplers, keywords)
    if isinstance(target, Target):
        energy, name = target.energy, name or target.name
        true_mean = target.mean if true_mean is None else true_mean
        true_std = target.std if true_std is None else true_std
        modes = target.modes if modes is None else modes
    elif isinstance(target, Energy):
        energy, name = target, name or "energy"
    else:
        check_energy(target, "target")  # a plain function: says how to wrap it in an Energy
    check_key(key)
    if not isinstance(samplers, Mapping):
        samplers = {str(s): s for s in samplers}
    if not samplers:
        raise ValueError("samplers is empty; pass at least one sampler name, e.g. ['mala', 'nuts'].")
    if max_mcse is not None and not 0.0 < float(max_mcse) < float("inf"):
        raise ValueError(f"max_mcse must be a positive number of Monte-Carlo standard errors (e.g. 4), "
                         f"got {max_mcse!r}.")
    if reference_samples is not None:
        check_int("reference_samples", reference_samples, 1)
    if reference is not None and not isinstance(reference, (str, Sampler, Samples)):
        raise TypeError(f"reference must be a sampler name (e.g. 'nuts'), a Sampler or Samples, "
                        f"got {type(reference).__name__}.")
    dim = int(np.prod(energy.event_shape))
    if modes is not None:
        if not isinstance(modes, Modes):
            raise TypeError(f"modes must be ebmppl.targets.Modes (e.g. target.modes), got {type(modes).__name__}.")
        if modes.means.shape[1] != dim:
            raise ValueError(f"modes are {modes.means.shape[1]}-D but the energy's event has {dim} values; pass "
                             "the modes of this target.")
    truth = _Truth(_flat_moment(true_mean, "true_mean", dim), _flat_moment(true_std, "true_std", dim), 0.0, 0.0,
                   BIAS_NOT_CHECKED)
    if truth.mean is not None or truth.std is not None:
        # say which moments are judged: a mean-only truth cannot catch a wrong spread
        truth = truth._replace(source=_known_source(truth.mean, truth.std))
    resolved = {label: as_sampler(s, f"samplers[{label!r}]") for label, s in samplers.items()}
    k_init, k_run = jax.random.split(key)
    center, scale = energy.typical_region()  # [-2, 2] unless the energy declares where its mass is
    init = center + scale * jax.random.uniform(k_init, (num_chains, *energy.event_shape), minval=-2.0, maxval=2.0)
    ref_out = None
    if reference is not None and (truth.mean is None or truth.std is None):
        if isinstance(reference, Samples):
            ref_out, ref_label = reference, f"given, {reference.sampler}"
        else:
            ref_label = reference if isinstance(reference, str) else "sampler"
            ref_sampler = as_sampler(reference, "reference")
            k_ref_init, k_ref = jax.random.split(jax.random.fold_in(key, 0x5EF))  # apart from the compared runs
            ref_init = center + scale * jax.random.uniform(k_ref_init, (num_chains, *energy.event_shape),
                                                           minval=-2.0, maxval=2.0)
            ref_out = sample(energy, k_ref, sampler=ref_sampler, num_chains=num_chains, num_warmup=num_warmup,
                             num_samples=reference_samples or 4 * num_samples, init=ref_init,
                             progress_bar=progress_bar)
        truth = _reference_truth(ref_out, dim, truth.mean, truth.std, ref_label, rhat_threshold, min_ess)
    elif reference is not None:
        warnings.warn("compare: the target's exact mean and sd are known, so reference= is not used.", UserWarning,
                      stacklevel=2)
    num_tests = dim * ((truth.mean is not None) + (truth.std is not None)) + (modes.num_modes if modes else 0)
    limit = float("nan") if not num_tests else float(max_mcse) if max_mcse is not None else moment_threshold(num_tests)
    rows, results, weights = [], {}, {}
    for label, sampler in resolved.items():
        try:
            out = sample(energy, k_run, sampler=sampler, num_chains=num_chains, num_warmup=num_warmup,
                         num_samples=num_samples, init=init, progress_bar=progress_bar)
        except FloatingPointError as err:  # a diverged run is a result, not a crash
            results[label] = None
            rows.append({"sampler": label, "converged": False, "bias_check": truth.source, "stuck_chains": False,
                         "flag": f"diverged: {err}".split(". ")[0]})
            continue
        results[label] = out
        row, weights[label] = _row(label, out, truth, limit, rhat_threshold, min_ess, modes)
        rows.append(row)
    table = pd.DataFrame(rows).reindex(columns=COLUMNS)
    table["converged"] = table["converged"].astype(bool)
    table["stuck_chains"] = table["stuck_chains"].astype(bool)
    table["flag"] = table["flag"].fillna("")
    table["mode_weights"] = table["mode_weights"].fillna("")
    return Comparison(name, table, results, energy, limit, truth.source, ref_out, modes,
                      {label: w for label, w in weights.items() if w is not None})
