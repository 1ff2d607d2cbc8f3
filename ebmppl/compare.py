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

Discrete energies (binary or categorical support, :mod:`ebmppl.support`) are
judged on *statistics* of the state rather than on its raw coordinates: by
default the mean of the state (the magnetisation; per category, the fraction
of variables in it) and the log-density, or any ``statistics=`` function.
R-hat, ESS, MCSE and the moment checks are then those of the statistics' series,
and where the support is small enough to enumerate (at most
:data:`EXACT_STATES` states) their exact mean and standard deviation are the
truth. Every sampler's cost is reported per second, per gradient evaluation
and, for samplers that count them (the discrete ones), per energy evaluation.

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
import functools
import statistics
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ebmppl import _arviz as azb
from ebmppl._deprecation import UNSET, EbmpplDeprecationWarning
from ebmppl._validation import check_energy, check_int, check_key
from ebmppl.energy import Energy
from ebmppl.samplers import Sampler, Samples, as_sampler, sample
from ebmppl.samplers.discrete import BlocksInteractError, is_discrete
from ebmppl.samplers.sample import _disagreement, split_rhat
from ebmppl.targets import Modes, Target

__all__ = ["compare", "Comparison", "ModeWeights", "mode_weights", "COLUMNS", "moment_threshold", "EXACT_STATES"]

COLUMNS = [
    "sampler", "converged", "rhat_max", "ess_bulk_min", "ess_tail_min", "grad_evals", "ess_per_1k_grads",
    "energy_evals", "ess_per_1k_energy_evals", "ess_per_s", "compile_s", "sampling_s", "acceptance", "divergences",
    "step_size",
    "bias_check", "mean_err_mcse", "std_err_mcse", "mode_weights", "mode_err_mcse", "stuck_chains", "flag",
]
"""Columns of :attr:`Comparison.table`, in order."""

BIAS_NOT_CHECKED = "not checked"
"""``bias_check`` of a run that had no truth to be judged against."""

EXACT_STATES = 2**20
"""A discrete energy with at most this many states is enumerated by :func:`compare` for the exact truth."""


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
        R-hat, min bulk/tail ESS over dimensions (over the statistics, where
        ``statistics`` is set), gradient evaluations, bulk ESS per 1000
        gradient evaluations, energy evaluations and bulk ESS per 1000 of
        them (samplers that count them: the discrete ones; ``nan`` for the
        others), bulk ESS per second of sampling (compile
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
    statistics
        Names of the statistics the table's R-hat, ESS and moments are about
        (``None``: the raw coordinates); see :func:`compare`'s ``statistics``.

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
    statistics: list[str] | None = None

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


def _moment_failures(kind: str, z: np.ndarray, limit: float, shown: int = 3,
                     labels: Sequence[str] | None = None) -> str:
    """``"sd[0] off by 13.1 MCSE, sd[1] off by 12.0 MCSE (limit 3.02)"`` for the worst scores above ``limit``."""
    bad = np.flatnonzero(~(z <= limit))  # nan counts as a failure
    if not bad.size:
        return ""
    bad = bad[np.argsort(-np.nan_to_num(z[bad], nan=np.inf), kind="stable")]
    name = (lambda i: labels[i]) if labels is not None else (lambda i: i)  # noqa: E731
    parts = [f"{kind}[{name(i)}] not finite" if np.isnan(z[i]) else f"{kind}[{name(i)}] off by {z[i]:.1f} MCSE"
             for i in bad[:shown]]
    more = f" and {bad.size - shown} more of {z.size}" if bad.size > shown else ""
    return ", ".join(parts) + more + f" (limit {limit:.2f})"


def _row(name: str, out: Samples, truth: _Truth, max_mcse: float, rhat_threshold: float,
         min_ess: float, modes: Modes | None = None, series: np.ndarray | None = None,
         labels: Sequence[str] | None = None) -> tuple[dict[str, Any], ModeWeights | None]:
    positions = np.asarray(out.positions, np.float64).reshape(out.positions.shape[:2] + (-1,))
    # what is judged: the statistics' series (chain, draw, k) where given, else the coordinates
    draws = positions if series is None else series
    rhat = azb.rhat(draws)
    ess_bulk, ess_tail = azb.ess(draws, "bulk"), azb.ess(draws, "tail")
    grads = int(np.asarray(out.stats.num_grad_evals).sum())
    counted = getattr(out.stats, "num_energy_evals", None)  # the discrete samplers count energy evaluations
    energy_evals = int(np.asarray(counted).sum()) if counted is not None else None
    row = {
        "sampler": name,
        "rhat_max": float(np.max(rhat)),
        "ess_bulk_min": float(np.min(ess_bulk)),
        "ess_tail_min": float(np.min(ess_tail)),
        "grad_evals": grads,
        # a gradient-free sampler has no efficiency per gradient (nan shows as n/a), not an infinite one
        "ess_per_1k_grads": 1000.0 * float(np.min(ess_bulk)) / grads if grads > 0 else float("nan"),
        "energy_evals": float("nan") if energy_evals is None else energy_evals,
        "ess_per_1k_energy_evals": (1000.0 * float(np.min(ess_bulk)) / energy_evals if energy_evals
                                    else float("nan")),
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
        if failed := _moment_failures("mean", z, max_mcse, labels=labels):
            reasons.append(failed)
    if truth.std is not None:
        z = _scores(draws.std((0, 1), ddof=1), azb.mcse(draws, "sd"), truth.std, truth.std_se)
        row["std_err_mcse"] = float(np.max(np.nan_to_num(z, nan=np.inf)))
        if failed := _moment_failures("sd", z, max_mcse, labels=labels):
            reasons.append(failed)
    # multimodality: mode weights against the truth where known; chains stuck in disjoint regions always
    weights = indicators = None
    if modes is not None:
        indicators = _indicators(positions, modes)
        weights = mode_weights(positions, modes, ess=row["ess_bulk_min"])
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


StatisticsFn = Callable[[jax.Array, jax.Array], jax.Array]


def _statistics(statistics: Any, energy: Energy, discrete: bool) -> tuple[StatisticsFn | None, list[str] | None]:
    """``(fn(x, logdensity) -> (k,) array, names)`` of what :func:`compare` judges; ``(None, None)``: the coordinates.

    Without ``statistics``, a discrete energy gets the mean of the state (per category for a categorical one)
    and the log-density.
    """
    if statistics is None:
        if not discrete:
            return None, None
        k = getattr(energy.support, "num_categories", None)
        if k is not None:
            return _fractions_and_logdensity, [f"fraction[{c}]" for c in range(k)] + ["logdensity"]
        return _mean_and_logdensity, ["mean(x)", "logdensity"]
    if not callable(statistics):
        raise TypeError(f"statistics must be a function of one state x (event-shaped) returning a scalar, a 1-D "
                        f"array or a dict of them, e.g. lambda x: {{'magnetisation': x.mean()}}; got "
                        f"{type(statistics).__name__}.")
    try:
        probe = jax.eval_shape(statistics, jax.ShapeDtypeStruct(tuple(energy.event_shape), jnp.float32))
    except Exception as err:  # noqa: BLE001 (any failure of the user's function is reported as such)
        raise ValueError(f"statistics failed on a state of shape {tuple(energy.event_shape)}: {err}") from None
    items = probe.items() if isinstance(probe, Mapping) else [("statistic", probe)]
    names = []
    for key, value in items:
        shape = getattr(value, "shape", None)
        if shape is None or len(shape) > 1:
            raise ValueError(f"statistics must return scalars or 1-D arrays (or a dict of them); {key!r} has shape "
                             f"{shape}.")
        names += [str(key)] if shape == () else [f"{key}[{i}]" for i in range(shape[0])]
    if not names:
        raise ValueError("statistics returned no values; return at least one scalar.")

    def fn(x, ld):
        out = statistics(x)
        values = out.values() if isinstance(out, Mapping) else [out]
        return jnp.concatenate([jnp.asarray(v, jnp.float32).reshape(-1) for v in values])

    return fn, names


def _mean_and_logdensity(x: jax.Array, ld: jax.Array) -> jax.Array:
    """A binary state's default statistics: its mean (the magnetisation) and its log-density."""
    return jnp.stack([jnp.mean(x), ld])


def _fractions_and_logdensity(x: jax.Array, ld: jax.Array) -> jax.Array:
    """A categorical state's default statistics: the fraction of variables in each category, and its log-density."""
    return jnp.concatenate([x.reshape(-1, x.shape[-1]).mean(0), ld[None]])


@functools.partial(jax.jit, static_argnums=0)
def _statistics_of(fn: StatisticsFn, states: jax.Array, logdensity: jax.Array) -> jax.Array:
    return jax.vmap(fn)(states, logdensity)


def _series(fn: StatisticsFn, positions: jax.Array, logdensity: jax.Array, event_shape: tuple[int, ...]) -> np.ndarray:
    """The statistics of every draw: ``(chain, draw, k)`` float64."""
    lead = positions.shape[:2]
    flat = _statistics_of(fn, jnp.reshape(positions, (-1, *event_shape)), jnp.reshape(logdensity, (-1,)))
    return np.asarray(flat, np.float64).reshape(*lead, -1)


@functools.partial(jax.jit, static_argnums=1)
def _enumerated_values(energy: Energy, fn: StatisticsFn, states: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Log-density and statistics of every enumerated state, in batches (bounded memory)."""
    ld = jax.lax.map(energy.logdensity_fn, states, batch_size=4096)
    return ld, jax.lax.map(lambda a: fn(*a), (states, ld), batch_size=4096)


def _enumerated_truth(energy: Energy, fn: StatisticsFn) -> _Truth | None:
    """Exact mean and sd of the statistics by enumerating a discrete support (``None`` beyond EXACT_STATES)."""
    support, event_shape = energy.support, tuple(energy.event_shape)
    num_states = int(support.num_states(event_shape))
    if num_states > EXACT_STATES:
        return None
    states = support.enumerate(event_shape)
    ld, stats = (np.asarray(a, np.float64) for a in _enumerated_values(energy, fn, states))
    weights = np.exp(ld - ld.max())
    weights /= weights.sum()
    mean = weights @ stats
    std = np.sqrt(np.maximum(weights @ (stats - mean) ** 2, 0.0))
    return _Truth(mean, std, 0.0, 0.0, f"exact (enumeration of {num_states} states)")


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
                     min_ess: float, series: np.ndarray | None = None) -> _Truth:
    """Moments of a reference run and their Monte-Carlo errors, or 'not checked' if the run is not trustworthy.
    ``series``: the run's statistics (chain, draw, k), judged instead of its positions."""
    positions = np.asarray(reference.positions if series is None else series, np.float64)
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
    statistics: Callable[[jax.Array], Any] | None = None,
    thinning: int = 1,
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
    statistics
        Judge the runs on these statistics of the state instead of its raw
        coordinates: a function of one state ``x`` (event-shaped) returning a
        scalar, a 1-D array or a dict of them (e.g. ``lambda x: {"m":
        x.mean(), "corr": x[0] * x[1]}``). R-hat, ESS (and ESS per second, per
        gradient, per energy evaluation), MCSE and the moment checks are then
        those of the statistics' series, and ``true_mean``/``true_std`` are the
        statistics' exact moments (a Target's coordinate moments are not
        used). Default: the coordinates, except for a discrete energy
        (``energy.support`` binary or categorical), which is judged on the mean
        of its state (the magnetisation; per category, the fraction of
        variables in it) and its log-density. For a discrete energy with at
        most :data:`EXACT_STATES` states and no ``true_mean``/``true_std``,
        the statistics' exact moments by enumeration are the truth; its
        chains start uniformly on the support.
    thinning
        Sampler steps per kept draw, for every sampler (and the reference
        run): the budget is ``num_samples × thinning`` steps per chain. Useful
        for single-site samplers (one coordinate per step), e.g. ``thinning``
        = the number of coordinates keeps one draw per sweep's worth of steps.

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

    A discrete energy (8 spins on a ring) is judged on its magnetisation and log-density, against their exact
    moments by enumeration:

    >>> from ebmppl import Energy
    >>> from ebmppl.support import SPINS
    >>> ring = Energy(lambda b, x: -b * jnp.sum(x * jnp.roll(x, 1)), 0.3, event_shape=(8,), support=SPINS)
    >>> c = compare(ring, jax.random.key(0), ["gibbs_with_gradients"], num_warmup=50, num_samples=500,
    ...             progress_bar=False)
    >>> c.statistics, c.bias_check, bool(c.table.loc[0, "mean_err_mcse"] < 4)
    (['mean(x)', 'logdensity'], 'exact (enumeration of 256 states)', True)
    """
    import pandas as pd

    key, samplers = _key_and_samplers(key, samplers, keywords)
    if isinstance(target, Target):
        energy, name = target.energy, name or target.name
        if statistics is None:  # a Target's moments are those of its coordinates
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
    check_int("thinning", thinning, 1)
    if reference is not None and not isinstance(reference, (str, Sampler, Samples)):
        raise TypeError(f"reference must be a sampler name (e.g. 'nuts'), a Sampler or Samples, "
                        f"got {type(reference).__name__}.")
    support = getattr(energy, "support", None)
    discrete = is_discrete(support)
    stat_fn, stat_names = _statistics(statistics, energy, discrete)
    event_dim = int(np.prod(energy.event_shape))
    dim = event_dim if stat_fn is None else len(stat_names)  # what the moments are about
    if modes is not None:
        if not isinstance(modes, Modes):
            raise TypeError(f"modes must be ebmppl.targets.Modes (e.g. target.modes), got {type(modes).__name__}.")
        if modes.means.shape[1] != event_dim:
            raise ValueError(f"modes are {modes.means.shape[1]}-D but the energy's event has {event_dim} values; "
                             "pass the modes of this target.")
    truth = _Truth(_flat_moment(true_mean, "true_mean", dim), _flat_moment(true_std, "true_std", dim), 0.0, 0.0,
                   BIAS_NOT_CHECKED)
    if truth.mean is not None or truth.std is not None:
        # say which moments are judged: a mean-only truth cannot catch a wrong spread
        truth = truth._replace(source=_known_source(truth.mean, truth.std))
    elif discrete and stat_fn is not None:  # a small discrete support: the statistics' exact moments
        truth = _enumerated_truth(energy, stat_fn) or truth
    resolved = {label: as_sampler(s, f"samplers[{label!r}]") for label, s in samplers.items()}
    k_init, k_run = jax.random.split(key)
    center, scale = energy.typical_region()  # [-2, 2] unless the energy declares where its mass is

    def starts(k):  # the same starting states for every sampler: uniform on a discrete support
        if discrete:
            return support.uniform(k, (num_chains,), energy.event_shape)
        return center + scale * jax.random.uniform(k, (num_chains, *energy.event_shape), minval=-2.0, maxval=2.0)

    def judged(out):  # the statistics' series of a run, or None for its coordinates
        return None if stat_fn is None else _series(stat_fn, out.positions, out.stats.logdensity, energy.event_shape)

    init = starts(k_init)
    ref_out = None
    if reference is not None and (truth.mean is None or truth.std is None):
        if isinstance(reference, Samples):
            ref_out, ref_label = reference, f"given, {reference.sampler}"
        else:
            ref_label = reference if isinstance(reference, str) else "sampler"
            ref_sampler = as_sampler(reference, "reference")
            k_ref_init, k_ref = jax.random.split(jax.random.fold_in(key, 0x5EF))  # apart from the compared runs
            ref_init = starts(k_ref_init)
            ref_out = sample(energy, k_ref, sampler=ref_sampler, num_chains=num_chains, num_warmup=num_warmup,
                             num_samples=reference_samples or 4 * num_samples, init=ref_init,
                             progress_bar=progress_bar, thinning=thinning)
        truth = _reference_truth(ref_out, dim, truth.mean, truth.std, ref_label, rhat_threshold, min_ess,
                                 judged(ref_out))
    elif reference is not None:
        warnings.warn("compare: the target's exact mean and sd are known, so reference= is not used.", UserWarning,
                      stacklevel=2)
    num_tests = dim * ((truth.mean is not None) + (truth.std is not None)) + (modes.num_modes if modes else 0)
    limit = float("nan") if not num_tests else float(max_mcse) if max_mcse is not None else moment_threshold(num_tests)
    rows, results, weights = [], {}, {}
    for label, sampler in resolved.items():
        try:
            out = sample(energy, k_run, sampler=sampler, num_chains=num_chains, num_warmup=num_warmup,
                         num_samples=num_samples, init=init, progress_bar=progress_bar, thinning=thinning)
        except FloatingPointError as err:  # a diverged run is a result, not a crash
            results[label] = None
            rows.append({"sampler": label, "converged": False, "bias_check": truth.source, "stuck_chains": False,
                         "flag": f"diverged: {err}".split(". ")[0]})
            continue
        except BlocksInteractError as err:  # refused before it ran: a wrong sampler is a row, not the end
            results[label] = None
            rows.append({"sampler": label, "converged": False, "bias_check": truth.source, "stuck_chains": False,
                         "flag": f"refused: {err}".split("; block Gibbs")[0]})
            continue
        results[label] = out
        row, weights[label] = _row(label, out, truth, limit, rhat_threshold, min_ess, modes, judged(out),
                                   stat_names)
        rows.append(row)
    table = pd.DataFrame(rows).reindex(columns=COLUMNS)
    table["converged"] = table["converged"].astype(bool)
    table["stuck_chains"] = table["stuck_chains"].astype(bool)
    table["flag"] = table["flag"].fillna("")
    table["mode_weights"] = table["mode_weights"].fillna("")
    return Comparison(name, table, results, energy, limit, truth.source, ref_out, modes,
                      {label: w for label, w in weights.items() if w is not None}, stat_names)
