"""Training health: is contrastive divergence still sampling the model it is training?

Bad mixing silently ruins the CD gradient: the negatives stop representing the
model and the energies run away. :class:`TrainingHealth` is a
:func:`ebmppl.fit` callback that watches, between chunks:

* energies of data, negatives and fresh noise, and the CD gap;
* mixing of the persistent chains: a fixed probe of replay-buffer slots is
  evaluated under the current θ at every check, and split R-hat and ESS of
  those energies over a sliding window say whether each slot wanders over
  the whole model (R-hat ≈ 1) or stays put (R-hat ≫ 1);
* the sampler's acceptance rate and the spread of the buffer;
* collapse to a flat energy: fresh noise scored like the data
  (``E(noise) ≈ E(x⁺)``, usually with ``E(x⁺) ≈ E(x⁻)``), the sign of a model
  that learned nothing — e.g. a sampler step far too large or too small for
  the data's scale;

and records a warning, with what to change, when a signal leaves its band.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import equinox as eqx
import jax
import numpy as np

from ebmppl.diagnostics import arviz as azb
from ebmppl.energy import Energy

__all__ = ["TrainingHealth", "HealthWarning"]


ADVICE_FOR = ("fit", "density", "trainer")
"""Whom :class:`TrainingHealth`'s advice addresses: options of ``fit`` for a named objective, the same under
the ``"density"`` recipe (step in standard deviations, adapted by default), or the builder of a Trainer."""

BUILDERS = {
    "cd": ("contrastive_divergence", "energy"),
    "recovery_cd": ("recovery_contrastive_divergence", "energy"),
    "jem": ("jem_hybrid", "joint"),
    "drl": ("diffusion_recovery_likelihood", "energy"),
    "mcem": ("mcem", "model, energy"),
}
"""The builder of each named Trainer (``Objective.name``) and its leading arguments: advice for a Trainer
names the call that made it, since ``fit``'s own options do not reach a Trainer."""


def builder_call(objective: str | None, option: str = "...", *, optimizer: str | None = None) -> str | None:
    """The call to the builder of the Trainer named ``objective`` that passes ``option`` (or ``optimizer``).

    ``None`` when the name is not one of ebmppl's builders (a Trainer of the user's own).

    Examples
    --------
    >>> builder_call("cd", "num_mcmc_steps=40")
    'contrastive_divergence(energy, optimizer, num_mcmc_steps=40)'
    >>> builder_call("jem", optimizer="optax.adam(1e-4, b1=0.0)")
    'jem_hybrid(joint, optax.adam(1e-4, b1=0.0), ...)'
    >>> builder_call("cd+pull", "num_mcmc_steps=40") is None
    True
    """
    if objective not in BUILDERS:
        return None
    name, leading = BUILDERS[objective]
    if optimizer is not None:
        return f"{name}({leading}, {optimizer}, ...)"
    if objective == "mcem":  # its prior chains carry the sampler options
        return f"mcem(..., negative=prior_chains(..., {option}))"
    return f"{name}({leading}, optimizer, {option})"


MCMC_FREE = ("dsm", "ssm", "nce", "sm", "ed", "multiscale_dsm", "pseudo_likelihood", "ratio_matching")
"""Objectives without negative chains: their loss does not pin the energy's absolute level (multi-σ DSM's
``E = f/σ`` is about -2500 by design at σ = 5e-4), so :class:`TrainingHealth` does not judge their energies'
size or the gap ``E(x⁺) - E(x⁻)`` (energy discrepancy's ``x⁻`` are contrast points, not chains)."""

_LOW_ACCEPTANCE_FOR_ADVICE = 0.3  # below this a chain that lags is never told to take larger steps
_HIGH_ACCEPTANCE_FOR_ADVICE = 0.9  # above this a lagging chain may take larger steps


class HealthWarning(UserWarning):
    """Training looks unhealthy; the message says what to change.

    Examples
    --------
    Turn the warnings into errors in a strict run:

    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("error", HealthWarning)
    ...     try:
    ...         warnings.warn("negatives are far colder than the data", HealthWarning)
    ...     except HealthWarning as err:
    ...         print(err)
    negatives are far colder than the data
    """


# one compiled probe per energy function and shapes, shared by every fit call (a jit built per TrainingHealth
# recompiled the probe at every fit call: ~0.8 s per call for the digits ConvNet)
_probe_energies = eqx.filter_jit(lambda energy, params, x: energy.with_params(params).energy(x))


@dataclasses.dataclass
class TrainingHealth:
    """A :func:`ebmppl.fit` callback that monitors CD training and warns with advice.

    Parameters
    ----------
    energy
        The energy being trained (its parameters are taken from the state).
    probe
        Number of replay-buffer slots whose energies are tracked.
    window
        Checks (callback calls) in the sliding window for R-hat and ESS. A
        slot only moves when the training step draws it, so the window should
        span several visits per slot: ``window × steps between checks ×
        batch / capacity ≳ 5`` (``fit``'s defaults: 20 × 50 × 128 / 10,000 ≈ 13).
    rhat_limit
        Warn when the probe's split R-hat over the window exceeds this. Not
        judged for discrete energies (``energy.support.is_discrete``), where
        it rose above the limit in fits whose chains mixed well.
    energy_limit
        Warn when a mean energy's magnitude exceeds this.
    gap_limit
        Warn when ``|mean E(x⁺) - mean E(x⁻)|`` exceeds this.
    acceptance_band
        Warn when the mean acceptance leaves ``(low, high)`` (samplers with an accept step).
    flat_limit
        Warn that the energy is flat when the mean of ``E(noise) - E(x⁺)``
        over the window is below this (in units of the temperature; noise is
        the chain initialisation's noise, so objectives without one skip it).
    grace
        Checks at the start of training without mixing and acceptance warnings
        (default: two windows); early on θ moves fast, chains lag by design and
        a flat initial energy accepts every proposal. Blow-ups are reported at once.
    emit
        Also issue Python warnings (:class:`HealthWarning`) as they arise.
    advice_for
        Whose options the advice names: ``"fit"`` (a named objective: ``fit``'s
        keyword options; default), ``"density"`` (the same under ``fit``'s
        ``"density"`` recipe, whose MALA step is in standard deviations and
        adapted towards an acceptance of 0.6) or ``"trainer"`` (a
        :class:`~ebmppl.objectives.Trainer` passed as ``objective``: its options
        belong to the builder that made it, e.g.
        ``ebmppl.jem.jem_hybrid(joint, optimizer, sampler_params=...)``).
        :func:`ebmppl.fit` sets it.
    objective
        The name of the objective trained (``Objective.name``; :func:`ebmppl.fit`
        sets it when ``None``). The runaway-energy and CD-gap judgments apply
        only to objectives with negative chains (``"cd"``, ``"recovery_cd"``,
        ``"drl"``, JEM, MCEM, ...), not to those in :data:`MCMC_FREE`; for
        ``"drl"`` the advice names its recovery chains' options
        (``num_mcmc_steps``, ``step_scale``, ``adjusted``).
    chains
        Whether the objective has negative chains; ``None`` (default): every
        objective not in :data:`MCMC_FREE`. :func:`ebmppl.fit` sets it from the
        trainer when ``None``.

    Notes
    -----
    The advice is ordered by what works. The usual failure of CD on real data
    is an energy that sharpens faster than the sampler follows it: the
    acceptance of a fixed step falls, the chains freeze, the negatives stop
    representing the model and CD pushes the data's energy down without
    bound. Its remedies, in order: a lower learning rate, a sampler step that
    follows the energy (``target_acceptance``) or more sampler steps; raising
    the energy penalty ``alpha`` comes last, since it biases the density
    towards flatter. Lagging chains are told to take larger steps only while
    their acceptance is high, never while it is low.

    Attributes
    ----------
    records
        One dict per check: ``step``, mean energies, CD gap, acceptance,
        buffer spread, probe ``rhat`` and ``ess`` (nan until the window fills).
    warnings
        ``(step, message)`` for each warning (each kind at most once per window).

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from ebmppl import Energy, fit
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))
    >>> health = TrainingHealth(e, probe=16, window=4, emit=False)
    >>> _ = fit(e, jax.random.key(0), jnp.ones((64, 2)), num_steps=100, chunk_size=10,
    ...         progress_bar=False, callbacks=[health], sampler_params={"step_size": 0.05, "noise_scale": 0.3})
    >>> len(health.records), sorted(health.records[-1])[:3]
    (10, ['acceptance_rate', 'buffer_std', 'cd_gap'])
    """

    energy: Energy
    probe: int = 64
    window: int = 20
    rhat_limit: float = 1.2
    energy_limit: float = 1e3
    gap_limit: float = 10.0
    acceptance_band: tuple[float, float] = (0.1, 0.99)
    flat_limit: float = 0.5
    grace: int | None = None
    emit: bool = True
    advice_for: str = "fit"
    objective: str | None = None
    chains: bool | None = None
    records: list[dict[str, float]] = dataclasses.field(default_factory=list)
    warnings: list[tuple[int, str]] = dataclasses.field(default_factory=list)
    _probe_energies: list[np.ndarray] = dataclasses.field(default_factory=list)
    _last_warned: dict[str, int] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.probe < 2 or self.window < 4:
            raise ValueError(f"probe must be >= 2 and window >= 4, got probe={self.probe}, window={self.window}.")
        if self.advice_for not in ADVICE_FOR:
            raise ValueError(f"advice_for must be one of {', '.join(map(repr, ADVICE_FOR))}, got {self.advice_for!r}.")

    def __call__(self, step: int, state: Any, metrics: dict[str, np.ndarray]) -> bool:
        record = {
            "step": step,
            **{k: float(np.nanmean(metrics[k])) if np.isfinite(metrics[k]).any() else float("nan")
               for k in ("energy_pos", "energy_neg", "energy_noise", "cd_gap", "acceptance_rate", "buffer_std",
                         "positive_acceptance_rate")
               if k in metrics},
            "rhat": float("nan"),
            "ess": float("nan"),
        }
        samples = getattr(getattr(state, "buffer", None), "samples", None)  # custom Trainer states may lack one
        if samples is not None and samples.shape[0] >= self.probe:
            probe = _probe_energies(self.energy, state.params, samples[: self.probe])
            self._probe_energies.append(np.asarray(probe, np.float64))
            self._probe_energies = self._probe_energies[-self.window :]
            if len(self._probe_energies) == self.window:
                chains = np.stack(self._probe_energies, axis=1)[..., None]  # (slot, check, 1)
                with warnings.catch_warnings():  # more slots than checks is intended here
                    warnings.filterwarnings("ignore", message="More chains")
                    record["rhat"] = float(azb.rhat(chains)[0])
                    record["ess"] = float(azb.ess(chains)[0])
        self.records.append(record)
        self._check(step, record)
        return False

    def _warn(self, step: int, kind: str, message: str) -> None:
        if step - self._last_warned.get(kind, -10**12) < self.window * max(1, self._stride()):
            return
        self._last_warned[kind] = step
        self.warnings.append((step, message))
        if self.emit:
            warnings.warn(f"step {step}: {message}", HealthWarning, stacklevel=3)

    def _stride(self) -> int:
        steps = [r["step"] for r in self.records[-2:]]
        return steps[1] - steps[0] if len(steps) == 2 else 1

    def final_check(self, step: int) -> bool:
        """Warn if the run ENDS with runaway energies: the energy about to be returned is then not a fit.

        :func:`ebmppl.fit` calls it after the last step. Returns ``True`` when it warned.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> from ebmppl import Energy
        >>> health = TrainingHealth(Energy(lambda p, x: jnp.sum(x**2), event_shape=(2,)), emit=False)
        >>> health.records.append({"step": 100, "energy_pos": -5e6, "energy_neg": 3e6, "rhat": float("nan")})
        >>> health.final_check(100), "not a fit" in health.warnings[-1][1]
        (True, True)
        """
        if not self.records or not self._contrastive:
            return False
        r = self.records[-1]
        energies = [abs(r.get(k, 0.0)) for k in ("energy_pos", "energy_neg") if np.isfinite(r.get(k, np.nan))]
        if not (energies and max(energies) > self.energy_limit):
            return False
        acc = r.get("acceptance_rate", np.nan)
        acc_text = f", sampler acceptance {acc:.2f}" if np.isfinite(acc) else ""
        first = next((q["step"] for q in self.records
                      if max([abs(q.get(k, 0.0)) for k in ("energy_pos", "energy_neg")
                              if np.isfinite(q.get(k, np.nan))] or [0.0]) > self.energy_limit), step)
        message = (f"the energy returned is not a fit: its energies ran away from step {first} on and were still "
                   f"out of bounds at the end (|E| = {max(energies):.3g}{acc_text}); the energy sharpened faster than "
                   f"the sampler followed it. Retrain; in order of what works: {self._lr()}; {self._follow()}; "
                   f"{self._alpha()}.")
        self._last_warned.pop("final", None)
        self._warn(step, "final", message)
        return True

    # -- advice, worded for the options that apply (fit's keywords, or a Trainer's builder) --------------------

    @property
    def _contrastive(self) -> bool:
        """The objective has negative chains, so the size of its energies and its CD gap are judged."""
        return bool(self.chains) if self.chains is not None else self.objective not in MCMC_FREE

    @property
    def _drl(self) -> bool:
        return self.objective == "drl"

    def _drl_option(self, text: str) -> str:
        """How to pass a Diffusion Recovery Likelihood option: ``text`` is e.g. ``"step_scale=0.05"``."""
        if self.advice_for == "trainer":
            return f"diffusion_recovery_likelihood(energy, optimizer, {text})"
        return f"fit(..., objective='drl', {text})"

    def _lr(self) -> str:
        if self.advice_for == "trainer":
            optimizer = "optax.adam(1e-4)" if self._drl else "optax.adam(1e-4, b1=0.0)"
            call = builder_call(self.objective, optimizer=optimizer) or f"e.g. jem_hybrid(joint, {optimizer}, ...)"
            return f"lower the learning rate of the optimizer the Trainer was built with ({call})"
        return "lower the learning rate (fit(..., optimizer=optax.adam(1e-4, b1=0.0)))"

    def _option(self, text: str) -> str:
        """How to pass a sampler option: ``text`` is e.g. ``"sampler_params={'step_size': ...}"``."""
        if self.advice_for == "trainer" and not self._drl and builder_call(self.objective, text) is not None:
            return (f"pass {text} to the builder that made the Trainer: {builder_call(self.objective, text)}"
                    + (" (its noise_mean= and noise_scale= also say where a prior far from unit scale lies)"
                       if self.objective == "mcem" else "") + "; fit's own options do not reach a Trainer")
        if self.advice_for == "trainer":
            return (f"pass {text} to the builder that made the Trainer (e.g. jem_hybrid(joint, optimizer, {text}), "
                    "contrastive_divergence(energy, optimizer, ...), or, for ebmppl.models.mcem, to its prior chains: "
                    f"mcem(..., negative=prior_chains(..., {text})), whose noise_mean= and noise_scale= also say where "
                    "a prior far from unit scale lies); fit's own options do not reach a Trainer")
        if self.advice_for == "density" and ("step_size" in text or "chain_init" in text):
            # sampler_params / chain_init alone would select recipe='none' and drop the standardisation
            return (f"fit(..., {text}, recipe='density'): naming recipe='density' keeps the standardisation"
                    + (" (the step is then in standard deviations)" if "step_size" in text else ""))
        return f"fit(..., {text})"

    @property
    def _discrete(self) -> bool:
        """A discrete energy: its samplers have no step size; more steps or another kernel is the remedy."""
        return bool(getattr(getattr(self.energy, "support", None), "is_discrete", False))

    def _discrete_advice(self) -> str:
        return ("take more sampler steps per update (" + self._option("num_mcmc_steps=40") + "), or a kernel that "
                "moves further per step (sampler='gibbs_with_gradients' or 'dmala'; 'block_gibbs' for an RBM)")

    def _follow(self) -> str:
        """Making the sampler follow a sharpening energy."""
        if self._discrete:
            return self._discrete_advice()
        if self._drl:
            return ("give the recovery chains more Langevin steps or a smaller step ("
                    + self._drl_option("num_mcmc_steps=60, step_scale=0.05") + "), with the Metropolis correction on "
                    "(adjusted=True, the default)")
        if self.advice_for == "density":
            return ("give the sampler more steps per update (" + self._option("num_mcmc_steps=40") + "); the "
                    "default step already shrinks to keep acceptance near 0.6 (history['step_size'])")
        if self.advice_for == "trainer":
            return ("give the sampler a smaller step or more steps per update ("
                    + self._option("sampler_params={'step_size': ...}, num_mcmc_steps=...") + ")")
        return ("let the step follow the energy (fit(..., target_acceptance=0.6) adapts it) or take more sampler "
                "steps (fit(..., num_mcmc_steps=40))")

    def _alpha(self) -> str:
        if self._drl:  # no energy penalty in DRL: narrower conditionals are what makes its short runs follow
            return ("or use more levels in the ladder (each recovery conditional is then narrower and easier for "
                    "the short runs)")
        where = "the Trainer's builder" if self.advice_for == "trainer" else "fit(..., alpha=0.1)"
        return (f"only as a last resort raise the energy penalty alpha ({where}): it keeps energies bounded but "
                "biases the fitted density towards flatter")

    def _check(self, step: int, r: dict[str, float]) -> None:
        acc = r.get("acceptance_rate", np.nan)
        acc_text = f", sampler acceptance {acc:.2f}" if np.isfinite(acc) else ""
        energies = [abs(r.get(k, 0.0)) for k in ("energy_pos", "energy_neg") if np.isfinite(r.get(k, np.nan))]
        if self._contrastive and energies and max(energies) > self.energy_limit:
            self._warn(step, "energy", f"energies are running away (|E| = {max(energies):.3g}{acc_text}): the energy "
                                       "is sharpening faster than the sampler follows it, so the negatives no longer "
                                       "represent the model and CD pushes the data's energy down without bound; an "
                                       "energy returned now is not a fit. In order of what works: "
                                       f"{self._lr()}; {self._follow()}; {self._alpha()}.")
        grace = 2 * self.window if self.grace is None else self.grace
        if len(self.records) <= grace:
            return
        low, high = self.acceptance_band
        lagging = self._lag_advice(acc)
        if self._contrastive and np.isfinite(r.get("cd_gap", np.nan)) and abs(r["cd_gap"]) > self.gap_limit:
            self._warn(step, "gap", f"the CD gap E(x+) - E(x-) = {r['cd_gap']:.3g} is large{acc_text}: the negatives "
                                    f"lag the model; {lagging}.")
        # not judged for discrete energies: there the probe's R-hat rose to 1.3-1.6 in every fit a stranger ran
        # (12-bit RBMs and Ising models that GwG mixes in a few sweeps), and 40 sampler steps did not lower it
        if np.isfinite(r["rhat"]) and r["rhat"] > self.rhat_limit and not self._discrete:
            self._warn(step, "mixing", f"persistent chains are not mixing (probe energy R-hat {r['rhat']:.2f} over "
                                       f"{self.window} checks{acc_text}): {lagging}; or re-initialise more of the "
                                       "buffer from noise (" + self._option("chain_init=ebmppl.buffer.replay_buffer("
                                                                            "reinit_prob=0.1, noise=...)") + ").")
        if np.isfinite(acc) and not low < acc < high and not (self._discrete and acc >= high):
            if self._discrete:  # no step size to tune: proposals that are refused call for another kernel
                advice = ("the discrete sampler's proposals are refused: " + self._discrete_advice()
                          + f", or {self._lr()}")
            elif self._drl:
                way = "lower" if acc <= low else "raise"
                advice = (f"{way} the recovery chains' Langevin step ("
                          + self._drl_option("step_scale=" + ("0.05" if acc <= low else "0.2")) + ")"
                          + (f", or {self._lr()}" if acc <= low else ""))
            elif acc <= low:
                advice = ("the step is too large for the energy as it has sharpened (it sharpens faster than the "
                          "sampler follows): lower the sampler step size ("
                          + self._option("sampler_params={'step_size': ...}") + ")"
                          + ("" if self.advice_for != "fit" else " or let it adapt (fit(..., target_acceptance=0.6))")
                          + f", or {self._lr()}")
            else:
                advice = ("the step is smaller than the energy needs and the chains crawl: raise the sampler step "
                          "size (" + self._option("sampler_params={'step_size': ...}") + ")")
            self._warn(step, "acceptance", f"sampler acceptance {acc:.2f} is outside ({low}, {high}): {advice}.")
        pos_acc = r.get("positive_acceptance_rate", np.nan)  # posterior chains (ebmppl.models.mcem)
        if np.isfinite(pos_acc) and not low < pos_acc < high:
            way = "lower" if pos_acc <= low else "raise"
            self._warn(step, "positive_acceptance",
                       f"the posterior chains (positive phase) accept {pos_acc:.2f} of their moves, outside ({low}, "
                       f"{high}): their draws barely move, so x+ lags the posterior. {way.capitalize()} their step "
                       f"(mcem(..., sampler_params={{'step_size': ...}})) or let it adapt (mcem(..., "
                       "target_acceptance=0.6), the default), or give them more steps (num_mcmc_steps=...).")
        contrast = [q.get("energy_noise", np.nan) - q.get("energy_pos", np.nan) for q in self.records[-self.window:]]
        if np.isfinite(contrast).all() and np.mean(contrast) < self.flat_limit:
            self._warn(step, "flat", f"the energy is flat: fresh noise gets the energy of the data (E(noise) - E(x+) = "
                                     f"{np.mean(contrast):.3g} over the last {len(contrast)} checks; CD gap "
                                     f"{r.get('cd_gap', np.nan):.3g}): the model has collapsed and learned nothing. "
                                     + ("Train longer / with a larger learning rate" if self._discrete else
                                        "Match the sampler to the data's scale (fit's default recipe='density' "
                                        "standardises the data), or train longer / with a larger learning rate")
                                     + ("; if alpha > 0, lower it (it flattens the energy)" if self.advice_for != "density"
                                        else "") + ".")
        if np.isfinite(r.get("buffer_std", np.nan)) and r["buffer_std"] < 1e-4:
            self._warn(step, "collapse", "the replay buffer collapsed to a point: raise the noise scale or the "
                                         "re-initialisation probability ("
                                         + self._option("chain_init=ebmppl.buffer.replay_buffer(reinit_prob=0.1, noise=...)") + ").")

    def _lag_advice(self, acc: float) -> str:
        """What to do about chains that lag the model, consistent with the acceptance (never 'larger' when it is low)."""
        if self._discrete:
            return f"{self._discrete_advice()}, or {self._lr()}"
        if self._drl:
            return f"{self._follow()}, or {self._lr()}"
        if np.isfinite(acc) and acc < _LOW_ACCEPTANCE_FOR_ADVICE:
            return (f"with acceptance this low the step is already too large for the energy: the energy sharpens "
                    f"faster than the sampler follows. {self._lr()[0].upper()}{self._lr()[1:]}; {self._follow()}")
        if not np.isfinite(acc) or acc > _HIGH_ACCEPTANCE_FOR_ADVICE:
            return ("take more sampler steps or larger ones ("
                    + self._option("num_mcmc_steps=40, sampler_params={'step_size': ...}") + ")")
        return f"take more sampler steps ({self._option('num_mcmc_steps=40')}), or {self._lr()}"

    def plot(self):
        """Energies (data, negatives, noise), CD gap, probe R-hat and acceptance against the step.

        Returns
        -------
        matplotlib.figure.Figure

        Examples
        --------
        The records :func:`ebmppl.fit` leaves (here written by hand) drawn on three panels and a twin axis:

        >>> import jax.numpy as jnp
        >>> from ebmppl import Energy
        >>> health = TrainingHealth(Energy(lambda p, x: jnp.sum(x**2), event_shape=(2,)), emit=False)
        >>> health.records += [{"step": s, "energy_pos": -1.0, "energy_neg": -0.5, "cd_gap": -0.5,
        ...                     "rhat": 1.05, "ess": 30.0} for s in (10, 20, 30)]
        >>> len(health.plot().axes)
        4
        """
        import matplotlib.pyplot as plt

        steps = np.array([r["step"] for r in self.records])
        get = lambda k: np.array([r.get(k, np.nan) for r in self.records])  # noqa: E731
        fig, axes = plt.subplots(1, 3, figsize=(14, 3.8), layout="constrained")
        for key, label in (("energy_pos", "data E(x⁺)"), ("energy_neg", "negatives E(x⁻)"), ("energy_noise", "noise")):
            axes[0].plot(steps, get(key), label=label)
        axes[0].set(title="mean energies", xlabel="step", ylabel="E")
        axes[0].legend()
        axes[1].plot(steps, get("rhat"), color="tab:red", label="probe R-hat")
        axes[1].axhline(self.rhat_limit, color="tab:red", ls="--", lw=1)
        axes[1].set(title=f"mixing of persistent chains (window {self.window})", xlabel="step", ylabel="split R-hat")
        ax2 = axes[1].twinx()
        ax2.plot(steps, get("ess"), color="tab:gray", label="probe ESS")
        ax2.set_ylabel("ESS", color="tab:gray")
        axes[2].plot(steps, get("cd_gap"), label="CD gap")
        if np.isfinite(get("acceptance_rate")).any():
            axes[2].plot(steps, get("acceptance_rate"), label="acceptance")
        axes[2].set(title="CD gap and acceptance", xlabel="step")
        axes[2].legend()
        for step, _ in self.warnings:
            for ax in axes:
                ax.axvline(step, color="orange", lw=0.8, alpha=0.7)
        return fig
