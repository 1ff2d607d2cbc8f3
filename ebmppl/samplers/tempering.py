"""Non-reversible parallel tempering with an adaptive ladder.

Local samplers stay in the mode they start in. Parallel tempering runs ``R``
replicas of one chain along a path of distributions from an easy *reference*
``π₀`` (here a Gaussian ``N(m, diag s²)``) to the target ``π``,

    log π_β(x) = log π₀(x) + β ℓ(x),    ℓ(x) = log π(x) − log π₀(x),    0 = β₀ < … < β_{R−1} = 1,

draws the reference level exactly, moves every other replica with a local
kernel (any ebmppl sampler: MALA, HMC, NUTS, ...) and proposes to swap the states of neighbouring levels, accepted
with probability ``min(1, exp((β_{i+1} − β_i)(ℓ(x_i) − ℓ(x_{i+1}))))``. The
reference replica moves freely between modes; swaps carry its states up to
the target.

Non-reversible swaps
    Swaps alternate deterministically between the even pairs ``(0,1), (2,3), …``
    and the odd pairs ``(1,2), (3,4), …`` (DEO, Okabe et al. 2001; Syed et al.
    2022). A state then travels the ladder like a lifted walk instead of a
    random walk: the round-trip rate between reference and target stays
    bounded away from zero as ``R`` grows, where reversible (random-pair) swaps
    collapse as ``1/R``.
Adaptive ladder
    Warm-up runs in rounds of doubling length. After each round the swap
    rejection rates ``r_i`` of the pairs define a cumulative *communication
    barrier* ``Λ(β)`` (piecewise linear through ``Λ(β_i) = Σ_{j<i} r_j``); the
    new ladder places the ``β_i`` at equal increments of ``Λ``, so every pair
    rejects equally often (Syed, Bouchard-Côté, Deligiannidis & Doucet, JRSSB
    2022, Algorithm 4). The total barrier ``Λ = Σ r_i`` is the problem's
    difficulty: the ideal round-trip rate of DEO swaps is ``1/(2 + 2Λ)`` per
    swap round, and ``R ≳ 2Λ`` replicas suffice.
Local kernels
    Each level has its own kernel parameters (the reference is wider than the
    target): warm-up adapts one step size per level by dual averaging towards
    the kernel's target acceptance, and, for kernels with a mass matrix, a
    diagonal mass matrix per level from that level's draws.

One step of the sampler is one local move of every replica and one swap
round. A "chain" in :func:`ebmppl.sample` is a whole ladder: chains are
independent ladders, vectorised (and shardable) like any other chains.
:func:`tempering_summary` reads the swap statistics, round trips and barrier
of a run; :func:`ebmppl.plots.plot_ladder` draws them.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from blackjax.adaptation.step_size import dual_averaging_adaptation

from ebmppl.samplers.adaptation import Warmup
from ebmppl.samplers.base import LogDensityFn, Sampler
from ebmppl.samplers.kernels import _f
from ebmppl.samplers.registry import SAMPLERS, as_sampler

__all__ = [
    "ParallelTempering", "parallel_tempering", "TemperingState", "TemperingStats", "LadderAdaptation",
    "TemperingSummary", "tempering_summary", "reference_params", "equalise_ladder", "check_ladder",
    "TemperingWarning",
]

_KERNEL = "kernel_"


class TemperingState(NamedTuple):
    """The state of one parallel-tempering chain (a ladder of replicas).

    Attributes
    ----------
    replicas
        The local kernel's states, stacked over levels (level ``R − 1`` is the target).
    labels
        ``(R,)`` which replica sits at each level (labels follow states through swaps).
    heading
        ``(R,)`` per label: ``1`` it last visited the reference, ``-1`` the target, ``0`` neither yet.
    round_trips
        Completed reference → target → reference journeys since the counters were reset.
    swap_accept, swap_count
        ``(R − 1,)`` per pair: summed swap acceptance probabilities and the number of attempts.
    parity
        Which pairs swap next: ``0`` the even pairs ``(0,1), (2,3), …``, ``1`` the odd ones.
    rounds
        Swap rounds since the counters were reset.

    Examples
    --------
    >>> pt = parallel_tempering(num_replicas=3)
    >>> state = pt.init(jax.random.key(0), jnp.zeros(2), lambda x: -0.5 * jnp.sum(x**2))
    >>> state.labels.tolist(), state.swap_count.shape, int(state.parity)
    ([0, 1, 2], (2,), 0)
    """

    replicas: Any
    labels: jax.Array
    heading: jax.Array
    round_trips: jax.Array
    swap_accept: jax.Array
    swap_count: jax.Array
    parity: jax.Array
    rounds: jax.Array


class TemperingStats(NamedTuple):
    """Per-step statistics: the four every sampler reports (for the target level) and the ladder's.

    ``swap_acceptance`` is ``(R − 1,)``, ``nan`` for the pairs not attempted
    this step; ``level_acceptance`` is the local kernel's acceptance at every
    level (``nan`` at the reference, which is drawn exactly); ``round_trips`` counts the chain's completed round trips so far.
    ArviZ output keeps them in ``sample_stats``.

    Examples
    --------
    >>> pt, ld = parallel_tempering(num_replicas=3), lambda x: -0.5 * jnp.sum(x**2)
    >>> state = pt.init(jax.random.key(0), jnp.zeros(2), ld)
    >>> step = jax.jit(lambda key, state: pt.step(key, state, ld, pt.default_params(2)))   # one compiled step
    >>> _, stats = step(jax.random.key(1), state)
    >>> stats.swap_acceptance.shape, stats.level_acceptance.shape, int(jnp.isnan(stats.swap_acceptance).sum())
    ((2,), (3,), 1)
    """

    acceptance_rate: jax.Array
    is_divergent: jax.Array
    num_grad_evals: jax.Array
    logdensity: jax.Array
    swap_acceptance: jax.Array
    level_acceptance: jax.Array
    round_trips: jax.Array


def _reference_logdensity(x: jax.Array, mean: jax.Array, scale: jax.Array) -> jax.Array:
    z = (x.reshape(-1) - mean) / scale
    return -0.5 * jnp.sum(z**2) - jnp.sum(jnp.log(scale)) - 0.5 * z.size * math.log(2 * math.pi)


def _tempered(logdensity_fn: LogDensityFn, beta: jax.Array, mean: jax.Array, scale: jax.Array) -> LogDensityFn:
    def logdensity(x):
        ref = _reference_logdensity(x, mean, scale)
        # β = 0 is the reference exactly, also where the energy is +inf or NaN (0 · inf would be NaN there)
        return ref + jnp.where(beta > 0, beta * (logdensity_fn(x) - ref), 0.0)

    return logdensity


def equalise_ladder(betas: jax.Array, rejection: jax.Array) -> jax.Array:
    """The ladder whose pairs would reject equally often, from one run's rejection rates (Syed et al. 2022).

    ``Λ(β)`` is interpolated linearly through ``(β_i, Σ_{j<i} r_j)``; the new
    ``β_i`` sit at ``Λ⁻¹(i Λ / (R − 1))``. The ends stay at 0 and 1. Pairs
    that never rejected are given a tiny rate, so ``Λ`` stays invertible.

    Examples
    --------
    Most rejection in the first pair: the new ladder crowds towards β = 0.

    >>> new = equalise_ladder(jnp.linspace(0.0, 1.0, 4), jnp.array([0.9, 0.2, 0.1]))
    >>> np.round(np.asarray(new, dtype=float), 3).tolist()
    [0.0, 0.148, 0.296, 1.0]
    """
    rejection = jnp.clip(jnp.nan_to_num(rejection, nan=1.0), 1e-6, 1.0)
    barrier = jnp.concatenate([jnp.zeros(1), jnp.cumsum(rejection)])
    targets = jnp.linspace(0.0, barrier[-1], betas.shape[0])
    new = jnp.interp(targets, barrier, betas)
    return new.at[0].set(0.0).at[-1].set(1.0)


class LadderAdaptation(Warmup):
    """Parallel tempering's warm-up: the ladder, and each level's step size and diagonal mass matrix.

    Rounds of doubling length (at most six; the first about 1/63 of the
    warm-up). In every round each level's step size follows dual averaging
    towards the local kernel's ``target_acceptance`` (if the kernel adapts at
    all) and the swap acceptance of every pair is recorded; at the end of each
    round but the last the ladder is equalised (:func:`equalise_ladder`) and,
    for kernels with a mass matrix, each level's diagonal inverse mass matrix
    becomes the variance of that level's draws pooled over chains (shrunk as
    Stan does). The last round only tunes step sizes, under the final ladder.
    Chains are not restarted (``reinit_stalled`` is ignored): a ladder that
    stalls shows it in its swap and level acceptance.

    Examples
    --------
    >>> from ebmppl import samplers
    >>> samplers.parallel_tempering().warmup
    LadderAdaptation()
    """

    def run(self, sampler, logdensity_fn, key, states, params, num_steps, reinit_stalled):
        step = jax.vmap(sampler.step, in_axes=(0, 0, None, None))
        kernel = sampler.kernel
        tune_step = (kernel.warmup.adapts and f"{_KERNEL}step_size" in params
                     and not math.isnan(kernel.target_acceptance))
        tune_metric = tune_step and f"{_KERNEL}inverse_mass_matrix" in params
        da_init, da_update, da_final = dual_averaging_adaptation(
            kernel.target_acceptance if tune_step else 0.5)
        n_chains, levels = states.labels.shape
        dim = params["reference_mean"].shape[0]
        # one scan over all warm-up steps (one compiled step); the rounds are flags on it
        sizes = _round_sizes(num_steps)
        ends = np.cumsum(sizes) - 1
        round_end = np.zeros(num_steps, bool)
        round_end[ends[:-1]] = True  # the ladder (and metric) change at the end of every round but the last
        where = lambda c, new, old: jax.tree.map(lambda u, v: jnp.where(c, u, v), new, old)  # noqa: E731
        zeros = (jnp.zeros(levels - 1), jnp.zeros(levels - 1), jnp.zeros((levels, dim)), jnp.zeros((levels, dim)),
                 jnp.zeros(()))

        def body(carry, xs):
            states, params, da, (acc, cnt, s1, s2, n) = carry
            k, end = xs
            states, stats = step(jax.random.split(k, n_chains), states, logdensity_fn, params)
            tried = jnp.isfinite(stats.swap_acceptance)
            acc = acc + jnp.where(tried, stats.swap_acceptance, 0.0).sum(0)
            cnt = cnt + tried.sum(0)
            if tune_step:
                level_acc = jnp.mean(jnp.nan_to_num(stats.level_acceptance, nan=0.0), axis=0)
                level_acc = level_acc.at[0].set(kernel.target_acceptance)  # the reference is drawn exactly
                da = jax.vmap(da_update)(da, level_acc)
                params = {**params, f"{_KERNEL}step_size": jnp.exp(da.log_step_size)}
            if tune_metric:
                x = _level_positions(kernel, states)
                s1, s2, n = s1 + x.sum(0), s2 + (x**2).sum(0), n + n_chains
            # the end of a round: equalise the ladder, refit the metric, restart the step-size search
            updated = {**params, "betas": equalise_ladder(params["betas"], 1.0 - acc / jnp.maximum(cnt, 1.0))}
            if tune_step:
                updated[f"{_KERNEL}step_size"] = jax.vmap(da_final)(da)
            if tune_metric:
                updated[f"{_KERNEL}inverse_mass_matrix"] = _shrunk_variance(
                    params[f"{_KERNEL}inverse_mass_matrix"], s1, s2, jnp.maximum(n, 1.0))
            params = where(end, updated, params)
            if tune_step:
                da = where(end, jax.vmap(da_init)(params[f"{_KERNEL}step_size"]), da)
            counters = where(end, zeros, (acc, cnt, s1, s2, n))
            return (states, params, da, counters), None

        da0 = jax.vmap(da_init)(params[f"{_KERNEL}step_size"]) if tune_step else None
        xs = (jax.random.split(key, num_steps), jnp.asarray(round_end))
        (states, params, da, _), _ = jax.lax.scan(body, (states, params, da0, zeros), xs)
        if tune_step:
            params = {**params, f"{_KERNEL}step_size": jax.vmap(da_final)(da)}
        return _reset_counters(states), params, jnp.full((n_chains,), -1, dtype=jnp.int32)


def _round_sizes(num_steps: int) -> list[int]:
    rounds = int(min(6, max(1, math.floor(math.log2(max(num_steps, 1) / 8.0)))))
    unit = num_steps / (2**rounds - 1)
    sizes = [max(1, int(round(unit * 2**r))) for r in range(rounds - 1)]
    return [s for s in sizes if s > 0] + [max(1, num_steps - sum(sizes))]


def _level_positions(kernel: Sampler, states: TemperingState) -> jax.Array:
    x = kernel.position(states.replicas)  # (chain, level, *event)
    return x.reshape(x.shape[0], x.shape[1], -1)


def _shrunk_variance(current: jax.Array, s1: jax.Array, s2: jax.Array, n: int) -> jax.Array:
    var = jnp.maximum(s2 / n - (s1 / n) ** 2, 0.0)
    var = (n / (n + 5.0)) * var + 1e-3 * (5.0 / (n + 5.0))  # Stan's regularisation
    return var if current.ndim == 2 else jax.vmap(jnp.diag)(var)


def _reset_counters(states: TemperingState) -> TemperingState:
    return states._replace(round_trips=jnp.zeros_like(states.round_trips),
                           swap_accept=jnp.zeros_like(states.swap_accept),
                           swap_count=jnp.zeros_like(states.swap_count),
                           rounds=jnp.zeros_like(states.rounds))


class ParallelTempering(Sampler):
    """Non-reversible parallel tempering over a local kernel, with an adaptive ladder.

    See :mod:`ebmppl.samplers.tempering` for the algorithm. Usable wherever a
    sampler is: ``sample(energy, key, sampler=parallel_tempering(...))``,
    ``compare``, and as CD's negative-phase generator.

    Parameters
    ----------
    kernel
        The local sampler at every level: a name or a :class:`Sampler` value
        (default ``"mala"``). Its kernel parameters get one value per level
        (kernel parameters ``kernel_step_size`` ``(R,)``, ...).
    num_replicas
        Levels ``R`` (≥ 2) including reference and target. Roughly ``2Λ``
        suffice; :func:`tempering_summary` reports ``Λ`` after a run.

    Kernel parameters
    -----------------
    betas
        ``(R,)`` the ladder, from 0 to 1 (default ``(i / (R − 1))²``; warm-up equalises it).
    reference_mean, reference_scale
        ``(dim,)`` the Gaussian reference. :func:`ebmppl.sample` sets them
        from the energy's :meth:`~ebmppl.Energy.typical_region` (``center``
        and ``2·scale``), :func:`ebmppl.fit` from the training data (mean and
        ``2·sd`` per coordinate, see :data:`ebmppl.recipes.REFERENCE_WIDTH`),
        unless given in ``sampler_params``. The
        reference must cover every mode: a reference narrower than the
        spread of the modes makes the hot replicas miss the far ones.
    kernel_<name>
        The local kernel's parameters with a leading level axis.

    The reference level is drawn exactly (an independent Gaussian draw every
    round), so a round trip brings a fresh state from the reference to the
    target: round trips measure mixing even when the local kernel is slow.
    Each step costs the local kernel's gradients at the ``R − 1`` levels above
    the reference plus one gradient at each (the replicas are re-initialised
    at their levels after the swap round), and one energy evaluation per level
    for the swaps.

    Examples
    --------
    Four chains on a two-mode mixture; every chain visits both modes:

    >>> from ebmppl import sample, samplers
    >>> from ebmppl.targets import gaussian_mixture
    >>> t = gaussian_mixture([0.3, 0.7], [[-4.0, 0.0], [4.0, 0.0]], [0.25 * np.eye(2)] * 2)
    >>> pt = samplers.parallel_tempering(kernel=samplers.mala(), num_replicas=6)
    >>> out = sample(t.energy, jax.random.key(0), sampler=pt, num_chains=4, num_warmup=300,
    ...              num_samples=500, progress_bar=False)
    >>> right = np.asarray(out.positions[..., 0] > 0).mean(axis=1)
    >>> bool(np.all((right > 0.45) & (right < 0.95)))
    True
    >>> bool(tempering_summary(out).round_trips.min() > 0)
    True
    """

    kernel: Sampler = eqx.field(static=True, default="mala")
    num_replicas: int = eqx.field(static=True, default=8, converter=int)
    name = "parallel_tempering"
    warmup = LadderAdaptation()

    def __init__(self, kernel: str | Sampler = "mala", num_replicas: int = 8):
        kernel = as_sampler(kernel, "kernel")
        if isinstance(kernel, ParallelTempering):
            raise TypeError("kernel must be a local sampler (mala, hmc, nuts, ...), not parallel tempering itself.")
        if isinstance(num_replicas, bool) or not isinstance(num_replicas, (int, np.integer)) or num_replicas < 2:
            raise ValueError(f"num_replicas must be an int >= 2 (the reference and the target at least), "
                             f"got {num_replicas!r}.")
        self.kernel = kernel
        self.num_replicas = int(num_replicas)

    @property
    def exact(self) -> bool:  # type: ignore[override]
        """Exact when the local kernel is (the swaps are Metropolis-adjusted)."""
        return self.kernel.exact

    def default_params(self, dim: int) -> dict[str, jax.Array]:
        inner = self.kernel.default_params(dim)
        levels = self.num_replicas
        params = {f"{_KERNEL}{k}": jnp.broadcast_to(v, (levels, *jnp.shape(v))) for k, v in inner.items()}
        params["betas"] = _f(np.linspace(0.0, 1.0, levels) ** 2)
        params["reference_mean"] = jnp.zeros(dim)
        params["reference_scale"] = jnp.ones(dim)
        return params

    def init(self, key, position, logdensity_fn):
        # the replicas' cached values are refreshed at their levels at the start of every step
        # (the ladder is a kernel parameter), so all levels start at `position` under the target
        levels = self.num_replicas
        keys = jax.random.split(key if key is not None else jax.random.key(0), levels)
        stacked = jnp.broadcast_to(position, (levels, *jnp.shape(position)))
        replicas = jax.vmap(self.kernel.init, in_axes=(0, 0, None))(keys, stacked, logdensity_fn)
        labels = jnp.arange(levels, dtype=jnp.int32)
        return TemperingState(replicas, labels, jnp.zeros(levels, jnp.int32), jnp.zeros((), jnp.int32),
                              jnp.zeros(levels - 1), jnp.zeros(levels - 1), jnp.zeros((), jnp.int32),
                              jnp.zeros((), jnp.int32))

    def position(self, state):
        # the target level; also called on a batch of chains (leading axes before the level axis)
        batch = (slice(None),) * (state.labels.ndim - 1)
        return jax.tree.map(lambda a: a[(*batch, -1)], self.kernel.position(state.replicas))

    def step(self, key, state, logdensity_fn, params):
        levels = self.num_replicas
        betas, mean, scale = params["betas"], params["reference_mean"], params["reference_scale"]
        inner = {k[len(_KERNEL):]: v for k, v in params.items() if k.startswith(_KERNEL)}
        k_swap, k_init, k_move, k_ref = jax.random.split(key, 4)
        x = self.kernel.position(state.replicas)
        # 0. the reference level is sampled exactly (an independent draw each round), so every state that
        # reaches the target after visiting the reference carries a fresh start: round trips mean mixing
        fresh = mean + scale * jax.random.normal(k_ref, mean.shape, mean.dtype)
        x = x.at[0].set(fresh.reshape(x.shape[1:]).astype(x.dtype))

        # 1. one DEO swap round at the current positions
        ratio = jax.vmap(lambda xi: logdensity_fn(xi) - _reference_logdensity(xi, mean, scale))(x)
        ratio = jnp.where(jnp.isnan(ratio), -jnp.inf, ratio)
        log_alpha = (betas[1:] - betas[:-1]) * (ratio[:-1] - ratio[1:])
        log_alpha = jnp.where(jnp.isnan(log_alpha), -jnp.inf, log_alpha)  # -inf - -inf: never swap
        pair = jnp.arange(levels - 1)
        tried = (pair % 2) == state.parity
        accept = tried & (jnp.log(jax.random.uniform(k_swap, (levels - 1,))) < log_alpha)
        up = jnp.concatenate([accept, jnp.zeros(1, bool)])  # level i swaps with i + 1
        down = jnp.concatenate([jnp.zeros(1, bool), accept])  # level i swaps with i - 1
        source = jnp.arange(levels) + up.astype(jnp.int32) - down.astype(jnp.int32)
        x = x[source]
        labels = state.labels[source]
        alpha = jnp.exp(jnp.minimum(log_alpha, 0.0))
        swap_acceptance = jnp.where(tried, alpha, jnp.nan)

        # 2. round trips: a label at the reference that last saw the target completes one
        bottom, top = labels[0], labels[-1]
        heading = state.heading.at[top].set(jnp.where(state.heading[top] == 1, -1, state.heading[top]))
        trip = heading[bottom] == -1
        heading = heading.at[bottom].set(1)

        # 3. the replicas above the reference refreshed at their levels, then one local move each; the
        # reference replica needs no move (it is redrawn exactly next round)
        def move(k_i, k_m, xi, beta, kparams):
            ld = _tempered(logdensity_fn, beta, mean, scale)
            replica = self.kernel.init(k_i, xi, ld)
            return self.kernel.step(k_m, replica, ld, kparams)

        upper = jax.tree.map(lambda a: a[1:], inner)
        k_init, k_bottom = jax.random.split(k_init)
        moved, inner_stats = jax.vmap(move)(jax.random.split(k_init, levels - 1),
                                            jax.random.split(k_move, levels - 1), x[1:], betas[1:], upper)
        bottom_state = self.kernel.init(k_bottom, x[0], lambda xi: _reference_logdensity(xi, mean, scale))
        replicas = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), bottom_state, moved)
        acceptance = inner_stats.acceptance_rate
        stats = TemperingStats(
            acceptance_rate=acceptance[-1],
            is_divergent=jnp.any(inner_stats.is_divergent),
            num_grad_evals=jnp.sum(inner_stats.num_grad_evals) + levels - 1,
            logdensity=inner_stats.logdensity[-1],
            swap_acceptance=swap_acceptance,
            level_acceptance=jnp.concatenate([jnp.full((1,), jnp.nan, acceptance.dtype), acceptance]),
            round_trips=state.round_trips + trip.astype(jnp.int32),
        )
        new = TemperingState(replicas, labels, heading, stats.round_trips,
                             state.swap_accept + jnp.where(tried, alpha, 0.0),
                             state.swap_count + tried.astype(state.swap_count.dtype), 1 - state.parity,
                             state.rounds + 1)
        return new, stats

    # ------------------------------------------------------------ adaptation during training (CD negatives)
    def training_adaptation_init(self, params: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """The state a trainer keeps to adapt the ladder and the per-level steps as the energy changes.

        A dict whose entries named like kernel parameters (``betas``,
        ``kernel_step_size``) replace them in the chains' parameters;
        ``swap_acceptance`` is the running mean swap acceptance of each pair
        (``nan`` until the pair was tried). :class:`ebmppl.objectives.NegativeChains`
        keeps it in ``BufferState.sampler_state`` (checkpointed with the buffer).

        Examples
        --------
        >>> pt = parallel_tempering(num_replicas=4)
        >>> s = pt.training_adaptation_init(pt.default_params(2))
        >>> sorted(s), s["betas"].shape, s["swap_acceptance"].shape
        (['betas', 'kernel_step_size', 'swap_acceptance'], (4,), (3,))
        """
        step = params.get(f"{_KERNEL}step_size", jnp.full((self.num_replicas,), jnp.nan))
        return {"betas": jnp.asarray(params["betas"]), f"{_KERNEL}step_size": jnp.asarray(step),
                "swap_acceptance": jnp.full((self.num_replicas - 1,), jnp.nan, jnp.asarray(params["betas"]).dtype)}

    def training_adaptation_update(self, params: dict[str, jax.Array], state: dict[str, jax.Array], stats: Any,
                                   target_acceptance: float | None, rate: float) -> dict[str, jax.Array]:
        """One training step's update of :meth:`training_adaptation_init`'s state from the chains' mean ``stats``.

        ``stats`` is a :class:`TemperingStats` averaged over the step's chains
        and sampler steps (``nan`` for pairs never tried). Each level's step
        moves by ``exp(rate · (acceptance − target))`` (target: ``target_acceptance``,
        or the local kernel's own when ``None``; a level whose acceptance is
        ``nan``, as the exactly drawn reference, and a kernel without a step or
        an accept step keep their steps); the running swap acceptance is an
        exponential mean with weight ``rate``; the ladder moves a fraction
        ``rate`` of the way to the one that equalises the running rejection
        (:func:`equalise_ladder`), so it stays increasing from 0 to 1.

        Examples
        --------
        Every pair accepts rarely but the first never: the ladder crowds towards 0.

        >>> pt = parallel_tempering(num_replicas=4)
        >>> p = pt.default_params(2)
        >>> s = pt.training_adaptation_init(p)
        >>> stats = TemperingStats(*(jnp.zeros(()),) * 4, jnp.array([0.0, 0.9, 0.9]), jnp.full(4, 0.9),
        ...                        jnp.zeros(()))
        >>> for _ in range(200):
        ...     s = pt.training_adaptation_update(p, s, stats, None, 0.05)
        >>> bool(s["betas"][1] < p["betas"][1]), bool(jnp.all(s["kernel_step_size"] > p["kernel_step_size"]))
        (True, True)
        """
        swap = jnp.asarray(stats.swap_acceptance)
        old = state["swap_acceptance"]
        running = jnp.where(jnp.isfinite(swap), jnp.where(jnp.isfinite(old), (1 - rate) * old + rate * swap, swap), old)
        equal = equalise_ladder(state["betas"], 1.0 - jnp.where(jnp.isfinite(running), running, 0.5))
        betas = jnp.where(jnp.all(jnp.isfinite(running)), (1 - rate) * state["betas"] + rate * equal, state["betas"])
        new = {**state, "betas": betas.astype(state["betas"].dtype), "swap_acceptance": running}
        target = self.kernel.target_acceptance if target_acceptance is None else target_acceptance
        step_name = f"{_KERNEL}step_size"
        if step_name in params and not math.isnan(target):
            level = jnp.asarray(stats.level_acceptance)
            shift = rate * (jnp.nan_to_num(level, nan=target) - target)
            new[step_name] = (state[step_name] * jnp.exp(shift)).astype(state[step_name].dtype)
        return new


parallel_tempering = ParallelTempering
SAMPLERS["parallel_tempering"] = ParallelTempering


def reference_params(params: dict[str, jax.Array], energy: Any, overrides: dict[str, Any] | None
                     ) -> dict[str, jax.Array]:
    """``params`` with a tempering reference set from ``energy.typical_region()`` (center, 2·scale).

    Only for samplers with a reference (``reference_mean`` in ``params``), and
    only for the parts the user did not give in ``sampler_params``.

    Examples
    --------
    >>> from ebmppl.targets import gaussian
    >>> pt = parallel_tempering(num_replicas=3)
    >>> p = reference_params(pt.default_params(2), gaussian([5.0, 0.0], [[4.0, 0.0], [0.0, 1.0]]).energy, None)
    >>> p["reference_mean"].tolist(), p["reference_scale"].tolist()
    ([5.0, 0.0], [4.0, 2.0])
    """
    if "reference_mean" not in params:
        return params
    overrides = overrides or {}
    center, scale = energy.typical_region()
    dim = params["reference_mean"].shape[0]
    out = dict(params)
    if "reference_mean" not in overrides:
        out["reference_mean"] = jnp.broadcast_to(jnp.asarray(center, params["reference_mean"].dtype).reshape(-1)
                                                 if jnp.size(center) == dim else jnp.asarray(center), (dim,))
    if "reference_scale" not in overrides:
        out["reference_scale"] = jnp.broadcast_to(2.0 * jnp.asarray(scale, params["reference_scale"].dtype).reshape(-1)
                                                  if jnp.size(scale) == dim else 2.0 * jnp.asarray(scale), (dim,))
    check_ladder(out)
    if not overrides.keys() & {"reference_mean", "reference_scale"} and not callable(
            getattr(getattr(energy, "energy_fn", None), "typical_region", None)):
        warnings.warn(
            "parallel tempering's reference is N(0, 2²) in every coordinate: this energy declares no typical "
            "region (Energy.typical_region), so modes beyond a few units from the origin are never reached and no "
            "diagnostic can see them. Pass sampler_params={'reference_mean': ..., 'reference_scale': ...} covering "
            "every mode (or declare typical_region() on the energy function).", TemperingWarning, stacklevel=3)
    return out


class TemperingWarning(UserWarning):
    """Parallel tempering's reference or ladder cannot be trusted as given (see the message).

    Examples
    --------
    >>> issubclass(TemperingWarning, UserWarning)
    True
    """


def check_ladder(params: dict[str, jax.Array]) -> None:
    """A ``ValueError`` naming the fix unless the ladder and the reference are usable.

    ``betas`` must be finite and strictly increasing from exactly 0 to exactly
    1; ``reference_mean`` finite; ``reference_scale`` finite and > 0.

    Examples
    --------
    >>> p = parallel_tempering(num_replicas=3).default_params(2)
    >>> check_ladder(p)
    >>> check_ladder({**p, "betas": jnp.array([0.0, 0.2, 0.3])})
    Traceback (most recent call last):
    ...
    ValueError: sampler_params['betas'] must rise strictly from 0 to 1 (the reference to the target), got [0.0, 0.2, 0.3].
    """
    betas = np.asarray(params["betas"], np.float64)
    if not (np.all(np.isfinite(betas)) and betas[0] == 0.0 and betas[-1] == 1.0 and np.all(np.diff(betas) > 0)):
        raise ValueError(f"sampler_params['betas'] must rise strictly from 0 to 1 (the reference to the target), "
                         f"got {np.round(betas, 4).tolist()}.")
    if not np.all(np.isfinite(np.asarray(params["reference_mean"]))):
        raise ValueError("sampler_params['reference_mean'] must be finite in every coordinate.")
    scale = np.asarray(params["reference_scale"])
    if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
        raise ValueError("sampler_params['reference_scale'] must be finite and > 0 in every coordinate.")


class TemperingSummary(NamedTuple):
    """What a parallel-tempering run says about its ladder (see :func:`tempering_summary`).

    Attributes
    ----------
    betas
        ``(R,)`` the adapted ladder.
    swap_acceptance
        ``(R − 1,)`` mean swap acceptance of each pair over the draws, pooled over chains.
    barrier
        The communication barrier ``Λ = Σ (1 − swap acceptance)``.
    round_trips
        Per chain, completed reference → target → reference journeys over the draws.
    swap_rounds
        Swap rounds per chain over the draws.
    round_trip_rate
        Round trips per swap round, pooled over chains; the DEO ideal is ``1 / (2 + 2Λ)``.
    ideal_round_trip_rate
        ``1 / (2 + 2Λ)``.

    Examples
    --------
    >>> s = TemperingSummary(np.array([0.0, 0.3, 1.0]), np.array([0.8, 0.7]), 0.5, np.array([3, 4]), 20, 0.175, 1 / 3)
    >>> print(s)  # doctest: +NORMALIZE_WHITESPACE
    parallel tempering: 3 levels, barrier Λ = 0.50, 7 round trips in 20 swap rounds × 2 chains
    (175.0 per 1000 rounds per chain; ideal 333.3); swap acceptance [0.8, 0.7]
    """

    betas: np.ndarray
    swap_acceptance: np.ndarray
    barrier: float
    round_trips: np.ndarray
    swap_rounds: int
    round_trip_rate: float
    ideal_round_trip_rate: float

    def __str__(self) -> str:
        return (f"parallel tempering: {len(self.betas)} levels, barrier Λ = {self.barrier:.2f}, "
                f"{int(self.round_trips.sum())} round trips in {self.swap_rounds} swap rounds × "
                f"{len(self.round_trips)} chains ({1000 * self.round_trip_rate:.1f} per 1000 rounds per chain; "
                f"ideal {1000 * self.ideal_round_trip_rate:.1f}); swap acceptance "
                f"{np.round(self.swap_acceptance, 2).tolist()}")


def tempering_summary(samples: Any) -> TemperingSummary:
    """The ladder, swap acceptance, barrier and round trips of a parallel-tempering ``sample()`` run.

    Raises
    ------
    TypeError
        ``samples`` did not come from parallel tempering.

    Examples
    --------
    >>> from ebmppl import sample
    >>> from ebmppl.targets import gaussian
    >>> out = sample(gaussian([0.0], [[1.0]]).energy, jax.random.key(0), sampler=parallel_tempering(num_replicas=4),
    ...              num_chains=2, num_warmup=200, num_samples=200, progress_bar=False)
    >>> s = tempering_summary(out)
    >>> s.betas.shape, s.swap_acceptance.shape, s.swap_rounds
    ((4,), (3,), 200)
    """
    states = getattr(samples, "states", None)
    if not isinstance(states, TemperingState):
        raise TypeError(f"tempering_summary needs samples drawn by parallel tempering, got sampler "
                        f"{getattr(samples, 'sampler', '?')!r}.")
    # the counters run from the end of warm-up (LadderAdaptation resets them)
    count = np.asarray(states.swap_count, dtype=float).sum(0)
    acceptance = np.asarray(states.swap_accept, dtype=float).sum(0) / np.maximum(count, 1.0)
    barrier = float(np.sum(1.0 - acceptance))
    trips = np.asarray(states.round_trips)
    rounds = int(np.asarray(states.rounds).max())
    rate = float(trips.sum() / (rounds * len(trips))) if rounds else float("nan")
    return TemperingSummary(np.asarray(samples.params["betas"]), acceptance, barrier, trips, rounds, rate,
                            1.0 / (2.0 + 2.0 * barrier))
