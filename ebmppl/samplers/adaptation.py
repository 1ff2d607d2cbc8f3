"""Warm-up: step-size and mass-matrix adaptation pooled over all chains.

ebmppl runs many chains at once, so it adapts ONE set of kernel parameters
for all of them (every chain then samples with the same kernel, which is what
R-hat assumes). What a sampler's warm-up tunes is its :attr:`Sampler.warmup
<ebmppl.samplers.Sampler.warmup>`, a warm-up strategy object:

* :class:`WindowAdaptation` (HMC, NUTS, Barker, GHMC): the **step size** by
  Nesterov dual averaging (BlackJAX's ``dual_averaging_adaptation``) on the
  acceptance rate averaged over chains, and the **mass matrix** by Stan's
  schedule: a fast window (15 %), slow windows doubling in length (75 %) at
  whose ends the inverse mass matrix becomes the covariance of *all chains'
  positions pooled* (BlackJAX's batched Welford update ``cgl_update_batch``,
  regularised towards ``1e-3·I`` by BlackJAX's ``mass_matrix_adaptation`` as
  Stan does), and a final fast window (10 %);
* :class:`StepSizeAdaptation` (MALA): the step size only;
* :class:`MCLMCTuning` (MCLMC): BlackJAX's ``mclmc_find_L_and_step_size`` on
  each chain, then the median of ``L``, step size and preconditioner;
* :class:`NoAdaptation` (ULA, practical Langevin, SGHMC; every sampler under
  ``adapt=False``): the chains simply run ``num_warmup`` steps with the
  user's step size.

A new strategy subclasses :class:`Warmup` and implements :meth:`Warmup.run`.

**Stalled chains are restarted.** One pooled step size cannot suit a chain
that started far out in the tails (say at ``log σ = -2`` of a scale
parameter): its proposals are all rejected, it never moves, and its zero
acceptance drags the pooled step size down for everyone. So at a few
*checkpoints* of warm-up (the end of the initial fast window and the end of
every slow window, see :func:`reinit_schedule`) each chain is checked over
the steps since the last checkpoint: a chain whose mean acceptance was below
1 % (samplers with a Metropolis step) or whose log-density is not finite is
*stalled*, and it is restarted from the full state of a healthy chain drawn
uniformly at random (the step-size search then restarts too). If no chain is
healthy nothing is copied. After warm-up the chains run from different keys,
so a copied chain decorrelates from its source within a few autocorrelation
times. The step of each chain's last restart is returned by
:func:`warmup_with_health`; :func:`ebmppl.sample` reports it in
``Samples.health`` and warns about restarts after the first checkpoint (a
chain that stalled *after* moving may have found a region the sampler cannot
handle, such as a funnel's neck). Pass ``reinit_stalled=False`` to turn this off.
MCLMC (tuned chain by chain) is not restarted.
"""

from __future__ import annotations

import abc
import math
from typing import TYPE_CHECKING, Any, ClassVar

import blackjax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from blackjax.adaptation.mass_matrix import MassMatrixAdaptationState, WelfordAlgorithmState, mass_matrix_adaptation
from blackjax.adaptation.metric_buffers import MomentBlock, cgl_update_batch
from blackjax.adaptation.step_size import dual_averaging_adaptation

if TYPE_CHECKING:  # base.py imports the strategies from here
    from ebmppl.samplers.base import LogDensityFn, Sampler

__all__ = [
    "Warmup", "WindowAdaptation", "StepSizeAdaptation", "MCLMCTuning", "NoAdaptation", "check_warmup",
    "window_schedule", "reinit_schedule", "warmup", "warmup_with_health", "STALL_ACCEPTANCE",
]

#: A chain whose mean acceptance over a warm-up window (or over the draws) is below this is stalled.
STALL_ACCEPTANCE = 0.01


def window_schedule(num_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Stan-style windows: ``(collect, window_end)`` boolean arrays of length ``num_steps``.

    ``collect[t]``: step ``t`` lies in a slow window (its positions feed the
    mass-matrix estimate). ``window_end[t]``: a slow window closes after step ``t``.

    Examples
    --------
    >>> collect, end = window_schedule(100)
    >>> int(collect.sum()), np.flatnonzero(end).tolist()
    (75, [24, 44, 89])
    """
    collect = np.zeros(num_steps, dtype=bool)
    end = np.zeros(num_steps, dtype=bool)
    if num_steps < 20:  # too short for windows: step size only
        return collect, end
    first = int(0.15 * num_steps)
    last = int(0.1 * num_steps)
    slow = num_steps - first - last
    start, size = first, max(slow // 7, 1)  # windows of size w, 2w, 4w: 7w in all
    while start < first + slow:
        stop = min(start + size, first + slow)
        if first + slow - stop < 2 * size:  # the next window would be too short: merge it
            stop = first + slow
        collect[start:stop] = True
        end[stop - 1] = True
        start, size = stop, 2 * size
    return collect, end


def reinit_schedule(num_steps: int) -> np.ndarray:
    """Warm-up steps after which stalled chains are restarted from healthy ones (boolean, length ``num_steps``).

    The end of the initial fast window (15 % of warm-up) and the end of every
    slow window of :func:`window_schedule`; none for fewer than 20 steps.
    The same checkpoints serve every adapted sampler, with or without a mass matrix.

    Examples
    --------
    >>> np.flatnonzero(reinit_schedule(100)).tolist()
    [14, 24, 44, 89]
    >>> int(reinit_schedule(10).sum())
    0
    """
    _, end = window_schedule(num_steps)
    check = end.copy()
    if num_steps >= 20:
        check[int(0.15 * num_steps) - 1] = True
    return check


# ------------------------------------------------------------------ strategies
class Warmup(eqx.Module):
    """A warm-up strategy: what :func:`warmup` tunes before sampling, and how.

    A sampler names its strategy in its ``warmup`` class attribute (see
    :class:`~ebmppl.samplers.Sampler`). The built-in strategies are
    :class:`WindowAdaptation`, :class:`StepSizeAdaptation`,
    :class:`MCLMCTuning` and :class:`NoAdaptation`; a new one subclasses
    :class:`Warmup` and implements :meth:`run`. Strategies are Equinox
    modules: two equal strategies compare and hash equal.

    Attributes
    ----------
    adapts
        Whether the strategy tunes kernel parameters (``False`` for
        :class:`NoAdaptation`: the user's parameters are used as given).

    Examples
    --------
    >>> WindowAdaptation() == WindowAdaptation(), WindowAdaptation() == NoAdaptation()
    (True, False)
    >>> WindowAdaptation().adapts, NoAdaptation().adapts
    (True, False)
    """

    adapts: ClassVar[bool] = True

    @abc.abstractmethod
    def run(self, sampler: Sampler, logdensity_fn: LogDensityFn, key: jax.Array, states: Any,
            params: dict[str, jax.Array], num_steps: int,
            reinit_stalled: bool) -> tuple[Any, dict[str, jax.Array], jax.Array]:
        """Run ``num_steps`` (> 0) warm-up steps on a batch of chains (leading chain axis).

        Returns ``(states, params, restarted_at)``: the chains' final states,
        the tuned kernel parameters shared by all chains, and per chain the
        warm-up step of its last restart (``-1``: never; see
        :func:`warmup_with_health`). Pure and jit-able.

        Examples
        --------
        MALA's strategy tunes the step size of four chains on a standard normal:

        >>> from ebmppl import samplers
        >>> s, ld = samplers.mala(), lambda x: -0.5 * jnp.sum(x**2)
        >>> states = jax.vmap(lambda x: s.init(None, x, ld))(jnp.zeros((4, 2)))
        >>> states, params, restarted = s.warmup.run(s, ld, jax.random.key(0), states, s.default_params(2), 100,
        ...                                          reinit_stalled=True)
        >>> states.position.shape, sorted(params), restarted.tolist()
        ((4, 2), ['step_size'], [-1, -1, -1, -1])
        """


class _Pooled(Warmup):
    """Dual averaging of one step size for all chains, and optionally Stan's windows for a pooled mass matrix."""

    tunes_step_size: ClassVar[bool]
    tunes_metric: ClassVar[bool]

    def run(self, sampler, logdensity_fn, key, states, params, num_steps, reinit_stalled):
        return _pooled_warmup(sampler, logdensity_fn, key, states, params, num_steps, self.tunes_step_size,
                              self.tunes_metric, reinit_stalled)


class WindowAdaptation(_Pooled):
    """Step size by dual averaging and a mass matrix from all chains pooled, in Stan's windows.

    For samplers whose kernel parameters include ``inverse_mass_matrix``
    (diagonal, or dense when the default parameters hold a matrix). The
    target acceptance is the sampler's ``target_acceptance``.

    Examples
    --------
    The strategy of HMC, NUTS, Barker and GHMC; a subclass may pick another:

    >>> from ebmppl import samplers
    >>> class StepOnlyHMC(samplers.HMC):
    ...     warmup = samplers.StepSizeAdaptation()
    >>> samplers.hmc().warmup, StepOnlyHMC().warmup.tunes_metric
    (WindowAdaptation(), False)
    """

    tunes_step_size = True
    tunes_metric = True


class StepSizeAdaptation(_Pooled):
    """The step size only, by dual averaging on the acceptance rate averaged over chains
    (towards the sampler's ``target_acceptance``). MALA's strategy.

    Examples
    --------
    >>> from ebmppl import samplers
    >>> isinstance(samplers.mala().warmup, StepSizeAdaptation), samplers.mala().target_acceptance
    (True, 0.574)
    """

    tunes_step_size = True
    tunes_metric = False


class MCLMCTuning(Warmup):
    """BlackJAX's ``mclmc_find_L_and_step_size`` on every chain; the median ``L``, step size and
    diagonal preconditioner are kept. Chains are not restarted (each is tuned on its own).

    Examples
    --------
    >>> from ebmppl import samplers
    >>> samplers.mclmc().warmup
    MCLMCTuning()
    """

    def run(self, sampler, logdensity_fn, key, states, params, num_steps, reinit_stalled):
        states, params = _mclmc_warmup(sampler, logdensity_fn, key, states, params, num_steps)
        return states, params, _never(states)


class NoAdaptation(_Pooled):
    """No tuning: the chains run ``num_steps`` steps with the parameters given (stalled chains are
    still restarted). The strategy of the unadjusted samplers, and of every sampler under ``adapt=False``.

    Examples
    --------
    >>> from ebmppl import samplers
    >>> [name for name in samplers.available() if not samplers.get_sampler(name).warmup.adapts]
    ['block_gibbs', 'discrete_metropolis', 'dula', 'gibbs', 'gibbs_with_gradients', 'langevin', 'sghmc', 'ula']
    """

    adapts: ClassVar[bool] = False
    tunes_step_size = False
    tunes_metric = False


_STRATEGIES = "WindowAdaptation(), StepSizeAdaptation(), MCLMCTuning() or NoAdaptation()"


def check_warmup(value: Any, name: str = "warmup") -> Warmup:
    """``value`` if it is a warm-up strategy, else a ``TypeError`` naming the choices.

    Examples
    --------
    >>> check_warmup(NoAdaptation())
    NoAdaptation()
    >>> check_warmup("window", "MySampler.warmup")
    Traceback (most recent call last):
    ...
    TypeError: MySampler.warmup must be a warm-up strategy object: WindowAdaptation(), StepSizeAdaptation(), ...; got 'window'.
    """
    if not isinstance(value, Warmup):
        raise TypeError(f"{name} must be a warm-up strategy object: {_STRATEGIES} (from ebmppl.samplers), or a "
                        f"subclass of ebmppl.samplers.Warmup; got {value!r}.")
    return value


# ------------------------------------------------------------------ drivers
def warmup(sampler: Sampler, logdensity_fn: LogDensityFn, key: jax.Array, states: Any, params: dict[str, jax.Array],
           num_steps: int, adapt: bool = True, reinit_stalled: bool = True) -> tuple[Any, dict[str, jax.Array]]:
    """Run ``num_steps`` warm-up steps on a batch of chains and return ``(states, params)``.

    Pure and jit-able (``sampler``, ``num_steps``, ``adapt`` and
    ``reinit_stalled`` static). ``states`` carry a leading chain axis;
    ``params`` are shared by all chains. The sampler's ``warmup`` strategy
    decides what is tuned (``adapt=False``: nothing, :class:`NoAdaptation`).
    With ``reinit_stalled`` a chain that stalls (acceptance below 1 % over a
    window, or a non-finite log-density) is restarted from a healthy chain at
    the checkpoints of :func:`reinit_schedule` (see the module note);
    :func:`warmup_with_health` also says which chains were.

    Examples
    --------
    >>> from ebmppl import samplers
    >>> from ebmppl.targets import gaussian
    >>> t = gaussian([0.0, 0.0], [[4.0, 0.0], [0.0, 0.25]])
    >>> s = samplers.nuts()
    >>> states = jax.vmap(lambda x: s.init(None, x, t.energy.logdensity_fn))(jnp.zeros((8, 2)))
    >>> states, params = jax.jit(warmup, static_argnums=(0, 5))(s, t.energy.logdensity_fn, jax.random.key(0),
    ...                                                         states, s.default_params(2), 500)
    >>> np.round(params["inverse_mass_matrix"], 1).tolist()   # close to the variances 4 and 0.25
    [3.9..., 0.2...]
    """
    states, params, _ = warmup_with_health(sampler, logdensity_fn, key, states, params, num_steps, adapt,
                                           reinit_stalled)
    return states, params


def warmup_with_health(
    sampler: Sampler,
    logdensity_fn: LogDensityFn,
    key: jax.Array,
    states: Any,
    params: dict[str, jax.Array],
    num_steps: int,
    adapt: bool = True,
    reinit_stalled: bool = True,
) -> tuple[Any, dict[str, jax.Array], jax.Array]:
    """:func:`warmup` that also returns, per chain, the warm-up step of its last restart (``-1``: never).

    Raises
    ------
    TypeError
        The sampler's ``warmup`` is not a warm-up strategy object.

    Examples
    --------
    A chain started where MALA's pooled step size cannot move it (far out on
    a steep slope) is restarted from a healthy chain at the first checkpoint:

    >>> from ebmppl import samplers
    >>> s = samplers.mala()
    >>> ld = lambda x: -0.5 * jnp.sum(x**2) - 0.25 * jnp.sum(x**4)
    >>> x0 = jnp.array([[0.5], [-0.3], [0.1], [40.0]])
    >>> states = jax.vmap(lambda x: s.init(None, x, ld))(x0)
    >>> run = jax.jit(warmup_with_health, static_argnums=(0, 1, 5))
    >>> states, params, restarted = run(s, ld, jax.random.key(0), states, s.default_params(1), 200)
    >>> restarted.tolist()
    [-1, -1, -1, 29]
    >>> bool(jnp.abs(states.position[3, 0]) < 5.0)
    True
    """
    strategy = check_warmup(getattr(sampler, "warmup", None), f"{type(sampler).__name__}.warmup")
    if num_steps == 0:
        return states, params, _never(states)
    return (strategy if adapt else NoAdaptation()).run(sampler, logdensity_fn, key, states, params, num_steps,
                                                       reinit_stalled)


def _never(states: Any) -> jax.Array:
    return jnp.full((jax.tree.leaves(states)[0].shape[0],), -1, dtype=jnp.int32)


def _flat_positions(sampler: Sampler, states: Any) -> jax.Array:
    positions = sampler.position(states)
    leaves = jax.tree.leaves(positions)
    return jnp.concatenate([leaf.reshape(leaf.shape[0], -1) for leaf in leaves], axis=1)


def _vmapped_step(sampler: Sampler, logdensity_fn: LogDensityFn):
    def step(key, states, params):
        keys = jax.random.split(key, jax.tree.leaves(states)[0].shape[0])
        return jax.vmap(sampler.step, in_axes=(0, 0, None, None))(keys, states, logdensity_fn, params)

    return step


def _restart_stalled(key, states, positions, logdensity, acceptance, has_acceptance):
    """Copy a random healthy chain's state over every stalled chain; return the states and the stalled mask."""
    n = logdensity.shape[0]
    stalled = ~(jnp.isfinite(logdensity) & jnp.all(jnp.isfinite(positions), axis=1))
    if has_acceptance:
        stalled = stalled | ~(acceptance >= STALL_ACCEPTANCE)
    healthy = ~stalled
    restart = stalled & jnp.any(healthy)
    source = jax.random.choice(key, n, (n,), p=healthy / jnp.maximum(healthy.sum(), 1))
    source = jnp.where(restart, source, jnp.arange(n))
    return jax.tree.map(lambda a: a[source], states), restart


def _empty_moments(dim: int, dense: bool) -> MassMatrixAdaptationState:
    """BlackJAX's mass-matrix adaptation state with no draws yet (a float count, for the batched update)."""
    init, _, _ = mass_matrix_adaptation(is_diagonal_matrix=not dense)
    state = init(dim)
    return state._replace(wc_state=state.wc_state._replace(sample_size=jnp.zeros(())))


def _pool(state: MassMatrixAdaptationState, positions: jax.Array) -> MassMatrixAdaptationState:
    """All chains' positions ``(n, dim)`` merged into the window's moments at once (BlackJAX's
    ``cgl_update_batch``: Welford's update for a batch, Chan et al.)."""
    wc = state.wc_state
    block = cgl_update_batch(MomentBlock(wc.sample_size, wc.mean, wc.m2), positions)
    return state._replace(wc_state=WelfordAlgorithmState(block.mean, block.m2, block.count))


def _pooled_warmup(sampler, logdensity_fn, key, states, params, num_steps, adapt_step_size, adapt_metric,
                   reinit_stalled):
    step = _vmapped_step(sampler, logdensity_fn)
    da_init, da_update, da_final = dual_averaging_adaptation(sampler.target_acceptance)
    if adapt_metric:
        collect, window_end = window_schedule(num_steps)
    else:
        collect = window_end = np.zeros(num_steps, dtype=bool)
    checkpoint = reinit_schedule(num_steps) if reinit_stalled else np.zeros(num_steps, dtype=bool)
    has_acceptance = not math.isnan(sampler.target_acceptance)
    imm0 = params.get("inverse_mass_matrix")
    dense = imm0 is not None and imm0.ndim == 2
    n_chains, dim = _flat_positions(sampler, states).shape
    moments0 = _empty_moments(dim, dense)
    _, _, regularised = mass_matrix_adaptation(is_diagonal_matrix=not dense)  # Stan's shrinkage towards 1e-3·I
    where = lambda c, new, old: jax.tree.map(lambda a, b: jnp.where(c, a, b), new, old)  # noqa: E731

    def check(states, da, params, acc_sum, count, logdensity, restarted, t, key):
        positions = _flat_positions(sampler, states)
        states, restart = _restart_stalled(key, states, positions, logdensity, acc_sum / count, has_acceptance)
        restarted = jnp.where(restart, t, restarted)
        if adapt_step_size:  # a chain moved: restart the step-size search from the current step size
            da = where(jnp.any(restart), da_init(params["step_size"]), da)
        return states, da, restarted

    def body(carry, xs):
        states, params, da, moments, acc_sum, count, restarted = carry
        key, collect_t, end_t, check_t, t = xs
        states, stats = step(key, states, params)
        # a NaN acceptance (a proposal at a NaN log-density) counts as a rejection
        accepted = jnp.nan_to_num(stats.acceptance_rate, nan=0.0)
        acc_sum, count = acc_sum + accepted, count + 1.0
        if adapt_step_size:
            da = da_update(da, jnp.mean(accepted))
            params = {**params, "step_size": jnp.exp(da.log_step_size)}
        if adapt_metric:
            moments = where(collect_t, _pool(moments, _flat_positions(sampler, states)), moments)
            metric = regularised(moments).inverse_mass_matrix
            params = {**params, "inverse_mass_matrix": jnp.where(end_t, metric, params["inverse_mass_matrix"])}
            # a new metric: restart the moments and the step-size search from here
            moments = where(end_t, moments0, moments)
            da = where(end_t, da_init(params["step_size"]), da)
        if reinit_stalled:
            states, da, restarted = jax.lax.cond(
                check_t,
                check,
                lambda states, da, *_: (states, da, restarted),
                states, da, params, acc_sum, count, stats.logdensity, restarted, t, jax.random.fold_in(key, 1),
            )
            acc_sum = jnp.where(check_t, 0.0, acc_sum)
            count = jnp.where(check_t, 0.0, count)
        return (states, params, da, moments, acc_sum, count, restarted), None

    # a sampler without a scalar step size (parallel tempering under adapt=False) runs untuned
    carry0 = (states, params, da_init(params.get("step_size", jnp.ones(()))), moments0, jnp.zeros(n_chains), jnp.zeros(()),
              _never(states))
    xs = (jax.random.split(key, num_steps), jnp.asarray(collect), jnp.asarray(window_end), jnp.asarray(checkpoint),
          jnp.arange(num_steps, dtype=jnp.int32))
    (states, params, da, _, _, _, restarted), _ = jax.lax.scan(body, carry0, xs)
    if adapt_step_size:
        params = {**params, "step_size": da_final(da)}
    return states, params, restarted


def _mclmc_warmup(sampler, logdensity_fn, key, states, params, num_steps):
    kernel = blackjax.mclmc.build_kernel()
    fraction = 0.3  # the tuner spends frac_tune1 + frac_tune2 + frac_tune3 of its budget

    def tune(state, key):
        state, tuned, _ = blackjax.mclmc_find_L_and_step_size(
            mclmc_kernel=kernel,
            num_steps=int(np.ceil(num_steps / fraction)),
            state=state,
            rng_key=key,
            logdensity_fn=logdensity_fn,
            diagonal_preconditioning=True,
        )
        return state, tuned

    keys = jax.random.split(key, jax.tree.leaves(states)[0].shape[0])
    states, tuned = jax.vmap(tune)(states, keys)
    params = {
        **params,
        "step_size": jnp.median(tuned.step_size),
        "L": jnp.median(tuned.L),
        "inverse_mass_matrix": jnp.median(tuned.inverse_mass_matrix, axis=0),
    }
    return states, params
