"""Several log Z estimators on one energy, side by side: do they agree within their error bars?

Every estimator of :mod:`ebmppl.logz` returns a :class:`~ebmppl.LogZEstimate`
with its own standard error and verdict. None of them can see an error that
its own replicates share (a mode no chain or particle reached, a base that
misses mass); two estimators built on different ideas rarely share one. So
:func:`compare_estimators` runs several, tests every pair for a difference
beyond their combined standard error, and says which disagree and which
declared themselves unreliable, and why.

An estimator is a callable ``(energy, key, **options) -> LogZEstimate``
registered by name in :data:`ESTIMATORS`; ``ebmppl.logz`` registers
``"grid"``, ``"importance"``, ``"ais"`` and ``"smc"`` (each
:func:`ebmppl.log_partition` with that method) and ``"stepping_stone"``
(:func:`ebmppl.logz.stepping_stone.stepping_stone` on a parallel-tempering
run). Another is one line::

    ESTIMATORS["stepping_stone"] = my_estimator   # (energy, key, **options) -> LogZEstimate
"""

from __future__ import annotations

import math
import statistics
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from ebmppl._validation import check_energy, check_key
from ebmppl.energy import Energy
from ebmppl.logz.estimate import LogZEstimate, LogZWarning
from ebmppl.normalisability import NotNormalisableError

__all__ = ["ESTIMATORS", "Estimator", "LogZComparison", "PairCheck", "compare_estimators", "GRID_WIDTH"]

Estimator = Callable[..., LogZEstimate]
"""``estimator(energy, key, **options) -> LogZEstimate``."""

ESTIMATORS: dict[str, Estimator] = {}
"""Estimators by name, for :func:`compare_estimators`: ``ESTIMATORS[name] = fn`` registers one."""

GRID_WIDTH = 6.0
"""The ``"grid"`` estimator's default box: ``center ± GRID_WIDTH · scale`` of the energy's typical region."""


_WHICH_TO_BELIEVE = (
    "A disagreement is not settled by a vote: the estimators that start from one proposal (importance, AIS, SMC) "
    "all miss a mode that their base never reaches, and then agree with each other on the same wrong value. In one "
    "or two dimensions the grid is exact up to its discretisation error when its box holds the mass; otherwise "
    "prefer the estimator whose draws visit every mode (stepping stones on a parallel-tempering ladder with round "
    "trips), and widen the bases of the others until they agree.")


def _grid_limits(energy: Energy) -> tuple[float, ...]:
    """The default box of the grid estimator: ``center ± GRID_WIDTH · scale`` per coordinate (dimension ≤ 2)."""
    center, scale = (np.asarray(v, np.float64).reshape(-1) for v in energy.typical_region())
    return tuple(float(v) for c, s in zip(center, scale) for v in (c - GRID_WIDTH * s, c + GRID_WIDTH * s))


class PairCheck(NamedTuple):
    """Two estimates compared: ``difference = log_z[a] − log_z[b]``, ``z = |difference| / √(se_a² + se_b²)``.

    Examples
    --------
    >>> PairCheck("ais", "smc", 0.3, 4.2, True)
    PairCheck(a='ais', b='smc', difference=0.3, z=4.2, disagree=True)
    """

    a: str
    b: str
    difference: float
    z: float
    disagree: bool


class LogZComparison(NamedTuple):
    """The result of :func:`compare_estimators`: every estimate, every pair, and the verdict.

    Attributes
    ----------
    estimates
        Method name → its :class:`~ebmppl.LogZEstimate` (``None`` when it failed).
    failures
        Method name → why it raised (a numerical failure: ``FloatingPointError``).
    seconds
        Method name → wall-clock seconds it took (compilation included).
    pairs
        A :class:`PairCheck` for every pair of methods that returned an estimate.
    z_critical
        The threshold on a pair's ``z``: ``Φ⁻¹(1 − α / (2·P))`` for ``P`` pairs
        (Bonferroni: the chance that any pair of correct estimates crosses it is at most ``alpha``).
    alpha
        The family-wise false-alarm rate.
    truth
        The exact log Z when known (``None`` otherwise).

    Examples
    --------
    >>> from ebmppl.targets import gaussian
    >>> t = gaussian([0.0, 1.0], [[1.0, 0.2], [0.2, 0.5]])
    >>> cmp = compare_estimators(t.energy, jax.random.key(0), ["grid", "importance"], truth=t.log_z)
    >>> cmp.agree, cmp.reliable, [p.b for p in cmp.pairs]
    (True, True, ['importance'])
    >>> print(cmp.to_markdown().splitlines()[0])
    | method | log Z | ± s.e. | error | ESS | seconds | verdict |
    """

    estimates: dict[str, LogZEstimate | None]
    failures: dict[str, str]
    seconds: dict[str, float]
    pairs: list[PairCheck]
    z_critical: float
    alpha: float
    truth: float | None = None

    @property
    def disagreements(self) -> list[PairCheck]:
        """The pairs whose difference exceeds ``z_critical`` combined standard errors."""
        return [p for p in self.pairs if p.disagree]

    @property
    def unreliable(self) -> dict[str, str]:
        """Method → reason, for every estimate whose own verdict is unreliable, and every failed method."""
        out = {m: e.reason for m, e in self.estimates.items() if e is not None and not e.reliable}
        return {**out, **{m: f"failed: {why}" for m, why in self.failures.items()}}

    @property
    def agree(self) -> bool:
        """No pair disagrees beyond its error bars."""
        return not self.disagreements

    @property
    def reliable(self) -> bool:
        """Every method returned a reliable estimate, and they all agree."""
        return self.agree and not self.unreliable

    def to_markdown(self, digits: int = 3) -> str:
        """The table (one row per method), the pairs that disagree, and the unreliable methods with their reasons.

        Examples
        --------
        >>> from ebmppl.targets import gaussian
        >>> cmp = compare_estimators(gaussian([0.0], [[1.0]]).energy, jax.random.key(0), ["grid", "importance"])
        >>> print(cmp.to_markdown().splitlines()[-1])
        All 2 estimates agree within their error bars (z ≤ 1.96 for each of 1 pair; family-wise α = 0.05).
        """
        truth = self.truth is not None
        rows = ["| method | log Z | ± s.e. |" + (" error |" if truth else "") + " ESS | seconds | verdict |",
                "|---|---|---|" + ("---|" if truth else "") + "---|---|---|"]
        for m, e in self.estimates.items():
            if e is None:
                rows.append(f"| {m} | — | — |" + (" — |" if truth else "") + f" — | {self.seconds[m]:.1f} | failed |")
                continue
            err = f" {e.log_z - self.truth:+.{digits}f} |" if truth else ""
            ess = "—" if not math.isfinite(e.ess) else f"{e.ess:.0f}"
            verdict = "reliable" if e.reliable else "**unreliable**"
            rows.append(f"| {m} | {e.log_z:.{digits}f} | {e.stderr:.2g} |{err} {ess} | {self.seconds[m]:.1f} | "
                        f"{verdict} |")
        lines = ["\n".join(rows), ""]
        n_pairs = len(self.pairs)
        if self.disagreements:
            lines.append(f"Pairs that disagree beyond z = {self.z_critical:.2f} (Bonferroni over {n_pairs} pairs, "
                         f"family-wise α = {self.alpha:g}):")
            lines += [f"- {p.a} − {p.b} = {p.difference:+.{digits}f} nats, z = {p.z:.1f}" for p in self.disagreements]
            lines += ["", _WHICH_TO_BELIEVE, ""]
        if self.unreliable:
            lines.append("Unreliable by their own diagnosis:")
            lines += [f"- {m}: {why}" for m, why in self.unreliable.items()]
            lines.append("")
        if self.agree:
            lines.append(f"All {len(self.estimates) - len(self.failures)} estimates agree within their error bars "
                         f"(z ≤ {self.z_critical:.2f} for each of {n_pairs} pair{'s' if n_pairs != 1 else ''}; "
                         f"family-wise α = {self.alpha:g}).")
        return "\n".join(lines).rstrip()

    def __str__(self) -> str:
        return self.to_markdown()

    def plot(self, ax: Any = None, num_se: float = 2.0) -> Any:
        """Each estimate with ``± num_se`` standard errors; unreliable ones in red, the truth (if known) dashed.

        Examples
        --------
        >>> import matplotlib; matplotlib.use("Agg")
        >>> from ebmppl.targets import gaussian
        >>> cmp = compare_estimators(gaussian([0.0], [[1.0]]).energy, jax.random.key(0), ["grid", "importance"])
        >>> ax = cmp.plot()
        >>> [t.get_text() for t in ax.get_xticklabels()]
        ['grid', 'importance']
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(1.2 + 1.1 * len(self.estimates), 3.2))
        names = list(self.estimates)
        for i, m in enumerate(names):
            e = self.estimates[m]
            if e is None:
                continue
            color = "C0" if e.reliable else "C3"
            ax.errorbar([i], [e.log_z], yerr=[num_se * e.stderr], fmt="o" if e.reliable else "x", color=color,
                        capsize=4)
        if self.truth is not None:
            ax.axhline(self.truth, color="k", ls="--", lw=1, label="exact")
            ax.legend(loc="best", frameon=False)
        ax.set_xticks(range(len(names)), names)
        ax.set_xlim(-0.5, len(names) - 0.5)
        ax.set_ylabel(f"log Z (± {num_se:g} s.e.)")
        bad = ", ".join(f"{p.a}/{p.b}" for p in self.disagreements)
        ax.set_title("disagree: " + bad if bad else "all agree within their error bars", fontsize=9)
        return ax


def compare_estimators(
    energy: Energy,
    key: jax.Array,
    methods: Sequence[str | Estimator] | None = None,
    *,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    truth: float | None = None,
    alpha: float = 0.05,
) -> LogZComparison:
    """Run several log Z estimators on one energy and flag the pairs that disagree beyond their error bars.

    Each method runs with its own key (split from ``key``) and its
    ``options``; its :class:`~ebmppl.LogZWarning`, if any, is folded into the
    report (its ``reason`` shows in :attr:`LogZComparison.unreliable`), and a
    numerical failure (``FloatingPointError``) becomes a row marked failed
    instead of stopping the others. Then every pair ``(a, b)`` is tested:
    ``z = |log Z_a − log Z_b| / √(se_a² + se_b²)`` above
    ``Φ⁻¹(1 − α/(2P))`` (``P`` pairs, Bonferroni) is a disagreement: if all
    estimates were right and their error bars Gaussian, a false alarm
    anywhere in the table would have chance at most ``alpha``. An estimate
    whose error bar is too small (a base that misses mass, chains stuck in one
    mode) is what such a flag usually exposes; the flag says *that* two
    methods disagree, the methods' own verdicts often say which is wrong.

    Parameters
    ----------
    energy
        The :class:`~ebmppl.Energy` whose log Z they estimate.
    key
        PRNG key, split into one per method.
    methods
        Names in :data:`ESTIMATORS` (``"grid"``, ``"importance"``, ``"ais"``,
        ``"smc"``, ``"stepping_stone"``, and any registered since) or callables
        ``(energy, key, **options) -> LogZEstimate`` (named by their
        ``__name__``). Default: ``"grid"`` (in dimension ≤ 2), ``"importance"``,
        ``"ais"`` and ``"smc"``.
    options
        Per method name, keyword arguments for it, e.g.
        ``{"ais": {"num_temperatures": 500}, "grid": {"limits": (-4, 4)}}``. The grid's
        default box is ``center ± 6·scale`` of :meth:`~ebmppl.Energy.typical_region`.
    truth
        The exact log Z, if known: the table shows each method's error.
    alpha
        Family-wise false-alarm rate of the pairwise tests, in (0, 1).

    Returns
    -------
    LogZComparison
        ``to_markdown()``, ``plot()``, ``disagreements``, ``unreliable``, ``agree``, ``reliable``.
        When not ``reliable``, one :class:`~ebmppl.LogZWarning` says why.

    Raises
    ------
    ValueError
        An unknown method name, an option for a method not run, ``alpha`` outside (0, 1).

    Examples
    --------
    Importance sampling from a base far narrower than a 10-D target misses
    most of its mass, yet its weights look tame; the comparison catches it:

    >>> import warnings
    >>> from ebmppl import log_partition
    >>> from ebmppl.targets import gaussian
    >>> t = gaussian([0.0] * 10, np.eye(10).tolist())
    >>> def narrow_importance(energy, key):
    ...     return log_partition(energy, key, method="importance", num_chains=4096, base_scale=0.5)
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     cmp = compare_estimators(t.energy, jax.random.key(0), ["smc", narrow_importance], truth=t.log_z)
    >>> cmp.agree, cmp.estimates["smc"].reliable
    (False, True)
    """
    check_energy(energy)
    check_key(key)
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must be in (0, 1) (the family-wise false-alarm rate; 0.05 is usual), got {alpha!r}.")
    if methods is None:
        methods = (("grid",) if energy.dim <= 2 else ()) + ("importance", "ais", "smc")
    if isinstance(methods, str) or not len(methods):
        raise ValueError(f"methods must be a non-empty list of names or callables, got {methods!r}.")
    named: dict[str, Estimator] = {}
    for m in methods:
        if isinstance(m, str):
            if m not in ESTIMATORS:
                raise ValueError(f"unknown log Z estimator {m!r}; registered: {', '.join(sorted(ESTIMATORS))} "
                                 "(register another with ebmppl.logz.ESTIMATORS[name] = fn).")
            name, fn = m, ESTIMATORS[m]
        elif callable(m):
            name, fn = getattr(m, "__name__", type(m).__name__), m
        else:
            raise TypeError(f"methods: {m!r} is neither an estimator's name nor a callable "
                            "(energy, key) -> LogZEstimate.")
        if name in named:
            raise ValueError(f"methods: {name!r} appears twice.")
        named[name] = fn
    options = dict(options or {})
    extra = sorted(set(options) - set(named))
    if extra:
        raise ValueError(f"options for {extra}, which are not among the methods {list(named)}.")
    estimates: dict[str, LogZEstimate | None] = {}
    failures: dict[str, str] = {}
    seconds: dict[str, float] = {}
    for (name, fn), k in zip(named.items(), jax.random.split(key, len(named))):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LogZWarning)  # the estimate's own verdict says it, in the report
            try:
                estimates[name] = fn(energy, k, **dict(options.get(name, {})))
            except (FloatingPointError, NotNormalisableError) as err:
                # a method that cannot run here (overflow; a grid box whose edges hold mass) is a failed row,
                # not the end of the report
                estimates[name], failures[name] = None, f"{type(err).__name__}: {err}"
        seconds[name] = time.perf_counter() - start
        if estimates[name] is not None and not isinstance(estimates[name], LogZEstimate):
            raise TypeError(f"estimator {name!r} returned {type(estimates[name]).__name__}, not a LogZEstimate.")
    done = [m for m, e in estimates.items() if e is not None]
    n_pairs = len(done) * (len(done) - 1) // 2
    z_crit = statistics.NormalDist().inv_cdf(1 - float(alpha) / (2 * max(n_pairs, 1)))
    pairs = []
    for i, a in enumerate(done):
        for b in done[i + 1:]:
            ea, eb = estimates[a], estimates[b]
            diff = ea.log_z - eb.log_z
            se = math.hypot(ea.stderr, eb.stderr)
            z = abs(diff) / se if se > 0 else (0.0 if diff == 0 else math.inf)
            pairs.append(PairCheck(a, b, diff, z, bool(z > z_crit)))
    out = LogZComparison(estimates, failures, seconds, pairs, z_crit, float(alpha),
                         None if truth is None else float(truth))
    if not out.reliable:
        said = [f"{p.a} and {p.b} differ by {p.difference:+.3g} nats (z = {p.z:.1f} > {z_crit:.2f})"
                for p in out.disagreements] + [f"{m} is unreliable ({why})" for m, why in out.unreliable.items()]
        warnings.warn("log Z estimators: " + "; ".join(said) + ". Trust none of them until they agree.",
                      LogZWarning, stacklevel=2)
    return out
