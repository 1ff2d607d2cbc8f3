"""The one trainer: a positive phase, a negative phase and loss terms, composed; one step skeleton.

Every training objective of ebmppl is an :class:`Objective`, built from small
pieces in the way Optax builds an optimizer:

* a **positive phase** turns the batch into the examples whose energy goes
  down, ``x⁺``: :class:`DataPhase` (the data batch itself), or the recovery
  chains of :func:`~ebmppl.objectives.recovery_contrastive_divergence` that
  complete incomplete examples; posterior chains plug in the same way
  (``__call__(keys, model, batch) -> x⁺``; a phase that keeps chains across
  steps overrides ``init`` and ``run`` and keeps them in ``TrainState.positive``,
  as the persistent posterior chains of :func:`ebmppl.models.mcem` do);
* a **negative phase**, :class:`NegativeChains`, turns ``x⁺`` into model
  samples ``x⁻``: chains started by a chain-initialisation strategy
  (:class:`~ebmppl.buffer.ChainInit`), driven by any sampler, with its
  optional step-size adaptation; ``None`` for MCMC-free objectives;
* **loss terms** (:class:`LossTerm`) map the current model and the phases to a
  scalar and named auxiliary values; the loss is their sum. Contrastive
  divergence with the α penalty, JEM's cross-entropy, denoising and sliced
  score matching and noise-contrastive estimation are terms; :class:`Scaled`
  weighs one.

:meth:`Objective.step` is the one step skeleton: split the key, positive
phase, negative phase, ``value_and_grad`` of the summed terms, one Optax
update behind the one divergence guard
(:func:`~ebmppl.objectives.base.apply_gradients`), and the one metrics
definition (:func:`~ebmppl.objectives.base.training_metrics`).

An :class:`Objective` is an Equinox module whose options are static fields
and which holds no arrays (the energy is kept without its parameters, kernel
parameters as numbers), so it hashes and compares by value: two objectives
built alike are equal, and ``jax.jit`` (and :func:`ebmppl.fit`) reuse one
compiled step for both.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ebmppl.buffer import BufferState, ChainInit, replay_buffer
from ebmppl.energy import Energy
from ebmppl.objectives.base import TrainState, all_finite, apply_gradients, buffer_spread, initial_state, \
    training_metrics
from ebmppl.samplers.negatives import kernel_parameters, sample_negatives
from ebmppl.sharding import blockwise_mean, constrain_replicated

__all__ = ["Objective", "Phases", "LossTerm", "Scaled", "PositivePhase", "DataPhase", "NegativeChains",
           "negative_chains", "freeze_arrays", "thaw_arrays"]

NOISE_PROBE = 16  # noise points per step behind the ``energy_noise`` metric


# ---------------------------------------------------------------- arrays as hashable numbers
def freeze_arrays(arrays: dict[str, Any]) -> tuple[tuple[str, tuple[int, ...], tuple[float, ...]], ...]:
    """A dict of arrays as a hashable tuple ``((name, shape, values), ...)`` (exact for float32 values).

    What lets a trainer keep kernel parameters in a static field and hash by value.

    Examples
    --------
    >>> frozen = freeze_arrays({"step_size": jnp.float32(0.1), "m": jnp.ones(2)})
    >>> frozen[0][:2], hash(frozen) == hash(freeze_arrays({"step_size": jnp.float32(0.1), "m": jnp.ones(2)}))
    (('m', (2,)), True)
    """
    out = []
    for name in sorted(arrays):
        a = np.asarray(arrays[name])
        out.append((str(name), tuple(a.shape), tuple(float(v) for v in a.ravel())))
    return tuple(out)


def thaw_arrays(frozen: tuple, dtype: Any = None) -> dict[str, jax.Array]:
    """The dict of arrays :func:`freeze_arrays` froze (default float dtype), bit for bit.

    Examples
    --------
    >>> thaw_arrays(freeze_arrays({"step_size": jnp.float32(0.1)}))["step_size"] == jnp.float32(0.1)
    Array(True, dtype=bool)
    """
    dtype = jnp.result_type(float) if dtype is None else dtype
    return {name: jnp.asarray(np.asarray(values, dtype).reshape(shape)) for name, shape, values in frozen}


def _template(energy: Energy) -> Energy:
    """``energy`` without its parameters (the trainer gets them from its state) and at a Python-float temperature."""
    template = energy.with_params(None)
    if not isinstance(template.temperature, (int, float)) and not isinstance(template.temperature, jax.core.Tracer):
        template = template.with_temperature(float(template.temperature))
    return template


# ---------------------------------------------------------------- what loss terms see
class Phases(NamedTuple):
    """What one training step hands its loss terms.

    Attributes
    ----------
    batch
        The batch as the driver gave it: examples, ``(examples, labels)`` or ``(examples, mask)``.
    positive
        ``x⁺``, the examples whose energy the step lowers (constants).
    negative
        ``x⁻``, the model samples whose energy it raises (constants), or ``None`` without a negative phase.
    key
        A PRNG key for terms that draw (noise, projections); shared by the terms of one step
        (a second drawing term should ``fold_in`` its own stream).

    Examples
    --------
    >>> p = Phases(jnp.ones((4, 2)), jnp.ones((4, 2)), None, jax.random.key(0))
    >>> p.positive.shape, p.negative is None
    ((4, 2), True)
    """

    batch: Any
    positive: jax.Array
    negative: jax.Array | None
    key: jax.Array | None


class LossTerm(eqx.Module):
    """One term of a training loss: ``term(model, phases, extra) -> (loss, aux)``.

    Subclass it with the term's options as (static) fields and implement
    ``__call__``: ``model`` is the energy at the parameters being
    differentiated, ``phases`` the step's :class:`Phases`, ``extra`` the
    term's own trained parameters (:meth:`extra_params`; e.g. NCE's ``log_c``).
    ``aux`` is a dict of scalars recorded as metrics; ``energy_pos`` and
    ``energy_neg`` (mean energies of ``x⁺`` and ``x⁻``) feed the shared
    ``cd_gap``.

    Examples
    --------
    >>> class MeanEnergy(LossTerm):
    ...     def __call__(self, model, phases, extra):
    ...         e = model.energy(phases.positive).mean()
    ...         return e, {"energy_pos": e}
    >>> e = Energy(lambda p, x: p * jnp.sum(x**2), jnp.float32(2.0), event_shape=(2,))
    >>> loss, aux = MeanEnergy()(e, Phases(None, jnp.ones((3, 2)), None, None), {})
    >>> float(loss)
    4.0
    """

    #: whether the term draws random numbers (then ``phases.key`` is a key)
    needs_key: ClassVar[bool] = False
    #: whether the loss and every aux value are means over the rows of the batch, ``x⁺`` and ``x⁻`` (no key):
    #: then the mean over equal blocks of rows is the whole batch's value, and a sharded ``fit`` evaluates the
    #: term block by block on each device and reduces loss, aux and gradient in one all-reduce
    row_mean: ClassVar[bool] = False

    def extra_params(self) -> dict[str, jax.Array]:
        """Parameters the term trains besides the energy's (default none): ``{name: initial value}``.

        Examples
        --------
        >>> from ebmppl.objectives import ContrastiveDivergence
        >>> ContrastiveDivergence().extra_params()
        {}
        """
        return {}

    @abc.abstractmethod
    def __call__(self, model: Energy, phases: Phases, extra: dict[str, Any]) -> tuple[jax.Array, dict[str, Any]]:
        raise NotImplementedError


class Scaled(LossTerm):
    """A term times a constant ``weight`` (its aux values unscaled).

    Examples
    --------
    >>> class One(LossTerm):
    ...     def __call__(self, model, phases, extra):
    ...         return jnp.float32(1.0), {"one": jnp.float32(1.0)}
    >>> loss, aux = Scaled(One(), 0.5)(None, None, {})
    >>> float(loss), float(aux["one"])
    (0.5, 1.0)
    """

    term: LossTerm
    weight: float = eqx.field(static=True)

    @property
    def needs_key(self) -> bool:  # type: ignore[override]
        return self.term.needs_key

    @property
    def row_mean(self) -> bool:  # type: ignore[override]
        return self.term.row_mean

    def extra_params(self) -> dict[str, jax.Array]:
        return self.term.extra_params()

    def __call__(self, model, phases, extra):
        loss, aux = self.term(model, phases, extra)
        return self.weight * loss, aux


# ---------------------------------------------------------------- positive phase
class PositivePhase(eqx.Module):
    """Where ``x⁺`` comes from: ``phase(keys, model, batch) -> x⁺`` with ``num_keys`` keys.

    ``model`` is the energy at the current parameters, held constant. Data
    batches (:class:`DataPhase`), recovery chains and posterior chains are
    positive phases.

    Examples
    --------
    >>> DataPhase()((), None, (jnp.ones((3, 2)), jnp.zeros(3, jnp.int32))).shape
    (3, 2)
    """

    num_keys: ClassVar[int] = 0

    @abc.abstractmethod
    def __call__(self, keys: Sequence[jax.Array], model: Energy, batch: Any) -> jax.Array:
        raise NotImplementedError

    def init(self, key: jax.Array, event_shape: tuple[int, ...]) -> Any:
        """The phase's own state, kept in ``TrainState.positive`` (default ``None``: stateless).

        A phase that keeps chains (persistent posterior chains) overrides it and :meth:`run`.

        Examples
        --------
        >>> DataPhase().init(jax.random.key(0), (2,)) is None
        True
        """
        return None

    def run(self, keys: Sequence[jax.Array], model: Energy, batch: Any,
            state: TrainState) -> tuple[jax.Array, Any, dict[str, jax.Array]]:
        """One step's ``(x⁺, new phase state, metrics)``; ``state`` is the whole training state before the step.

        The default calls the stateless ``phase(keys, model, batch)`` and keeps ``state.positive``. The
        new phase state is kept only when the step is finite (the divergence guard).

        Examples
        --------
        >>> x, kept, metrics = DataPhase().run((), None, jnp.ones((3, 2)), None)
        >>> x.shape, kept, metrics
        ((3, 2), None, {})
        """
        return self(keys, model, batch), getattr(state, "positive", None), {}


class DataPhase(PositivePhase):
    """``x⁺`` is the batch's examples (the batch, or its first element for ``(examples, labels)``).

    Examples
    --------
    >>> DataPhase()((), None, jnp.ones((4, 2))).shape
    (4, 2)
    """

    def __call__(self, keys, model, batch):
        return batch[0] if isinstance(batch, tuple) else batch


# ---------------------------------------------------------------- negative phase
class NegativeChains(eqx.Module):
    """The negative phase: chains from a :class:`~ebmppl.buffer.ChainInit`, run by a sampler under θ.

    Build it with :func:`negative_chains` (which validates the options).

    Attributes
    ----------
    sampler
        The sampler (any object with ``init``, ``step``, ``position``, ``default_params``, ``name``).
    sampler_params
        Its kernel parameters, frozen (:func:`freeze_arrays`); :attr:`params` gives the dict.
    num_mcmc_steps
        Sampler steps per training step.
    chain_init
        Where chains start (``None``: :func:`~ebmppl.buffer.replay_buffer` with its defaults).
    target_acceptance, adapt_rate
        Step-size adaptation during training (``None``: off); the log of the
        factor on the step lives in ``state.buffer.log_step_scale``. A sampler
        that adapts itself during training (one with ``training_adaptation_init``
        and ``training_adaptation_update``, as :func:`~ebmppl.samplers.parallel_tempering`:
        its ladder from the running swap acceptance, a step per level) is
        always adapted, towards ``target_acceptance`` or, with ``None``, its
        local kernel's own target, at rate ``adapt_rate``; its state lives in
        ``state.buffer.sampler_state`` and the kernel parameters it names
        replace the given ones.
    noise_probe
        Fresh noise points per step whose mean energy is the ``energy_noise`` metric (0: none).
    probe_key
        ``"split"``: the probe has its own key (a third key of the phase); ``"fold_in"``: it folds
        the start key (two keys).
    run
        ``False`` keeps the buffer in the state but runs no chains (JEM with ``generative_weight=0``).

    Examples
    --------
    >>> from ebmppl import samplers
    >>> neg = negative_chains(samplers.mala(step_size=0.2), 2, num_mcmc_steps=5)
    >>> neg.num_keys, bool(neg.params["step_size"] == jnp.float32(0.2))
    (3, True)
    """

    sampler: Any = eqx.field(static=True)
    sampler_params: tuple = eqx.field(static=True)
    num_mcmc_steps: int = eqx.field(static=True)
    chain_init: ChainInit | None = eqx.field(static=True, default=None)
    target_acceptance: float | None = eqx.field(static=True, default=None)
    adapt_rate: float = eqx.field(static=True, default=0.05)
    noise_probe: int = eqx.field(static=True, default=NOISE_PROBE)
    probe_key: str = eqx.field(static=True, default="split")
    run: bool = eqx.field(static=True, default=True)

    @property
    def num_keys(self) -> int:
        """Keys the phase takes from the step's split: start, chains (and the noise probe's with ``"split"``)."""
        return 3 if self.noise_probe and self.probe_key == "split" else 2

    @property
    def strategy(self) -> ChainInit:
        """The chain-initialisation strategy (the default replay buffer when none was given)."""
        return self.chain_init if self.chain_init is not None else replay_buffer()

    @property
    def params(self) -> dict[str, jax.Array]:
        """The kernel parameters as a dict of arrays."""
        return thaw_arrays(self.sampler_params)

    @property
    def adapts_sampler(self) -> bool:
        """Whether the sampler adapts itself during training (state in ``BufferState.sampler_state``)."""
        return hasattr(self.sampler, "training_adaptation_update") and hasattr(self.sampler,
                                                                               "training_adaptation_init")

    def kernel_params(self, buffer: BufferState) -> dict[str, jax.Array]:
        """The kernel parameters the chains run with: the given ones, adapted by the buffer's state.

        Examples
        --------
        >>> from ebmppl import samplers
        >>> chains = negative_chains(samplers.mala(step_size=0.2), 2, target_acceptance=0.6)
        >>> buffer = chains.init(jax.random.key(0), (2,))
        >>> round(float(chains.kernel_params(buffer._replace(log_step_scale=jnp.log(0.5)))["step_size"]), 3)
        0.1
        """
        kernel = self.params
        if self.adapts_sampler:
            state = buffer.sampler_state
            return {**kernel, **{k: v for k, v in state.items() if k in kernel}}
        if self.target_acceptance is not None:  # exp(0) is exactly 1: unshrunk, the step is bit for bit the one given
            kernel = {**kernel, "step_size": kernel["step_size"] * jnp.exp(buffer.log_step_scale)}
        return kernel

    def init(self, key: jax.Array, event_shape: tuple[int, ...]) -> BufferState:
        """The initial :class:`~ebmppl.buffer.BufferState` (with ``log_step_scale = 0`` when adapting).

        Examples
        --------
        >>> from ebmppl.buffer import replay_buffer
        >>> chains = negative_chains("mala", 2, chain_init=replay_buffer(100), target_acceptance=0.6)
        >>> buffer = chains.init(jax.random.key(0), (2,))
        >>> buffer.samples.shape, float(buffer.log_step_scale)
        ((100, 2), 0.0)
        """
        buffer = self.strategy.init(key, event_shape)
        if self.adapts_sampler:
            return buffer._replace(sampler_state=self.sampler.training_adaptation_init(self.params))
        if self.target_acceptance is not None:  # log of the factor on the step: 0 = the step as given
            buffer = buffer._replace(log_step_scale=jnp.zeros((), jnp.result_type(float)))
        return buffer

    def __call__(self, keys: Sequence[jax.Array], energy: Energy, params: Any, buffer: BufferState,
                 x_pos: jax.Array) -> tuple[jax.Array | None, BufferState, dict[str, jax.Array]]:
        """Run the chains: ``(x⁻, new buffer, metrics)`` with ``acceptance_rate``, ``reinit_fraction``,
        ``buffer_std``, ``step_size`` and ``energy_noise`` (``x⁻`` is ``None`` when ``run`` is False)."""
        strategy, dtype = self.strategy, x_pos.dtype
        nan = jnp.asarray(jnp.nan, dtype)
        kernel = self.kernel_params(buffer)
        extra: dict[str, jax.Array] = {}
        if self.run:
            x0, aux = strategy.start(keys[0], buffer, x_pos)
            if self.adapts_sampler:
                x_neg, acceptance, stats = sample_negatives(energy, self.sampler, kernel, self.num_mcmc_steps,
                                                            keys[1], params, x0, with_stats=True)
                sampler_state = self.sampler.training_adaptation_update(self.params, buffer.sampler_state, stats,
                                                                        self.target_acceptance, self.adapt_rate)
                new_buffer = strategy.finish(buffer, aux, x_neg)._replace(sampler_state=sampler_state)
                extra = _sampler_metrics(stats, dtype)
            else:
                x_neg, acceptance = sample_negatives(energy, self.sampler, kernel, self.num_mcmc_steps, keys[1],
                                                     params, x0)
                new_buffer = strategy.finish(buffer, aux, x_neg)
            if self.target_acceptance is not None and not self.adapts_sampler:
                target = self.target_acceptance
                shift = self.adapt_rate * (jnp.nan_to_num(acceptance, nan=target) - target)
                new_buffer = new_buffer._replace(log_step_scale=jnp.minimum(0.0, buffer.log_step_scale + shift)
                                                 .astype(buffer.log_step_scale.dtype))
            metrics = {"acceptance_rate": acceptance, "reinit_fraction": jnp.asarray(strategy.reinit_prob, dtype),
                       # spread of the persistent negatives (nan without a buffer): collapsing or exploding
                       # buffers show up here first
                       "buffer_std": buffer_spread(new_buffer, constrain_replicated(x_neg))}
        else:
            x_neg, new_buffer = None, buffer
            metrics = {"acceptance_rate": nan, "reinit_fraction": nan, "buffer_std": nan}
            if self.adapts_sampler:
                extra = {"swap_acceptance": nan}
        metrics.update(extra)
        # the target level's step for parallel tempering (kernel_step_size, one per level)
        step = kernel.get("step_size", kernel.get("kernel_step_size", jnp.full((1,), jnp.nan))[-1])
        metrics["step_size"] = jnp.asarray(step, dtype)
        metrics["energy_noise"] = nan
        if self.noise_probe and strategy.noise is not None:  # energy of fresh noise: where the model puts "nothing"
            # a small probe: a health signal averaged over steps, not worth a batch-sized forward pass
            k_probe = keys[2] if self.probe_key == "split" else jax.random.fold_in(keys[0], 1)
            probe = strategy.noise(k_probe, (min(self.noise_probe, x_pos.shape[0]), *x_pos.shape[1:]))
            metrics["energy_noise"] = energy.with_params(params).energy(probe).mean().astype(dtype)
        return x_neg, new_buffer, metrics


def _sampler_metrics(stats: Any, dtype: Any) -> dict[str, jax.Array]:
    """Metrics of a self-adapting sampler's mean statistics: parallel tempering's mean swap acceptance."""
    if hasattr(stats, "swap_acceptance"):  # over the pairs tried, the chains and the sampler steps
        return {"swap_acceptance": jnp.nanmean(stats.swap_acceptance).astype(dtype)}
    return {}


def negative_chains(sampler: Any, dim: int, *, sampler_params: dict[str, Any] | None = None,
                    num_mcmc_steps: int = 20, chain_init: ChainInit | None = None,
                    target_acceptance: float | None = None, adapt_rate: float = 0.05,
                    noise_probe: int = NOISE_PROBE, probe_key: str = "split", run: bool = True) -> NegativeChains:
    """A validated :class:`NegativeChains`: ``sampler_params`` checked against the sampler, options in range.

    Parameters
    ----------
    sampler
        A sampler (a registry name is resolved with :func:`ebmppl.samplers.get_sampler`).
    dim
        Coordinates of one example (the kernel parameters' defaults depend on it).
    sampler_params, num_mcmc_steps, chain_init, target_acceptance, adapt_rate
        As in :func:`~ebmppl.objectives.contrastive_divergence`.
    noise_probe, probe_key, run
        See :class:`NegativeChains`.

    Examples
    --------
    >>> negative_chains("mala", 2, target_acceptance=0.6).target_acceptance
    0.6
    >>> negative_chains("mala", 2, target_acceptance=1.5)
    Traceback (most recent call last):
    ...
    ValueError: target_acceptance must be in (0, 1) (or None: a fixed step), got 1.5.
    """
    from ebmppl.samplers.registry import as_sampler

    if isinstance(num_mcmc_steps, bool) or not isinstance(num_mcmc_steps, (int, np.integer)) or num_mcmc_steps < 1:
        raise ValueError(f"num_mcmc_steps must be an int >= 1, got {num_mcmc_steps!r}.")
    sampler = as_sampler(sampler)
    with jax.ensure_compile_time_eval():  # built inside a traced model (ebm_sample), the defaults stay concrete
        kernel = kernel_parameters(sampler, dim, sampler_params)
    if target_acceptance is not None:
        if not 0 < float(target_acceptance) < 1:
            raise ValueError(f"target_acceptance must be in (0, 1) (or None: a fixed step), got {target_acceptance!r}.")
        if "step_size" not in kernel and not hasattr(sampler, "training_adaptation_update"):
            raise ValueError(f"target_acceptance adapts the sampler's step_size, but sampler {sampler.name!r} has "
                             f"none (its parameters: {sorted(kernel)}); pass target_acceptance=None.")
        if not float(adapt_rate) > 0:
            raise ValueError(f"adapt_rate must be > 0, got {adapt_rate!r}.")
        target_acceptance = float(target_acceptance)
    if probe_key not in ("split", "fold_in"):
        raise ValueError(f"probe_key must be 'split' or 'fold_in', got {probe_key!r}.")
    return NegativeChains(sampler, freeze_arrays(kernel), int(num_mcmc_steps), chain_init, target_acceptance,
                          float(adapt_rate), int(noise_probe), probe_key, bool(run))


# ---------------------------------------------------------------- the one trainer
class Objective(eqx.Module):
    """The one trainer: positive phase + negative phase + loss terms, behind one step skeleton.

    It is what every builder of :mod:`ebmppl.objectives` (and
    :func:`ebmppl.jem.jem_hybrid`) returns and what :func:`ebmppl.fit` drives
    (``fit(energy, key, data, objective=...)``), with the
    :class:`~ebmppl.objectives.Trainer` contract: ``name``, ``init(key,
    params)``, ``step(state, batch) -> (state, metrics)``, ``energy_params``
    and ``check_data``.

    Parameters
    ----------
    name
        The objective's name (``"cd"``, ...), shown in messages.
    energy
        The energy trained (its parameters are not kept: ``init`` takes the starting ones).
    optimizer
        Any Optax transformation.
    loss
        A :class:`LossTerm` or a sequence of them; the loss is their sum.
    positive
        The positive phase (default :class:`DataPhase`).
    negative
        The negative phase (:func:`negative_chains`) or ``None`` (MCMC-free objectives).
    check_data
        ``check_data(data)`` run by :func:`ebmppl.fit` on the data before the first step, or ``None``;
        a hashable callable (e.g. an Equinox module) keeps the objective hashing by value.

    Notes
    -----
    One step: the state's key is split into ``[next key, *negative keys,
    *positive keys, loss key]``; ``x⁺ = positive(...)`` under the current θ
    (held constant); ``x⁻ = negative(...)`` from the buffer's starts; the
    terms' summed loss is differentiated; one Optax update. The divergence
    guard keeps the previous state (advancing only key and step) when the
    loss, the new parameters, ``x⁻`` or chain-made ``x⁺`` are not finite, and reports
    ``finite = False``. The metrics are those of
    :func:`~ebmppl.objectives.base.training_metrics` plus the terms' aux
    values and the negative phase's ``step_size``.

    Examples
    --------
    A toy objective: CD plus a small pull of the data's energy towards zero.

    >>> from ebmppl import Energy
    >>> from ebmppl.objectives import ContrastiveDivergence
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))
    >>> class Pull(LossTerm):
    ...     weight: float = eqx.field(static=True, default=0.01)
    ...     def __call__(self, model, phases, extra):
    ...         return self.weight * jnp.mean(model.energy(phases.positive) ** 2), {}
    >>> opt = optax.adam(1e-2)
    >>> trainer = Objective("cd+pull", e, opt, (ContrastiveDivergence(alpha=0.0), Pull()),
    ...                     negative=negative_chains("mala", 2, num_mcmc_steps=5))
    >>> state = trainer.init(jax.random.key(0), e.params)
    >>> state, metrics = jax.jit(trainer.step)(state, jnp.ones((16, 2)))
    >>> bool(metrics["finite"]), int(state.step)
    (True, 1)
    >>> trainer == Objective("cd+pull", e, opt, (ContrastiveDivergence(alpha=0.0), Pull()),
    ...                      negative=negative_chains("mala", 2, num_mcmc_steps=5))
    True
    """

    name: str = eqx.field(static=True)
    energy: Energy
    optimizer: optax.GradientTransformation = eqx.field(static=True)
    loss: tuple[LossTerm, ...]
    positive: PositivePhase
    negative: NegativeChains | None
    check_data: Callable[[Any], None] | None = eqx.field(static=True)

    def __init__(self, name: str, energy: Energy, optimizer: optax.GradientTransformation,
                 loss: LossTerm | Sequence[LossTerm], *, positive: PositivePhase | None = None,
                 negative: NegativeChains | None = None, check_data: Callable[[Any], None] | None = None):
        terms = (loss,) if isinstance(loss, LossTerm) else tuple(loss)
        if not terms or not all(isinstance(t, LossTerm) for t in terms):
            raise TypeError("loss must be a LossTerm or a non-empty sequence of LossTerms (ebmppl.objectives."
                            f"LossTerm subclasses), got {loss!r}.")
        if not isinstance(energy, Energy):
            raise TypeError(f"energy must be an ebmppl.Energy, got {type(energy).__name__}.")
        if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
            raise TypeError(f"optimizer must be an Optax GradientTransformation, got {type(optimizer).__name__}.")
        self.name = str(name)
        self.energy = _template(energy)
        self.optimizer = optimizer
        self.loss = terms
        self.positive = DataPhase() if positive is None else positive
        self.negative = negative
        self.check_data = check_data

    # ------------------------------------------------------------ parameters
    def _extras(self) -> dict[str, jax.Array]:
        extras: dict[str, jax.Array] = {}
        for term in self.loss:
            extras.update(term.extra_params())
        return extras

    def energy_params(self, params: Any) -> Any:
        """The energy's parameters within the trained ones (``params["energy"]`` when a term trains extras).

        Examples
        --------
        >>> from ebmppl.objectives import noise_contrastive_estimation
        >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))
        >>> t = noise_contrastive_estimation(e, optax.adam(1e-2))
        >>> t.energy_params(t.init(jax.random.key(0), e.params).params).shape
        (2,)
        """
        return params["energy"] if self._extras() else params

    def init(self, key: jax.Array, params: Any) -> TrainState:
        """A fresh :class:`~ebmppl.objectives.TrainState` from the energy's starting ``params``.

        Examples
        --------
        >>> from ebmppl.objectives import contrastive_divergence
        >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))
        >>> state = contrastive_divergence(e, optax.adam(1e-2)).init(jax.random.key(0), e.params)
        >>> int(state.step), state.params.shape
        (0, (2,))
        """
        extras = self._extras()
        params = {"energy": params, **extras} if extras else params
        # a folded key: stateless phases (positive None) leave every other draw as it was
        positive = self.positive.init(jax.random.fold_in(key, 0x505), self.energy.event_shape)
        if self.negative is None:
            return initial_state(key, params, self.optimizer, None, self.energy.event_shape)._replace(
                positive=positive)
        k_buffer, key = jax.random.split(key)
        buffer = self.negative.init(k_buffer, self.energy.event_shape)
        return TrainState(params, self.optimizer.init(params), buffer, key, jnp.zeros((), jnp.int32), positive)

    # ------------------------------------------------------------ the step skeleton
    def _loss(self, params: Any, phases: Phases) -> tuple[jax.Array, dict[str, Any]]:
        """The terms' summed loss and their aux values at ``params``."""
        model = self.energy.with_params(self.energy_params(params))
        extra = {name: params[name] for name in self._extras()}
        total, aux = None, {}
        for term in self.loss:
            value, term_aux = term(model, phases, extra)
            total = value if total is None else total + value
            aux.update(term_aux)
        return total, aux

    def check_row_means(self, params: Any, batch: Any) -> None:
        """Check that terms declaring ``row_mean`` give, on device blocks of ``batch``, the whole batch's loss.

        A sharded :func:`ebmppl.fit` evaluates such terms block by block (see
        :attr:`LossTerm.row_mean`), so a term that is not a row mean would
        silently train something else. ``fit`` calls this once, before a sharded
        run, for terms defined outside ebmppl (``x⁺ = x⁻ = batch``, no draws); a
        mismatch raises ``ValueError`` naming the terms. It catches a term whose
        value depends on how many rows it sees (a sum instead of a mean, a
        ``log(batch size)``); a term that normalises over the batch (a
        ``logsumexp`` over rows) can pass it when the energies are nearly equal,
        as at initialisation: ``row_mean`` stays the term's own promise.
        Nothing is checked without an active mesh of several devices.

        Examples
        --------
        >>> from ebmppl.objectives import contrastive_divergence
        >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))
        >>> contrastive_divergence(e, optax.adam(1e-2)).check_row_means(e.params, jnp.ones((8, 2)))  # passes
        """
        if not all(t.row_mean for t in self.loss):
            return

        @jax.jit
        def both(params, batch):  # traced under the caller's active mesh
            x = batch[0] if isinstance(batch, tuple) else batch  # (examples, labels / mask): x⁺ = x⁻ = examples
            rows = (batch, x, x)
            blocks = blockwise_mean(lambda p, r: self._loss(p, Phases(*r, None))[0], params, rows)
            return blocks, self._loss(params, Phases(*rows, None))[0]

        blocks, whole = both(params, batch)
        if blocks is None or not (jnp.isfinite(blocks) & jnp.isfinite(whole)):
            return  # a non-finite loss is the divergence guard's to report, with its own advice
        if not jnp.abs(blocks - whole) <= 1e-4 * (1.0 + jnp.abs(whole)):
            names = ", ".join(sorted({type(t).__name__ for t in self.loss}))
            raise ValueError(
                f"a loss term declares row_mean = True, but on {jax.tree.leaves(batch)[0].shape[0]} rows split over "
                f"the devices its loss is {float(blocks):.6g} and on the whole batch {float(whole):.6g} (terms: "
                f"{names}). A row-mean term's loss and aux values must be means over the rows of the batch, x⁺ and "
                "x⁻ (a sum over rows is not); set row_mean = False on such a term (it then runs unsplit).")

    def step(self, state: TrainState, batch: Any) -> tuple[TrainState, dict[str, jax.Array]]:
        """One jit-able training step: ``(state, batch) -> (state, metrics)``.

        Examples
        --------
        >>> from ebmppl.objectives import denoising_score_matching
        >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))
        >>> trainer = denoising_score_matching(e, optax.adam(1e-2), sigma=0.1)
        >>> state, metrics = jax.jit(trainer.step)(trainer.init(jax.random.key(0), e.params), jnp.ones((8, 2)))
        >>> int(state.step), bool(metrics["finite"])
        (1, True)
        """
        num_neg = self.negative.num_keys if self.negative is not None else 0
        num_pos = self.positive.num_keys
        needs_key = any(term.needs_key for term in self.loss)
        keys = jax.random.split(state.key, 1 + num_neg + num_pos + int(needs_key))
        key, k_neg = keys[0], list(keys[1:1 + num_neg])
        k_pos = list(keys[1 + num_neg:1 + num_neg + num_pos])
        k_loss = keys[1 + num_neg + num_pos] if needs_key else None

        theta = self.energy_params(state.params)
        frozen = self.energy.with_params(jax.lax.stop_gradient(theta))
        x_pos, positive_state, positive_metrics = self.positive.run(k_pos, frozen, batch, state)
        x_pos = jax.lax.stop_gradient(x_pos)
        buffer, phase_metrics, x_neg = state.buffer, {}, None
        if self.negative is not None:
            x_neg, buffer, phase_metrics = self.negative(k_neg, self.energy, theta, state.buffer, x_pos)
        loss_fn = self._loss

        # chains can diverge; the data were validated before training (and a NaN in them makes the loss NaN)
        def chains(x_pos, x_neg):
            return [x for x in ((None if isinstance(self.positive, DataPhase) else x_pos), x_neg) if x is not None]

        def blockwise(params, rows):
            (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, Phases(*rows, None))
            bad = sum((jnp.sum(~jnp.isfinite(x)) for x in chains(*rows[1:])), jnp.zeros((), jnp.int32))
            return loss, aux, grads, bad.astype(jnp.result_type(loss))  # a count: exact in the float sum

        # a sharded step: every device its own rows, loss, metrics, gradient and guard in one all-reduce
        reduced = None if k_loss is not None or not all(t.row_mean for t in self.loss) else \
            blockwise_mean(blockwise, state.params, (batch, x_pos, x_neg))
        if reduced is not None:
            loss, aux, grads, bad = reduced
            finite = bad == 0
        else:
            (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params,
                                                                           Phases(batch, x_pos, x_neg, k_loss))
            finite = jnp.asarray(True)
            for x in chains(x_pos, x_neg):
                finite = all_finite(x) & finite
        guarded, ok = apply_gradients(state, grads, loss, self.optimizer, buffer, key, finite)
        if positive_state is not None:  # the phase's chains move on only with a finite step, like the buffer
            guarded = guarded._replace(positive=jax.tree.map(lambda n, o: jnp.where(ok, n, o), positive_state,
                                                             state.positive))
        if self.negative is None and "energy_pos" not in aux:  # MCMC-free: E(x⁺) as a health signal
            aux["energy_pos"] = self.energy.with_params(theta).energy(x_pos).mean()
        metrics = training_metrics(loss, grads, ok, **{**positive_metrics, **phase_metrics, **aux})
        return guarded, metrics
