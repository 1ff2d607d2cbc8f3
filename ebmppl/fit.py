"""``fit``: the training driver — progress bar, callbacks, checkpoints, resume, divergence guard.

It wraps a pure :class:`~ebmppl.objectives.Trainer` without hiding it: steps
are fused into jitted ``lax.scan`` chunks; between chunks the driver updates
the progress bar, calls callbacks and writes checkpoints. Batches are drawn
inside the scan from a key derived from the training state, so a run resumed
from a checkpoint continues to exactly, bit for bit, the result of an
uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import itertools
import json
import numbers
import pathlib
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from tqdm.auto import tqdm

from ebmppl._deprecation import UNSET, moved
from ebmppl._validation import check_energy, check_examples, check_int, check_key, is_key
from ebmppl.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from ebmppl.distributed import broadcast_bytes, is_primary, on_primary, primary_flag, process_count, to_host
from ebmppl.ema import _check_decay, _ema_states, ema_params, with_ema
from ebmppl.energy import Energy
from ebmppl.health import BUILDERS, TrainingHealth, builder_call
from ebmppl.io import energy_metadata
from ebmppl.objectives import OBJECTIVES, Objective, Trainer, TrainState
from ebmppl.recipes import resolve_recipe
from ebmppl.sharding import check_divisible, constrain_leading, leading_axis, replicate, resolve_mesh

__all__ = ["fit", "FitResult", "TrainingDiverged", "CHECKPOINT_NAME"]

Callback = Callable[[int, TrainState, dict[str, np.ndarray]], Any]


class TrainingDiverged(FloatingPointError):
    """Training produced a non-finite loss, gradient, negative sample or parameter.

    The message says which quantity went non-finite first and what to change.

    Examples
    --------
    >>> e = Energy(lambda p, x: -p * jnp.sum(x**2), jnp.ones(()), event_shape=(2,))  # not normalisable
    >>> try:
    ...     fit(e, jax.random.key(0), jnp.zeros((64, 2)), num_steps=200, progress_bar=False,
    ...         sampler_params={"step_size": 1.0, "noise_scale": 0.1})
    ... except TrainingDiverged as err:
    ...     print(type(err).__name__, "|", str(err).split(";")[0][:40])
    TrainingDiverged | ...
    """


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes
    ----------
    energy
        The energy with the trained parameters; when the optimizer keeps a
        moving average of them (``fit(ema=...)`` or an optimizer wrapped in
        :func:`ebmppl.ema.with_ema`), with that average, which is then what
        sampling and evaluation of ``result.energy`` use.
    state
        The final :class:`~ebmppl.objectives.TrainState` (params, optimizer, buffer, key, step);
        ``state.params`` are the last (raw) parameters, the average is
        ``ebmppl.ema.ema_params(state.opt_state)``.
    history
        Per-step metrics, each an array of length ``num_steps`` (steps of a
        resumed run included when the checkpoint carried them).
    seconds
        Wall-clock training time of this call, compile time included.
    recipe
        The recipe used (``"density"``, ``"images"`` or ``"none"``; see :mod:`ebmppl.recipes`).
    health
        The :class:`~ebmppl.health.TrainingHealth` that watched the run
        (``fit(health=...)``; ``None`` with ``health=False``): ``health.warnings``,
        ``health.plot()``.
    raw_energy
        The energy with the last parameters of training, not averaged (the
        ones the training negatives were drawn with); the same as ``energy``
        without an EMA.

    Examples
    --------
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))
    >>> result = fit(e, jax.random.key(0), jnp.ones((64, 2)), num_steps=20, chunk_size=10, progress_bar=False,
    ...              sampler_params={"step_size": 0.05, "noise_scale": 0.3})
    >>> int(result.state.step), result.history["loss"].shape, "energy_pos" in result.history
    (20, (20,), True)
    """

    energy: Energy
    state: TrainState
    history: dict[str, np.ndarray]
    seconds: float
    recipe: str = "none"
    health: Any = None
    raw_energy: Energy | None = None


def _default_optimizer(num_steps: int = 2000, peak: float = 1e-3) -> optax.GradientTransformation:
    # Adam without momentum on the first moment (beta1 = 0), as is usual for EBMs
    # whose negatives change every step (Du & Mordatch 2019); learning rate `peak` for
    # the first half, then a cosine decay to peak/10, which averages out minibatch noise.
    # Discrete energies (Ising couplings, RBM weights) take peak 1e-2: at 1e-3 a 12-bit RBM ended
    # 0.9 nats per example short of its MLE after 2000 steps (a stranger's check; 1e-2: 0.1 nats).
    half = num_steps // 2
    schedule = optax.join_schedules(
        [optax.constant_schedule(peak), optax.cosine_decay_schedule(peak, max(1, num_steps - half), alpha=0.1)], [half])
    return optax.adam(schedule, b1=0.0, b2=0.999)


def _data_event_shape(objective: Any, data: Any) -> tuple[int, ...] | None:
    """The event shape of one example: ``None`` (the energy's), or the data's own when the objective's positive
    phase reads observations of a model (``ebmppl.models.mcem``; the model checks them)."""
    if not getattr(getattr(objective, "positive", None), "observes_model", False):
        return None
    x = data[0] if isinstance(data, (tuple, list)) and len(data) == 2 else data
    return tuple(np.shape(x))[1:] if isinstance(x, (np.ndarray, jax.Array)) else None


def _as_data(data: Any, energy: Energy, event_shape: tuple[int, ...] | None = None) -> jax.Array | None:
    shape = tuple(energy.event_shape) if event_shape is None else tuple(event_shape)
    if isinstance(data, list) and len(data) == 2 and all(isinstance(d, (np.ndarray, jax.Array)) for d in data):
        # [x, y] / [x, mask] means (x, y) / (x, mask), not two batches (which share dtype and event shape)

        def batch(a):
            return (np.ndim(a) == len(shape) + 1 and np.shape(a)[1:] == shape and a.dtype != np.bool_
                    and (len(shape) > 0 or not np.issubdtype(a.dtype, np.integer)))

        if batch(data[0]) and not batch(data[1]):
            data = tuple(data)
    if isinstance(data, (np.ndarray, jax.Array)):
        return check_examples("data", data, shape, None, "remove or impute those rows before fitting.")
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(d, (np.ndarray, jax.Array)) for d in data):
        # (examples, labels), for objectives that use labels (JEM)
        x = check_examples("data[0]", data[0], shape, None, "remove or impute those rows.")
        y = jnp.asarray(data[1])
        if y.dtype == jnp.bool_ and y.shape == x.shape:  # an observation mask (recovery_cd)
            return (x, y)
        if y.shape == (x.shape[0],) and not jnp.issubdtype(y.dtype, jnp.integer):
            raise ValueError(f"data[1] must be integer labels (class indices in [0, num_classes)), got {y.dtype}: "
                             "pass y.astype(int) (or np.unique(y, return_inverse=True)[1] for other class values).")
        if y.shape == x.shape:
            raise ValueError(f"data[1] has the examples' shape, so it reads as an observation mask, which must be "
                             f"boolean; got {y.dtype}: pass mask.astype(bool).")
        if y.shape != (x.shape[0],):
            raise ValueError(f"data[1] must be labels of shape ({x.shape[0]},) (integer class indices, for JEM) or a "
                             f"boolean observation mask of shape {x.shape} (for 'recovery_cd'), got "
                             f"{y.dtype}{list(y.shape)}.")
        return (x, y)
    return None


_EXAMPLES_ONLY = ("cd", "dsm", "ssm", "nce", "pseudo_likelihood", "ratio_matching", "sm", "ed", "multiscale_dsm",
                  "drl")  # examples, not tuples
_CONTINUOUS_ONLY = ("dsm", "ssm", "nce", "sm", "ed", "multiscale_dsm", "drl")  # objectives that need gradients in x or a continuous noise density


def _discrete_plan(energy: Energy, recipe: str, objective: Any, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A discrete energy's recipe and options: recipe ``"none"``; CD's negatives from a discrete sampler
    (:data:`~ebmppl.objectives.discrete.DEFAULT_DISCRETE_SAMPLER` unless given) over a replay buffer whose
    starts are uniform on the support; the continuous-only objectives refused with the names that apply."""
    from ebmppl.buffer import replay_buffer, support_noise
    from ebmppl.objectives.discrete import DEFAULT_DISCRETE_SAMPLER

    if recipe not in ("auto", "none"):
        raise ValueError(f"recipe={recipe!r} scales continuous data; the energy's support is discrete "
                         f"({energy.support!r}): pass recipe='auto' (or 'none').")
    if isinstance(objective, str) and objective in _CONTINUOUS_ONLY:
        raise ValueError(f"objective {objective!r} needs a continuous energy; for a discrete one use 'cd' (discrete "
                         "negatives), 'pseudo_likelihood' or 'ratio_matching' (binary).")
    options = dict(options)
    if isinstance(objective, str) and objective == "cd":
        options.setdefault("sampler", DEFAULT_DISCRETE_SAMPLER)
        options.setdefault("chain_init", replay_buffer(noise=support_noise(energy.support)))
    return "none", options


def _user_row_mean_terms(trainer: Trainer) -> bool:
    """Whether the trainer's loss runs block by block on devices because of a term defined outside ebmppl."""
    terms = getattr(trainer, "loss", None)
    if not isinstance(terms, tuple) or not hasattr(trainer, "check_row_means"):
        return False
    inner = [getattr(t, "term", t) for t in terms]  # Scaled(term, weight): the term's own module
    return all(t.row_mean for t in terms) and any(not type(t).__module__.startswith("ebmppl.") for t in inner)


def _check_trainer_data(trainer: Trainer, data: Any) -> None:
    """Tuple data for an examples-only objective is an error naming the fix; then the trainer's own check."""
    if isinstance(data, tuple) and trainer.name in _EXAMPLES_ONLY:
        kind = "an observation mask" if data[1].dtype == jnp.bool_ else "labels"
        raise ValueError(
            f"objective {trainer.name!r} takes examples only, but data is a tuple (examples, {kind}). Pass the "
            "examples alone (data[0]); to train with labels use a JEM trainer, "
            "objective=ebmppl.jem.jem_hybrid(joint, optimizer); for an observation mask use objective='recovery_cd'.")
    check = getattr(trainer, "check_data", None)
    if check is not None and data is not None:
        check(data)


def _warn_if_binary(x: Any) -> None:
    """A continuous energy fitted to data whose every value is 0/1 (or ±1): most likely a forgotten support=."""
    if not isinstance(x, (np.ndarray, jax.Array)) or np.ndim(x) < 2 or np.shape(x)[0] < 10:
        return
    values = np.unique(np.asarray(x[:4096]))
    if values.size == 2 and (set(values.tolist()) <= {0.0, 1.0} or set(values.tolist()) == {-1.0, 1.0}):
        low, high = values.tolist()
        name = "BINARY" if low == 0 else "SPINS"
        warnings.warn(f"data take only the values {low:g} and {high:g}, but the energy is continuous (support REAL): "
                      "fit trains a density over real x. If these are discrete states, declare "
                      f"Energy(..., support=ebmppl.support.{name}) (or use ebmppl.discrete's ising / rbm), and fit "
                      "trains a discrete model with discrete negatives.", UserWarning, stacklevel=4)


def _check_support(energy: Energy, data: Any) -> None:
    """Data of a discrete energy must lie on its support (whatever the trainer checks itself)."""
    support = getattr(energy, "support", None)
    if data is None or not getattr(support, "is_discrete", False):
        return
    from ebmppl.objectives.discrete import check_on_support

    check_on_support(data[0] if isinstance(data, tuple) else data, support, tuple(energy.event_shape))


def _check_metrics(metrics: dict[str, np.ndarray]) -> None:
    missing = [k for k in ("loss", "finite") if k not in metrics]
    if missing:
        raise TypeError(f"the Trainer's step returned metrics without {missing}; the Trainer contract needs "
                        "'loss' (scalar) and 'finite' (bool: False when the step produced non-finite values).")


def _postfix(metrics: dict[str, np.ndarray]) -> dict[str, str]:
    """The progress bar's fields: the loss, and the energies when the objective reports them."""
    shown = {"loss": ("loss", ".3f"), "energy_pos": ("e_pos", ".2f"), "energy_neg": ("e_neg", ".2f")}
    return {label: f"{float(np.ravel(metrics[k])[-1]):{fmt}}" for k, (label, fmt) in shown.items() if k in metrics}


def _energy_leaf_indices(trainer: Trainer, state: TrainState, uses_ema: bool = False) -> list[int] | None:
    """Positions of the energy's parameters among the state's leaves (None if the Trainer derives them);
    with ``uses_ema``, of the averaged parameters in the optimizer state (what ``fit`` returns)."""
    by_id = {id(leaf): i for i, leaf in enumerate(jax.tree.leaves(state))}
    try:
        params = ema_params(state.opt_state, state.params) if uses_ema else state.params
        leaves = jax.tree.leaves(trainer.energy_params(params))
    except Exception:  # a custom energy_params: nothing recorded, the checkpoint still loads with like=
        return None
    indices = [by_id.get(id(leaf)) for leaf in leaves]
    return None if any(i is None for i in indices) else indices


def _has_chains(trainer: Any) -> bool | None:
    """Whether the trainer runs chains whose energies CD contrasts with the data's (negative chains, recovery or
    posterior chains, DRL's recovery runs); ``None`` for a Trainer that is no Objective (judged by its name)."""
    if not isinstance(trainer, Objective):
        return None
    from ebmppl.objectives import DataPhase, RecoveryLikelihood

    return (trainer.negative is not None or not isinstance(trainer.positive, DataPhase)
            or any(isinstance(term, RecoveryLikelihood) for term in trainer.loss))


def _default_health(health: Any, energy: Energy, num_steps: int, chunk_size: int,
                    advice_for: str = "fit", trainer: Any = None) -> TrainingHealth | None:
    """``fit(health=True)``: a TrainingHealth whose window and grace fit the run's number of checks, whose
    advice names the options that apply (``advice_for``: fit's, the density recipe's, or a Trainer's builder);
    ``trainer`` says whether the objective has negative chains (only then are runaway energies and CD gaps judged)."""
    name = getattr(trainer, "name", None)
    name = name if isinstance(name, str) else None
    if isinstance(health, TrainingHealth):  # the user's: what it leaves unset is filled in
        if health.objective is None:
            health.objective = name
        if health.chains is None:
            health.chains = _has_chains(trainer)
        return health
    if health is False or health is None:
        return None
    if health is not True:
        raise TypeError(f"health must be True, False or an ebmppl.health.TrainingHealth, got {type(health).__name__}.")
    checks = -(-num_steps // chunk_size)
    window = max(4, min(20, checks // 4))
    return TrainingHealth(energy, window=window, grace=window, advice_for=advice_for, objective=name,
                          chains=_has_chains(trainer))


def _check_objective_options(objective: str, options: dict[str, Any]) -> None:
    """An option the named objective's builder does not take is a TypeError listing the options it does take."""
    params = inspect.signature(OBJECTIVES[objective]).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    named = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    valid = [p.name for p in params if p.kind in named and p.name not in ("energy", "optimizer")]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        s = "s" if len(unknown) > 1 else ""
        raise TypeError(f"unknown option{s} {', '.join(map(repr, unknown))} for objective {objective!r}; its options "
                        f"are {', '.join(valid) if valid else '(none)'}, besides fit's own (num_steps, batch_size, "
                        "optimizer, ema, ...).")


# |x| beyond this in the data a trainer sees: far from the unit scale its default steps and penalties assume
# (standardised data stay within ~5; a batch of images in [0, 255] or raw measurements in the thousands do not)
_LARGE_DATA = 20.0


def _advice(metrics: dict[str, np.ndarray], trainer: bool = False, name: str | None = None,
            data_magnitude: float | None = None, iterator: bool = False) -> str:
    acc = float(np.asarray(metrics.get("acceptance_rate", np.nan)))
    seen = f" (sampler acceptance {acc:.2f})" if np.isfinite(acc) else ""
    alpha = "alpha"
    scale = ""
    if data_magnitude is not None and data_magnitude > _LARGE_DATA:
        where = ("the batch it diverged on" if iterator else "the data the trainer sees")
        how = ("batches from an iterator are used as they come (only one array under recipe='density' is "
               "standardised); standardise them, (x - mean) / std, or pass the data as one array"
               if iterator else "standardise it, (x - mean) / std, or use objective='cd' with recipe='density', "
               "which does")
        scale = (f" First, the data's scale: {where} has entries up to |x| = {data_magnitude:.3g}, far from the unit "
                 f"scale the default steps assume; {how}.")
    if trainer:  # fit's options do not reach a Trainer: name its builder's (ebmppl.health.BUILDERS)
        drl = name == "drl"  # no sampler_params, no alpha, no clipping: its step is step_scale
        call = builder_call(name, "step_scale=0.05" if drl else "sampler_params={'step_size': ...}")
        step = (("lower the sampler step scale where the Trainer was built (" if drl else
                 "lower the sampler step size or clip its gradient where the Trainer was built (")
                + (call or "e.g. jem_hybrid(joint, optimizer, sampler_params={'step_size': ...})") + ")")
        optimizer = "optax.adam(1e-4)" if drl else "optax.adam(1e-4, b1=0.0)"
        lr = ("lower the learning rate of the optimizer the Trainer was built with"
              + (f" ({builder_call(name, optimizer=optimizer)})" if name in BUILDERS else ""))
        alpha = None if drl else "the builder's alpha"
    else:
        step = ("lower the sampler step size (sampler_params={'step_size': ...}) or clip its gradient, or let the "
                "step adapt (target_acceptance=0.6, the default of recipe='density')")
        lr = "lower the learning rate (optimizer=optax.adam(1e-4, b1=0.0))"
    last = ("" if alpha is None else
            f"; only as a last resort raise the energy penalty {alpha} (e.g. 0 -> 0.1, or 0.1 -> 1.0) to keep "
            "energies bounded (a regulariser: it biases the fitted density towards flatter)")
    return (
        "Training diverged (non-finite loss, gradient, negatives or parameters) at step "
        f"{int(metrics['step'])}{seen}. The state before that step is kept and the last good checkpoint is intact. "
        "Usually the energy sharpened faster than the sampler followed it, or the sampler's step is far too large "
        f"for the energy.{scale} To fix it, in order of what works: {step}; {lr}{last}."
    )


def fit(
    energy: Energy,
    key: jax.Array = UNSET,
    data: jax.Array | np.ndarray | Iterable[Any] = UNSET,
    /,
    *,
    num_steps: int = 2000,
    batch_size: int = 128,
    objective: str | Trainer = "cd",
    optimizer: optax.GradientTransformation | None = None,
    chunk_size: int = 50,
    checkpoint_dir: str | pathlib.Path | None = None,
    checkpoint_every: int = 500,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: Sequence[Callback] = (),
    progress_bar: bool = True,
    config: dict[str, Any] | None = None,
    devices: Sequence[jax.Device] | int | str | Mesh | None = "auto",
    recipe: str = "auto",
    health: bool | Any = True,
    ema: float | None = None,
    **objective_options: Any,
) -> FitResult:
    """Fit the parameters of ``energy`` to ``data`` by maximum likelihood.

    Parameters
    ----------
    energy
        The :class:`~ebmppl.Energy` to train; its ``params`` are the starting point.
    key
        PRNG key; the same key gives the same run. The 2nd positional
        argument, as in every random entry point of ebmppl (``key=`` and
        ``data=`` as keywords work too). The old form ``fit(energy, data,
        key=key)`` still works for one release, with a deprecation warning.
    data
        Training examples ``(n, *event_shape)`` (batches are drawn uniformly
        with replacement inside the compiled loop), a tuple (or a list of two
        arrays) ``(examples, labels)`` for a trainer that uses labels (a JEM:
        ``objective=ebmppl.jem.jem_hybrid(joint, optimizer)``; labels are integers
        in ``[0, num_classes)``) or ``(examples, observed_mask)`` for incomplete
        data (``"recovery_cd"``), or an iterable of batches ``(batch,
        *event_shape)`` (then one jitted step per batch). ``"cd"``, ``"dsm"``,
        ``"ssm"`` and ``"nce"`` take examples only. For
        ``objective=ebmppl.models.mcem(...)`` the data are the model's
        observations (any event shape), with the examples' indices
        ``(x, jnp.arange(n))`` when its posterior chains are persistent.
    num_steps
        Total optimisation steps (a resumed run continues up to this count).
    batch_size
        Examples per step when ``data`` is an array.
    objective
        ``"cd"`` (contrastive divergence), ``"dsm"`` (denoising score matching),
        ``"ssm"`` (sliced score matching), ``"nce"`` (noise-contrastive
        estimation), ``"recovery_cd"`` (CD on incomplete data),
        ``"pseudo_likelihood"`` and ``"ratio_matching"`` (discrete energies;
        :mod:`ebmppl.objectives.discrete`), ``"sm"`` (exact score matching,
        low dimension), ``"ed"`` (energy discrepancy), and for a
        noise-conditional energy (:mod:`ebmppl.noise`) ``"multiscale_dsm"``
        (multi-σ denoising score matching; ``continuous=True`` draws σ
        log-uniformly, as the probability-flow ODE needs) and ``"drl"``
        (diffusion recovery likelihood). Only ``"cd"`` standardises the data
        (its ``"density"`` recipe): for the others standardise by hand or
        choose a noise ladder to the data's scale. Or a trainer:
        an :class:`~ebmppl.objectives.Objective` (what the builders return, or
        one you compose from your own loss terms) or any
        :class:`~ebmppl.objectives.Trainer`; it carries its optimizer and
        options. Objectives hash by value, so an equal one reuses the
        compiled steps of an earlier call. ``fit`` relies only on the
        Trainer contract: ``metrics`` with ``loss`` and ``finite``; other
        metrics (``energy_pos``, ...) are recorded and shown when present.
    optimizer
        Optax transformation for a named objective; default Adam (``b1=0``) at
        1e-3 for the first half of ``num_steps``, then a cosine decay to 1e-4.
        With a :class:`~ebmppl.objectives.Trainer` it is an error (the
        Trainer was built with its own optimizer).
    chunk_size
        Steps fused per compiled call (progress and callbacks between chunks).
    checkpoint_dir
        Folder for ``checkpoint.ebm``; ``None`` writes none. A folder that
        already holds a checkpoint is refused unless ``resume`` or
        ``overwrite`` is set. Each checkpoint also records the energy, so
        :func:`ebmppl.load` reads the trained energy from the folder. Under
        ``jax.distributed`` every process gathers the state and process 0
        alone writes (and shows the progress bar); on ``resume`` process 0
        reads the checkpoint and sends it to every process, so no shared
        filesystem is needed (see :mod:`ebmppl.distributed`).
    checkpoint_every
        Steps between checkpoints (rounded up to a multiple of ``chunk_size``).
    resume
        Continue from the checkpoint in ``checkpoint_dir`` if there is one.
        With array data the resumed run is bit-identical to an uninterrupted
        one. With an iterable of batches, pass the same sequence again from
        its start (a list, or a freshly created generator): ``fit`` skips the
        batches the checkpointed steps consumed, and the result is then
        bit-identical too.
    overwrite
        Replace the checkpoint that ``checkpoint_dir`` already holds (it is
        deleted before training starts).
    callbacks
        ``callback(step, state, metrics)`` after each chunk (``metrics``: that
        chunk's per-step arrays); return ``True`` to stop early. On in-memory
        data the next chunk is already computing while callbacks run (the
        devices never wait for the host); stopping discards it, and the
        result is the state the callback saw.
    progress_bar
        Show a tqdm bar with the latest loss and energies.
    config
        JSON-serialisable description of the run stored in every checkpoint.
    devices
        Shard the batch and the negative chains across devices. Default
        ``"auto"``: every device where it pays — on a CPU ``import ebmppl``
        makes one JAX device per core (``EBMPPL_CPU_DEVICES=1`` opts out),
        and the batch is split over the most devices that give each at
        least ``ebmppl.sharding.AUTO_MIN_PER_DEVICE`` examples (fewer: one
        device). ``None`` (or ``1``): one device. Or ``"all"``, a count, a
        list of devices or a one-axis ``Mesh`` (see :mod:`ebmppl.sharding`);
        then ``batch_size`` must be a multiple of the device count.
        Parameters are replicated and their gradients all-reduced: the
        result equals one device's to floating-point reduction order.
        Array data only.
    recipe
        The scale-dependent defaults (:mod:`ebmppl.recipes`); an energy on a
        discrete support (``energy.support``, :mod:`ebmppl.support`) always
        trains under ``"none"``: CD's negatives come from
        ``"gibbs_with_gradients"`` unless ``sampler=`` names another discrete
        sampler, over a replay buffer whose starts are uniform on the support,
        with no energy penalty (``alpha=0``); the data must lie on the support
        (0/1 data for a ±1 energy is a ``ValueError`` naming the map). ``"auto"``
        (default): ``"images"`` for data of event rank >= 2, ``"density"`` for
        other array data with ``objective="cd"`` when you pass no ``sampler``,
        ``sampler_params`` or ``chain_init``, else ``"none"``. ``"density"``
        standardises the data per coordinate, adds a weak Gaussian confinement
        (3 standard deviations wide) so ``exp(-E)`` is normalisable, samples
        negatives with MALA (step 0.03 standard deviations, shrunk during
        training to keep acceptance near 0.6 as the energy sharpens:
        ``target_acceptance``, ``history["step_size"]``) and adds no energy penalty (``alpha=0``: maximum
        likelihood, unbiased); ``result.energy`` is then the fitted density on the
        ORIGINAL scale (standardisation and its log-Jacobian included): use it,
        not ``energy.with_params(result.energy.params)``. ``"images"``:
        Langevin step 10, noise 0.005, clamped to the data range. ``"none"``:
        the energy as given, missing sampler and buffer chosen from the data's
        scale. Under ``"images"`` and ``"none"`` CD keeps its penalty
        ``alpha=0.1``, a regulariser that biases the density towards flatter
        (see :func:`~ebmppl.objectives.contrastive_divergence`). With any
        recipe, the settings of the negative-phase sampler are stored on
        ``result.energy.sampler_settings`` (and in checkpoints and saved
        files), where later samplers take their defaults from
        (:func:`ebmppl.latent.short_run_generator`).
    health
        ``True`` (default): watch CD training with a
        :class:`~ebmppl.health.TrainingHealth` sized to the run, which issues a
        :class:`~ebmppl.health.HealthWarning` on a flat (collapsed) energy,
        non-mixing chains, bad acceptance or runaway energies; ``False``: off;
        or your own ``TrainingHealth``. Returned as ``result.health``. It
        watches the training chains, so it probes the raw parameters that
        drew them, with or without ``ema``.
    ema
        Keep an exponential moving average of the parameters with this decay
        in ``[0, 1)`` (``0.99``: about the last 100 steps; ``0.999``: the last
        1000), debiased:
        the optimizer is wrapped in :func:`ebmppl.ema.with_ema` (a named
        objective only; for a Trainer wrap the optimizer you build it with,
        which ``fit`` detects as it does one you pass wrapped). Training is
        unchanged (its negatives come from the current parameters); the
        returned ``result.energy`` uses the average, for sampling and
        evaluation, and ``result.raw_energy`` the last parameters. The average
        is part of the optimizer state, so checkpoints carry it (a resumed run
        ends bit-identical) and :func:`ebmppl.load` of ``checkpoint_dir``
        reads the averaged energy. A decay whose average reaches far into the
        first half of the run is warned about. Keep ``1 / (1 - ema)`` a small
        fraction of ``num_steps``: on digits CD with the default schedule over
        3000 steps, ``ema=0.99`` helped a little and ``0.999`` lost 2 nats per
        digit (it lags a model still improving); with a constant learning rate
        both helped by 7 to 10 nats (``docs/benchmarks/ema.md``).
    **objective_options
        Passed to the objective builder, e.g. ``sampler="mala"``,
        ``num_mcmc_steps=20``, ``alpha=0.1``, ``chain_init=buffer.short_run()``;
        one the builder does not take is a TypeError listing those it takes.
        ``sampler=samplers.parallel_tempering(...)`` gives tempered negatives
        that learn the weights of separated modes: its reference is set from
        the data (mean, 2 sd per coordinate) unless ``sampler_params`` gives
        ``reference_mean`` / ``reference_scale``, and its ladder and per-level
        steps adapt during training (``result.state.buffer.sampler_state``,
        ``history["swap_acceptance"]``; guide *Tempered negatives in
        contrastive divergence*; take ``num_mcmc_steps`` ≥ 10).

    Returns
    -------
    FitResult

    Raises
    ------
    TrainingDiverged
        A step produced non-finite values; the message says what to change.
    CheckpointError
        ``resume=True`` and the checkpoint is damaged or belongs to another model.
    FileExistsError
        ``checkpoint_dir`` already holds a checkpoint and neither ``resume`` nor
        ``overwrite`` is set.
    TypeError, ValueError
        Before any training: ``callbacks`` not a list of functions, a
        ``config`` JSON cannot store, a ``checkpoint_dir`` that is a file, no
        examples, a Python list of rows as ``data`` (pass ``np.asarray``).

    Warns
    -----
    UserWarning
        ``resume=True`` from a checkpoint already past ``num_steps`` (its
        state is returned untrained).

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from ebmppl import Energy, fit, samplers
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum(((x - p["m"]) * jnp.exp(p["s"])) ** 2),
    ...            {"m": jnp.zeros(2), "s": jnp.zeros(2)}, event_shape=(2,))
    >>> data = 3.0 + jax.random.normal(jax.random.key(0), (512, 2))
    >>> result = fit(e, jax.random.key(1), data, num_steps=300, progress_bar=False,
    ...              optimizer=optax.adam(5e-2), sampler=samplers.mala(step_size=0.5), num_mcmc_steps=5)
    >>> bool(jnp.allclose(result.energy.params["m"], 3.0, atol=0.3))
    True
    """
    check_energy(energy)
    key, data = _key_and_data(key, data, objective_options)
    for name, value in (("num_steps", num_steps), ("batch_size", batch_size), ("chunk_size", chunk_size),
                        ("checkpoint_every", checkpoint_every)):
        check_int(name, value, 1)
    if ema is not None:
        ema = _check_decay(ema, "ema")
        _warn_if_ema_lags(ema, num_steps)
    callbacks = _check_callbacks(callbacks)
    _check_run_options(config, checkpoint_dir, data)
    # the recipe (ebmppl.recipes) fills the scale-dependent defaults; under "density" the trainer sees
    # standardised data and a confined energy, and plan.output maps the result back to the data's scale
    if getattr(getattr(energy, "support", None), "is_discrete", False):
        recipe, objective_options = _discrete_plan(energy, recipe, objective, objective_options)
    elif data is not None:  # before any recipe rescales it: 0/1 data for a continuous energy is a forgotten support=
        _warn_if_binary(data[0] if isinstance(data, tuple) else data)
    plan = resolve_recipe(recipe, energy, _as_data(data, energy, _data_event_shape(objective, data)), objective,
                          objective_options)
    energy, objective_options = plan.train_energy, plan.options
    if isinstance(objective, str):
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join(sorted(OBJECTIVES))}.")
        peak = 1e-2 if getattr(getattr(energy, "support", None), "is_discrete", False) else 1e-3
        opt = optimizer or _default_optimizer(num_steps, peak)
        if ema is not None:
            if _ema_states(jax.eval_shape(opt.init, energy.params)):
                raise ValueError("ema: the optimizer already keeps a moving average of the parameters (with_ema); "
                                 "pass ema=None (fit uses the average it finds) or the unwrapped optimizer.")
            try:
                opt = _with_ema_cached(opt, ema)
            except TypeError:  # an unhashable optimizer: wrapped afresh (its steps compile per call)
                opt = with_ema(opt, ema)
        _check_objective_options(objective, objective_options)
        trainer = OBJECTIVES[objective](energy, opt, **objective_options)
    else:
        if objective_options:
            raise TypeError(f"options {sorted(objective_options)} apply to a named objective, not to a Trainer.")
        if optimizer is not None:
            raise TypeError("optimizer applies to a named objective, not to a Trainer: the Trainer was built with "
                            "its own optimizer (pass it to the builder, e.g. contrastive_divergence(energy, optimizer)).")
        if ema is not None:
            raise TypeError("ema applies to a named objective, not to a Trainer: wrap the optimizer the Trainer is "
                            "built with, e.g. contrastive_divergence(energy, ebmppl.ema.with_ema(optimizer, "
                            f"{ema})); fit then uses the average it finds.")
        if not isinstance(objective, (Objective, Trainer)):
            raise TypeError(f"objective must be a name ({', '.join(sorted(OBJECTIVES))}), an ebmppl.objectives."
                            f"Objective or an ebmppl.objectives.Trainer, got {type(objective).__name__}.")
        trainer = objective
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir: the folder holding checkpoint.ebm.")
    if resume and overwrite:
        raise ValueError("pass resume=True (continue the checkpoint) or overwrite=True (replace it), not both.")
    data_array = plan.data
    _check_trainer_data(trainer, data_array)
    _check_support(energy, data_array)
    if data_array is None and not isinstance(data, Iterable):
        raise TypeError(f"data must be an array (n, *event_shape) or an iterable of batches, got {type(data).__name__}.")
    auto_without_array = isinstance(devices, str) and devices == "auto" and data_array is None
    mesh = resolve_mesh(None if auto_without_array else devices, size=batch_size)
    if mesh is not None:
        if data_array is None:
            raise ValueError("devices= needs array data (n, *event_shape); a batch iterator is not sharded.")
        check_divisible("batch_size", batch_size, mesh)
    checkpoint_every = -(-checkpoint_every // chunk_size) * chunk_size
    ckpt_path = pathlib.Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    # under jax.distributed process 0's disk decides (a collective; no shared filesystem needed), and it alone writes
    ckpt_bytes = _read_on_primary(ckpt_path) if ckpt_path is not None and resume else None
    if ckpt_path is not None and not resume and primary_flag(ckpt_path.exists()):
        if not overwrite:
            raise FileExistsError(f"{checkpoint_dir} already holds a checkpoint ({CHECKPOINT_NAME}) of an earlier run; "
                                  "pass resume=True to continue it, overwrite=True to replace it, or another "
                                  "checkpoint_dir.")
        on_primary(ckpt_path.unlink, missing_ok=True)

    state = trainer.init(key, energy.params)
    # an EMA of the parameters in the optimizer state (fit(ema=...) or the user's with_ema): the result's energy
    uses_ema = bool(_ema_states(state.opt_state))
    if uses_ema:
        ema_params(state.opt_state, state.params)  # an ambiguous average is an error now, not after training
    history: dict[str, list[np.ndarray]] = {}
    if ckpt_bytes is not None:  # every process parses process 0's bytes: the same state everywhere
        state, _meta, saved_history = load_checkpoint(ckpt_path, state, with_extras=True, data=ckpt_bytes)
        history = {k: [v[: int(state.step)]] for k, v in saved_history.items()}
        if int(state.step) > num_steps:
            warnings.warn(f"resume=True: the checkpoint in {checkpoint_dir} is at step {int(state.step)}, past "
                          f"num_steps={num_steps}; nothing is trained and the checkpoint's state is returned as it "
                          "is (fit does not roll back). Pass a larger num_steps to train on.", UserWarning,
                          stacklevel=2)

    batches = None
    if data_array is None:  # skip the batches the checkpointed steps consumed: a resumed run sees the same ones
        batches = itertools.islice(iter(data), int(state.step), None)
    state, data_array = replicate(state, mesh), replicate(data_array, mesh)
    if mesh is not None and mesh.size > 1 and _user_row_mean_terms(trainer):
        with leading_axis(mesh):  # a user's row_mean declaration, checked once on the first rows
            first = jax.tree.map(lambda a: constrain_leading(a[:batch_size]), data_array)
            trainer.check_row_means(state.params, first)

    energy_meta = energy_metadata(plan.output(energy.params)) if ckpt_path is not None else None

    def save(state):
        meta = {"step": int(state.step), "num_steps": num_steps, "config": config or {}}
        leaf_indices = _energy_leaf_indices(trainer, state, uses_ema)
        if leaf_indices is not None:  # ebmppl.load(checkpoint_dir) reads the trained energy from here
            meta["energy"] = {**energy_meta, "leaf_indices": leaf_indices}
        save_checkpoint(ckpt_path, state, meta, extras={k: np.concatenate(v) for k, v in history.items()})

    committed: dict[str, TrainState | None] = {"state": None}

    def run_chunks(state: TrainState) -> TrainState:
        step = int(state.step)

        def dispatch(state, step):
            # asynchronous: returns at once with the chunk's outputs still being computed
            n = min(chunk_size, num_steps - step)
            return (*_run_chunk(trainer, batch_size, n, mesh, state, data_array), n)

        # On in-memory data the next chunk is dispatched before this chunk's metrics are read: the devices
        # compute while the host checks, records and checkpoints (a GPU otherwise idles at every chunk
        # boundary). The chunk in flight when training stops (a callback, a divergence) is discarded unread.
        pending = dispatch(state, step) if batches is None and step < num_steps else None
        while step < num_steps:
            previous = state
            if pending is not None:
                state, metrics, n = pending
                step += n
                pending = dispatch(state, step) if step < num_steps else None
                magnitude = None
            else:
                n = min(chunk_size, num_steps - step)
                state, metrics, magnitude = _run_batches(trainer, state, batches, n, energy)
                step = int(state.step)
            metrics = to_host(metrics)  # replicated scalars: no communication
            _check_metrics(metrics)
            if not metrics["finite"].all():
                first = int(np.argmin(metrics["finite"]))
                bar.close()
                if batches is None:  # the data as the trainer sees it (standardised under recipe="density")
                    magnitude = _magnitude(plan.data)
                raise TrainingDiverged(_advice({k: v[first] for k, v in metrics.items()},
                                               trainer=not isinstance(objective, str),
                                               name=getattr(objective, "name", None),
                                               data_magnitude=magnitude, iterator=batches is not None))
            for k, v in metrics.items():
                history.setdefault(k, []).append(v)
            committed["state"] = state  # metrics recorded: safe to checkpoint on interruption
            bar.update(step - int(previous.step))
            bar.set_postfix(_postfix(metrics))
            saved = False
            if ckpt_path is not None and (step % checkpoint_every == 0 or step >= num_steps):
                save(state)
                saved = True
            # callbacks run after the checkpoint, so an interruption inside one loses nothing
            # a list, not a generator: every callback runs even when an earlier one asks to stop
            if any([bool(cb(step, state, metrics)) for cb in callbacks]):  # noqa: C419
                if ckpt_path is not None and not saved:
                    save(state)
                break
        return state

    advice_for = "trainer" if not isinstance(objective, str) else "density" if plan.name == "density" else "fit"
    health_monitor = _default_health(health, energy, num_steps, chunk_size, advice_for, trainer)
    if health_monitor is not None and not any(cb is health_monitor for cb in callbacks):
        callbacks = [*callbacks, health_monitor]
    t0 = time.perf_counter()
    start = int(state.step)
    bar = tqdm(total=num_steps, initial=start, desc="fit" + _on_devices(mesh), disable=not (progress_bar and is_primary()),
               mininterval=1.0)
    try:
        state = run_chunks(state)
    except KeyboardInterrupt:
        # Ctrl-C (or SIGTERM turned into it by the CLI): keep the last completed chunk, whose metrics are recorded
        bar.close()
        # one process interrupted alone cannot gather with the others: there the last periodic checkpoint stands
        if (ckpt_path is not None and committed["state"] is not None and int(committed["state"].step) > start
                and process_count() == 1):
            save(committed["state"])
        raise
    bar.close()
    hist = {k: np.concatenate(v) for k, v in history.items()} if history else {}
    if health_monitor is not None:
        health_monitor.final_check(int(state.step))
    plan = _with_adapted_step(plan, state)
    raw_energy = plan.output(trainer.energy_params(state.params))
    # with an EMA the result's energy (sampling, evaluation) is the average; NCE's log_c is mapped away alike
    out = plan.output(trainer.energy_params(ema_params(state.opt_state, state.params))) if uses_ema else raw_energy
    return FitResult(out, state, hist, time.perf_counter() - t0, plan.name, health_monitor, raw_energy)


def _read_on_primary(path: pathlib.Path) -> bytes | None:
    """The checkpoint's bytes as process 0 reads them, on every process (``None``: no file there)."""
    if process_count() == 1:
        return path.read_bytes() if path.is_file() else None
    sent = broadcast_bytes(b"\x01" + path.read_bytes() if is_primary() and path.is_file() else b"")
    return sent[1:] if sent else None


# the same optimizer object and decay give the same wrapper: an equal objective reuses its compiled steps
_with_ema_cached = functools.lru_cache(maxsize=32)(with_ema)


def _warn_if_ema_lags(decay: float, num_steps: int) -> None:
    """``fit(ema=...)``: warn when more than 20 % of the debiased average's weight is on the first half of the run
    (e.g. ``ema=0.999`` with fewer than about 2,800 steps)."""
    if decay == 0.0:
        return
    half = num_steps - num_steps // 2  # the later half's steps
    weight_late = 1.0 - decay**half
    share_early = 1.0 - weight_late / (1.0 - decay**num_steps)
    if share_early > 0.2:
        warnings.warn(f"ema={decay:g} averages over about {1 / (1 - decay):.0f} steps, so {share_early:.0%} of the "
                      f"returned average is parameters from the first half of the {num_steps} steps: result.energy "
                      f"then lags the fit. For an average over about the last fifth of training pass "
                      f"ema={max(0.0, 1 - 5 / num_steps):.4g} (or train longer); result.raw_energy holds the last "
                      "parameters.",
                      UserWarning, stacklevel=3)


def _check_callbacks(callbacks: Any) -> list:
    """``callbacks`` as a list of callables, or a TypeError that says how to pass them."""
    if callable(callbacks):
        raise TypeError("callbacks must be a list of functions callback(step, state, metrics); got one function: "
                        f"pass callbacks=[{getattr(callbacks, '__name__', 'callback')}].")
    try:
        callbacks = list(callbacks)
    except TypeError:
        raise TypeError(f"callbacks must be a list of functions callback(step, state, metrics), got "
                        f"{type(callbacks).__name__}.") from None
    for i, cb in enumerate(callbacks):
        if not callable(cb):
            raise TypeError(f"callbacks[{i}] ({type(cb).__name__}) is not a function callback(step, state, metrics).")
    return callbacks


def _check_run_options(config: Any, checkpoint_dir: Any, data: Any) -> None:
    """What would otherwise fail only after training (a config the checkpoint cannot store, a file where the
    checkpoint folder goes) or be misread (a Python list of rows taken for an iterable of batches)."""
    if config is not None:
        try:
            json.dumps(config)
        except (TypeError, ValueError) as err:
            raise TypeError(f"config must be JSON-serialisable (it is stored in every checkpoint): {err}. Pass "
                            "plain numbers, strings, lists and dicts (e.g. str(value) for other objects).") from None
    if checkpoint_dir is not None and pathlib.Path(checkpoint_dir).is_file():
        raise ValueError(f"checkpoint_dir={str(checkpoint_dir)!r} is a file; pass a folder (fit writes "
                         f"{CHECKPOINT_NAME} into it).")
    if isinstance(data, list) and data and isinstance(data[0], (list, numbers.Number, np.generic)):
        raise TypeError("data is a Python list of rows; a list is read as an iterable of batches (each an array). "
                        "Pass np.asarray(data) for one array of examples (n, *event_shape).")


def _key_and_data(key: Any, data: Any, options: dict[str, Any]) -> tuple[jax.Array, Any]:
    """``fit``'s key and data from ``fit(energy, key, data)``, keywords, or the old ``fit(energy, data, key=key)``."""
    kw_key, kw_data = options.pop("key", UNSET), options.pop("data", UNSET)
    if kw_key is not UNSET:
        if key is not UNSET:
            if data is not UNSET or kw_data is not UNSET or is_key(key):
                raise TypeError("fit() got the key twice (positionally and as key=); pass fit(energy, key, data).")
            moved("fit", "fit(energy, data, key=key)", "fit(energy, key, data)", stacklevel=4)
            key, data = kw_key, key  # the old form: data was the 2nd positional argument
        else:
            key = kw_key
    if kw_data is not UNSET:
        if data is not UNSET:
            raise TypeError("fit() got data twice (positionally and as data=); pass fit(energy, key, data).")
        data = kw_data
    if key is UNSET or data is UNSET:
        raise TypeError("fit() needs a key and data: fit(energy, jax.random.key(0), data, ...).")
    if not is_key(key) and is_key(data):
        raise TypeError("fit(energy, key, data): the key comes 2nd and the data 3rd; they were passed the other way "
                        "round.")
    check_key(key)
    return key, data


def _with_adapted_step(plan: Any, state: TrainState) -> Any:
    """Record the step the sampler ended training with (``target_acceptance``) in the stored sampler settings."""
    scale = getattr(getattr(state, "buffer", None), "log_step_scale", None)
    settings = plan.settings
    if scale is None or settings is None or "step_size" not in settings.sampler_params:
        return plan
    factor = float(np.exp(np.asarray(scale)))
    params = {k: v * factor if k == "step_size" else v for k, v in settings.sampler_params.items()}
    return dataclasses.replace(plan, settings=dataclasses.replace(settings, sampler_params=params))


# Module-level jitted programs with the trainer static: a Trainer reused across
# fit calls (fit(objective=trainer, ...)) compiles once.
def _on_devices(mesh: Mesh | None) -> str:
    """Progress-bar suffix: how many devices the run is split over (nothing for one)."""
    return "" if mesh is None or mesh.size == 1 else f" ({mesh.size} devices)"


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _run_chunk(trainer: Trainer, batch_size: int, num: int, mesh: Mesh | None, state: TrainState, data: Any):
    def body(state, _):
        # the batch is a function of the state's key: resuming reproduces it exactly
        n = jax.tree.leaves(data)[0].shape[0]
        idx = jax.random.randint(jax.random.fold_in(state.key, 7), (batch_size,), 0, n)
        batch = jax.tree.map(lambda a: constrain_leading(a[idx]), data)
        state, metrics = trainer.step(state, batch)
        return state, {**metrics, "step": state.step}

    with leading_axis(mesh):  # objectives shard their negatives while this body is traced
        return jax.lax.scan(body, state, None, length=num)


@functools.partial(jax.jit, static_argnums=0)
def _step_batch(trainer: Trainer, state: TrainState, batch: jax.Array):
    state, metrics = trainer.step(state, batch)
    return state, {**metrics, "step": state.step}


def _as_batch(batch: Any, energy: Energy, event_shape: tuple[int, ...] | None = None) -> Any:
    if isinstance(batch, tuple) and len(batch) == 2:
        batch = (np.asarray(batch[0]), np.asarray(batch[1]))  # (x, labels) or (x, observed_mask)
    else:
        batch = np.asarray(batch)
    out = _as_data(batch, energy, event_shape)
    if out is None:
        raise TypeError("each batch must be an array (batch, *event_shape) or a tuple (x, labels) / (x, mask).")
    return out


def _run_batches(trainer, state, batches, n, energy):
    collected = []
    for _ in range(n):
        try:
            batch = next(batches)
        except StopIteration:
            break
        batch = _as_batch(batch, energy, _data_event_shape(trainer, batch))
        _check_trainer_data(trainer, batch)
        _check_support(energy, batch)
        state, metrics = _step_batch(trainer, state, batch)
        collected.append(metrics)
        if not bool(metrics.get("finite", True)):
            magnitude = _magnitude(batch)
            break
    else:
        magnitude = None
    if not collected:
        raise ValueError("the batch iterator ran out before num_steps; pass more batches or fewer num_steps.")
    return state, jax.tree.map(lambda *xs: jnp.stack(xs), *collected), magnitude


def _magnitude(data) -> float | None:
    """The largest finite |x| of the examples (the first leaf of a tuple), for the divergence advice."""
    x = np.asarray(jax.tree.leaves(data)[0]) if data is not None else None
    if x is None or not np.issubdtype(x.dtype, np.floating) or x.size == 0:
        return None
    finite = np.abs(x[np.isfinite(x)])
    return float(finite.max()) if finite.size else None
