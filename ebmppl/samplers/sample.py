"""``sample``: many vectorised chains on an energy, with warm-up, thinning and timings."""

from __future__ import annotations

import dataclasses
import functools
import time
import warnings
import weakref
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from tqdm.auto import tqdm

from ebmppl._validation import check_energy, check_examples, check_int, check_key
from ebmppl.distributed import is_primary, to_host, to_local
from ebmppl.energy import Energy
from ebmppl.samplers.adaptation import STALL_ACCEPTANCE, reinit_schedule, warmup_with_health
from ebmppl.samplers.base import LogDensityFn, Sampler, StepStats
from ebmppl.samplers.discrete import BlockGibbs, bind_support, check_blocks, is_discrete
from ebmppl.support import Binary
from ebmppl.samplers.negatives import kernel_parameters
from ebmppl.samplers.registry import as_sampler
from ebmppl.samplers.tempering import reference_params
from ebmppl.sharding import check_divisible, replicate, resolve_mesh, shard_leading

__all__ = ["sample", "run_chains", "init_chains", "Samples", "ChainHealth", "ChainHealthWarning"]


class ChainHealthWarning(UserWarning):
    """Some chains of a :func:`sample` run are unhealthy: stalled (acceptance below 1 %),
    non-finite statistics, or restarted during warm-up after they had moved.

    The message names the chains and what to do. Turn it into an error with
    ``warnings.simplefilter("error", ChainHealthWarning)``.

    Examples
    --------
    >>> issubclass(ChainHealthWarning, UserWarning)
    True
    """


class ChainHealth(NamedTuple):
    """Per-chain health of a :func:`sample` run (``Samples.health``), from statistics the run collects anyway.

    Attributes
    ----------
    acceptance
        Mean acceptance rate of each chain over the kept draws (``nan`` for
        samplers without a Metropolis step).
    finite
        Whether each chain's positions and log-densities were finite at every kept draw.
    restarted_at
        Warm-up step at which each chain was last restarted from a healthy
        chain (``-1``: never); see :mod:`ebmppl.samplers.adaptation`.

    Examples
    --------
    >>> from ebmppl.targets import gaussian
    >>> out = sample(gaussian([0.0], [[1.0]]).energy, jax.random.key(0), sampler="mala", num_chains=2,
    ...              num_warmup=100, num_samples=50, progress_bar=False)
    >>> out.health.finite.tolist(), out.health.restarted_at.tolist(), out.health.unhealthy
    ([True, True], [-1, -1], [])
    """

    acceptance: np.ndarray
    finite: np.ndarray
    restarted_at: np.ndarray

    @property
    def stalled(self) -> np.ndarray:
        """Chains whose mean acceptance over the draws is below 1 % (``False`` where there is none)."""
        return np.asarray(self.acceptance < STALL_ACCEPTANCE)

    @property
    def unhealthy(self) -> list[int]:
        """Indices of the chains that are stalled or had non-finite statistics."""
        return np.flatnonzero(self.stalled | ~np.asarray(self.finite)).tolist()


class Samples(NamedTuple):
    """The result of :func:`sample`.

    Attributes
    ----------
    positions
        Draws shaped ``(chain, draw, *event_shape)`` (ArviZ's layout).
    stats
        :class:`~ebmppl.samplers.StepStats` per draw, each ``(chain, draw)``;
        with thinning, acceptance is averaged, divergences OR-ed and gradient
        evaluations summed over the thinned steps.
    params
        Kernel parameters after warm-up (step size, mass matrix, ...).
    states
        Final sampler states (leading chain axis): pass them to
        :func:`run_chains` to continue.
    sampler
        Name of the sampler.
    timings
        Seconds: ``compile`` (warm-up and sampling programs), ``warmup`` and
        ``sampling`` (run time only, compile excluded).
    health
        :class:`ChainHealth`: each chain's acceptance, finiteness and warm-up restart.
    postprocess
        For an energy from :func:`ebmppl.numpyro.model_energy`: the map from
        the flat unconstrained draws to the model's named, constrained sites
        (what :meth:`to_arviz` shows); ``None`` otherwise.

    Examples
    --------
    >>> from ebmppl.targets import gaussian
    >>> out = sample(gaussian([0.0], [[1.0]]).energy, jax.random.key(0), sampler="mala", num_chains=2,
    ...              num_warmup=100, num_samples=50, progress_bar=False)
    >>> out.positions.shape, out.stats.acceptance_rate.shape, out.sampler, sorted(out.timings)
    ((2, 50, 1), (2, 50), 'mala', ['compile', 'sampling', 'warmup'])
    """

    positions: jax.Array
    stats: StepStats
    params: dict[str, jax.Array]
    states: Any
    sampler: str
    timings: dict[str, float]
    health: ChainHealth | None = None
    postprocess: Callable[[jax.Array], dict[str, jax.Array]] | None = None

    def to_arviz(self, var_name: str = "x"):
        """Convert to ArviZ ``InferenceData`` (see :func:`ebmppl.diagnostics.to_inference_data`).

        The posterior holds ``var_name`` (the draws), or, for a NumPyro model
        sampled through :func:`ebmppl.numpyro.model_energy`, the model's named
        sites in their constrained space (deterministic sites included).

        Examples
        --------
        >>> from ebmppl.targets import gaussian
        >>> out = sample(gaussian([0.0], [[1.0]]).energy, jax.random.key(0), sampler="mala", num_chains=2,
        ...              num_warmup=100, num_samples=50, progress_bar=False)
        >>> idata = out.to_arviz()
        >>> idata.posterior["x"].shape
        (2, 50, 1)
        """
        from ebmppl._arviz import to_inference_data

        return to_inference_data(self, var_name=var_name)


def init_chains(sampler: Sampler, logdensity_fn: LogDensityFn, key: jax.Array, positions: jax.Array) -> Any:
    """Initialise one sampler state per row of ``positions`` (leading chain axis).

    Examples
    --------
    >>> from ebmppl import samplers
    >>> states = init_chains(samplers.mala(), lambda x: -jnp.sum(x**2), jax.random.key(0), jnp.ones((5, 2)))
    >>> states.position.shape, states.logdensity.tolist()
    ((5, 2), [-2.0, -2.0, -2.0, -2.0, -2.0])
    """
    keys = jax.random.split(key, positions.shape[0])
    return jax.vmap(sampler.init, in_axes=(0, 0, None))(keys, positions, logdensity_fn)


def run_chains(
    sampler: Sampler,
    logdensity_fn: LogDensityFn,
    key: jax.Array,
    states: Any,
    params: dict[str, jax.Array],
    num_draws: int,
    thinning: int = 1,
) -> tuple[Any, jax.Array, StepStats]:
    """Advance a batch of chains ``num_draws × thinning`` steps; the pure core of :func:`sample`.

    Jit-able with ``sampler``, ``logdensity_fn``, ``num_draws`` and
    ``thinning`` static. Returns ``(states, positions, stats)`` with positions
    ``(chain, draw, *event_shape)`` and stats ``(chain, draw)``.

    Examples
    --------
    >>> from ebmppl import samplers
    >>> s = samplers.mala(step_size=0.5)
    >>> ld = lambda x: -0.5 * jnp.sum(x**2)
    >>> states = init_chains(s, ld, jax.random.key(0), jnp.zeros((3, 2)))
    >>> states, xs, stats = run_chains(s, ld, jax.random.key(1), states, s.default_params(2), 10)
    >>> xs.shape, stats.acceptance_rate.shape
    ((3, 10, 2), (3, 10))
    """
    n_chains = jax.tree.leaves(states)[0].shape[0]
    one_step = jax.vmap(sampler.step, in_axes=(0, 0, None, None))

    def transition(states, chain_keys):
        return one_step(chain_keys, states, logdensity_fn, params)

    def draw(states, chain_keys):
        if thinning == 1:
            states, stats = transition(states, chain_keys)
        else:
            # each chain's draw key split into its `thinning` transition keys: one pass per draw
            step_keys = jnp.swapaxes(jax.vmap(lambda k: jax.random.split(k, thinning))(chain_keys), 0, 1)
            states, stats = jax.lax.scan(transition, states, step_keys)
            # a sampler's own extra statistics (parallel tempering's swaps, ...) keep their last value
            summed = stats
            stats = jax.tree.map(lambda a: a[-1], stats)._replace(
                acceptance_rate=stats.acceptance_rate.mean(0),
                is_divergent=stats.is_divergent.any(0),
                num_grad_evals=stats.num_grad_evals.sum(0),
            )
            if "num_energy_evals" in stats._fields:  # the discrete samplers' count, summed like the gradients'
                stats = stats._replace(num_energy_evals=summed.num_energy_evals.sum(0))
        return states, (sampler.position(states), stats)

    # every chain's key for every draw in one split, outside the loop (a split per
    # transition is one more threefry pass per step, which costs a cheap kernel ~8 % on CPU);
    # the keys take no more memory than the draws they produce
    keys = jax.random.split(key, (num_draws, n_chains))
    states, (positions, stats) = jax.lax.scan(draw, states, keys)
    # scan stacks draws first: (draw, chain, ...) -> (chain, draw, ...)
    swap = lambda a: jnp.swapaxes(a, 0, 1)
    return states, jax.tree.map(swap, positions), jax.tree.map(swap, stats)


@functools.partial(jax.jit, static_argnums=2)
def _assemble(positions, stats, num_samples):
    # the chunks joined in one compiled call (op by op it was ~5 % of a short run),
    # with each chain's health from the statistics already there, and the moments the
    # disagreement check needs (on the host in numpy they took a third of a long run's wall time)
    join = lambda *a: jnp.concatenate(a, axis=1)[:, :num_samples]  # noqa: E731
    positions = join(*positions)
    stats = jax.tree.map(join, *stats)
    n = positions.shape[0]
    finite_positions = jnp.all(jnp.isfinite(positions.reshape(n, -1)), axis=1)
    finite = finite_positions & jnp.all(jnp.isfinite(stats.logdensity), axis=1)
    acceptance = jnp.nanmean(stats.acceptance_rate, axis=1)
    moments = _moments(positions, jnp) if n >= 2 and num_samples >= RHAT_MIN_DRAWS else None
    return positions, stats, finite_positions, finite, acceptance, moments


def _start(sampler, energy, init, key):
    """Initial states, and whether each chain's log-density and its gradient are finite there."""
    ld = energy.logdensity_fn
    states = init_chains(sampler, ld, key, init)
    value, grad = jax.vmap(jax.value_and_grad(ld))(init)
    n = init.shape[0]
    finite = jnp.isfinite(value) & jnp.all(jnp.isfinite(grad.reshape(n, -1)), axis=1)
    return states, finite


def _chains(indices) -> str:
    indices = [int(i) for i in indices]
    shown = ", ".join(map(str, indices[:20])) + (", ..." if len(indices) > 20 else "")
    return f"chain{'s' if len(indices) > 1 else ''} {shown}"


def _init_error(bad, num_chains, init, origin):
    where = "[" + ", ".join(f"{v:.3g}" for v in np.asarray(init[bad[0]]).ravel()[:4].tolist()) + "]"
    return ValueError(
        f"init: the log-density -E(x)/T or its gradient is not finite (NaN or inf) at the starting "
        f"positions of {_chains(bad)} of {num_chains} (e.g. chain {int(bad[0])} starts at {where}), "
        f"from {origin}. A chain started there cannot move (NUTS/HMC then adapt the step size to zero). "
        "Pass init=... with shape (num_chains, *event_shape) at points where the energy is finite, "
        "or fix the energy there (e.g. clip the argument of sqrt/log, or return a large finite energy "
        "outside the domain)."
    )


#: warm-up shrinking the step size below this fraction of where it started is reported (a collapse)
STEP_COLLAPSE = 1e-5


def _collapse(initial: float | None, adapted: Any, positions: jax.Array) -> str | None:
    """A sentence when warm-up shrank the step size by more than ``1 / STEP_COLLAPSE`` AND the chains sit apart
    (each chain's draws spread far less than the chains' means: a tiny target scale alone is not reported)."""
    if initial is None or adapted is None or positions.shape[0] < 2:
        return None
    final = float(np.min(np.asarray(adapted)))
    if not final < STEP_COLLAPSE * initial:
        return None
    x = np.asarray(positions, np.float64).reshape(positions.shape[0], positions.shape[1], -1)
    within, between = x.var(axis=1).mean(axis=0), x.mean(axis=1).var(axis=0)
    if not np.any(between > 100.0 * within):  # chains agree: a small step that suits a small target
        return None
    return (f"warm-up shrank the step size from {initial:.3g} to {final:.3g}: chains that move that little "
            "cannot have explored the target, whatever their acceptance, and their draws are not from it. Check "
            "the energy (a scale error, a NaN or cliff region, a kernel whose proposal ignores the step), "
            "start the chains elsewhere (init=...), or give a step size that suits the target's scale "
            "(sampler_params={'step_size': ...}) with adapt=False.")


#: split R-hat above this (Vehtari et al. 2021) is reported: the chains disagree
RHAT_LIMIT = 1.01
#: draws per chain below which R-hat is too noisy to judge (not computed)
RHAT_MIN_DRAWS = 100


class _Moments(NamedTuple):
    """What the disagreement check needs of ``(chain, draw, ...)`` draws, per coordinate (a few numbers per chain)."""

    half_mean: Any  # (2·chains, d): each chain's first and second half, as R-hat splits them
    half_var: Any  # (2·chains, d), ddof 1
    batch_mean: Any  # (chains, batches, d): means of consecutive batches of draws
    chain_mean: Any  # (chains, d)


def _num_batches(num_draws: int) -> int:
    return max(4, min(20, num_draws // 50))


def _moments(positions: Any, xp: Any = np) -> _Moments:
    """The moments with ``xp = numpy`` (float64, host) or ``jax.numpy`` (inside :func:`_assemble`, on the devices).

    Draws are shifted by the first chain's first draw before summing: the spreads then keep their digits in
    float32 whatever the offset of the target (a mean of 1e4 with unit spread).
    """
    num_chains, num_draws = positions.shape[:2]
    x = xp.reshape(xp.asarray(positions), (num_chains, num_draws, -1))
    x = x.astype(np.float64 if xp is np else jnp.result_type(float))
    shift = x[0, 0]
    x = x - shift
    half, nb = num_draws // 2, _num_batches(num_draws)
    first, second = x[:, :half], x[:, half:2 * half]
    length = num_draws // nb
    return _Moments(
        half_mean=xp.concatenate([first.mean(axis=1), second.mean(axis=1)]),
        half_var=xp.concatenate([first.var(axis=1, ddof=1), second.var(axis=1, ddof=1)]),
        batch_mean=x[:, :nb * length].reshape(num_chains, nb, length, -1).mean(axis=2),
        chain_mean=x.mean(axis=1) + shift,
    )


def _rhat(m: _Moments, num_draws: int) -> np.ndarray:
    half = num_draws // 2
    within = np.asarray(m.half_var, np.float64).mean(axis=0)
    between = half * np.asarray(m.half_mean, np.float64).var(axis=0, ddof=1)
    pooled = (half - 1) / half * within + between / half
    with np.errstate(divide="ignore", invalid="ignore"):
        rhat = np.sqrt(pooled / within)
    return np.where(within > 0, rhat, np.where(between > 0, np.inf, 1.0))


def split_rhat(positions: Any) -> np.ndarray:
    """Split R-hat (Gelman et al. 2013) of every coordinate of ``(chain, draw, *event_shape)`` draws.

    Vectorised over coordinates (cheap for any dimension); the rank-normalised
    version is :func:`ebmppl.diagnostics.rhat`.

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(4, 500, 2))
    >>> bool(np.all(split_rhat(x) < 1.01)), bool(split_rhat(x + np.arange(4)[:, None, None])[0] > 1.5)
    (True, True)
    """
    positions = np.asarray(positions)
    return _rhat(_moments(positions), positions.shape[1])


def _disagreement(positions: Any, discrete: bool = False, moments: _Moments | None = None) -> str | None:
    """A sentence when the chains disagree beyond their Monte-Carlo error, or None.

    A coordinate is reported when its split R-hat exceeds ``RHAT_LIMIT`` AND the
    spread of the chains' means is beyond what each chain's own Monte-Carlo
    error allows: an F test of the chain means' variance against the variance
    of a chain mean predicted from batch means within the chains
    (Bonferroni-corrected over coordinates, level 0.001). So a short run of a
    slowly mixing but unimodal sampler (R-hat a little over 1.01 from noise
    alone) is not called disagreement; chains sitting in different modes are.
    ``moments`` (from :func:`_assemble`) spares the pass over the draws.
    """
    from scipy.stats import f as f_distribution

    num_chains, num_draws = positions.shape[:2]
    if num_chains < 2 or num_draws < RHAT_MIN_DRAWS:
        return None
    m = _moments(np.asarray(positions)) if moments is None else moments
    batch_means = np.asarray(m.batch_mean, np.float64)
    num_batches = batch_means.shape[1]
    between = batch_means.mean(axis=1).var(axis=0, ddof=1)
    expected = batch_means.var(axis=1, ddof=1).mean(axis=0) / num_batches  # variance of one chain's mean
    with np.errstate(divide="ignore", invalid="ignore"):
        p_value = f_distribution.sf(between / expected, num_chains - 1, num_chains * (num_batches - 1))
    p_value = np.where((expected == 0) & (between > 0), 0.0, p_value)
    rhat = _rhat(m, num_draws)
    bad = np.flatnonzero((rhat > RHAT_LIMIT) & (p_value < 1e-3 / rhat.size))
    if not bad.size:
        return None
    worst = int(bad[np.argmax(np.nan_to_num(rhat[bad], nan=np.inf))])
    means = np.asarray(m.chain_mean, np.float64)[:, worst]
    shown = ", ".join(f"{m:.3g}" for m in means[:8]) + (", ..." if means.size > 8 else "")
    return (f"the chains disagree: split R-hat {rhat[worst]:.4f} > {RHAT_LIMIT} in {bad.size} of {rhat.size} "
            f"coordinates (coordinate {worst}: chain means {shown}). Pooled draws then weigh the regions the chains "
            "happen to sit in, not the target's — typical of a multimodal energy (each chain keeps to its mode) or "
            "of too few draws. Run more chains from spread-out starts (init=...) for longer, or "
            + ("use a kernel that moves further per step (sampler='dmala'; 'block_gibbs' where blocks do not "
               "interact); parallel tempering does not take discrete energies yet; for a small model, ebmppl."
               "discrete.exact_expectation gives the exact answer" if discrete else
               "sample with samplers.parallel_tempering(...), which moves between modes")
            + "; for mode weights, compare against ebmppl.compare or a log_partition-based check rather than "
            "trusting one run.")


def _health_report(sampler, health, num_warmup, divergent=None, collapse=None, disagreement=None):
    """A ChainHealthWarning naming every unhealthy chain (and divergent transitions), or None."""
    lines = [collapse] if collapse else []
    per_chain = np.zeros(0) if divergent is None else divergent.reshape(divergent.shape[0], -1).sum(1)
    if per_chain.sum():
        chains = np.flatnonzero(per_chain)
        lines.append(
            f"{int(per_chain.sum())} divergent transitions after warm-up ({_chains(chains)}): the integrator "
            "cannot follow the geometry there, and the draws may miss that region (biased). Reparametrise "
            "(e.g. a non-centred form), or raise the target acceptance / lower the step size."
        )
    stalled = np.flatnonzero(health.stalled)
    if stalled.size:
        acc = ", ".join(f"{float(health.acceptance[i]):.3f}" for i in stalled[:20])
        lines.append(
            f"{_chains(stalled)} accepted less than {STALL_ACCEPTANCE:.0%} of proposals over the draws "
            f"(mean acceptance {acc}): stuck where they are, their draws are not from the target; start them "
            "elsewhere (init=...), use more warm-up, or reparametrise the model."
        )
    nonfinite = np.flatnonzero(~np.asarray(health.finite))
    if nonfinite.size:
        lines.append(
            f"{_chains(nonfinite)} had a non-finite log-density at some draws: the energy is NaN or inf "
            "where they went; check it (overflow, log/sqrt of a negative) or lower the step size."
        )
    first = np.flatnonzero(reinit_schedule(num_warmup))
    late = np.flatnonzero(health.restarted_at > (first[0] if first.size else -1))
    if late.size:
        lines.append(
            f"{_chains(late)} stalled during warm-up after moving (acceptance below "
            f"{STALL_ACCEPTANCE:.0%} over a warm-up window, restarted at step{'s' if late.size > 1 else ''} "
            f"{', '.join(str(int(health.restarted_at[i])) for i in late[:20])}) from healthy chains: the "
            "region they were in may be one the sampler cannot explore with one step size for all chains "
            "(e.g. a funnel's neck). Check the posterior there, or reparametrise (e.g. non-centred form)."
        )
    if disagreement and not stalled.size and not nonfinite.size:  # stuck or broken chains already explain it
        if sampler == "parallel_tempering":
            disagreement = disagreement.split(" Run more chains")[0] + (
                " Parallel tempering did not connect the modes: read samplers.tempering_summary(samples) (chains "
                "without round trips, low swap acceptance), give the reference every mode (sampler_params "
                "reference_mean / reference_scale), add replicas (num_replicas) or warm up longer.")
        lines.append(disagreement)
    if not lines:
        return None
    return ChainHealthWarning(f"{sampler}: " + " ".join(lines))


def _warm(sampler, num_warmup, adapt, reinit_stalled, energy, states, params, key):
    return warmup_with_health(sampler, energy.logdensity_fn, key, states, params, num_warmup, adapt, reinit_stalled)


def _draw(sampler, num_draws, thinning, energy, states, params, key):
    return run_chains(sampler, energy.logdensity_fn, key, states, params, num_draws, thinning)


# Compiled programs live exactly as long as the energy function they were compiled for.
#
# jax keeps its traced and compiled programs in caches keyed *weakly* on the jitted function and
# strongly on everything else in the call signature (the pytree structure of the arguments, which
# holds an Energy's static ``energy_fn``). One module-level jitted function would therefore pin the
# programs of every energy ever sampled (an unbounded leak in a long-running process: ~3 MB per
# program). Instead each energy function gets its own jitted runner, registered here under a weak
# reference: the energy is passed to it without its function (rebuilt inside from the weak
# reference), so nothing jax caches refers back to the function. While the function lives, its
# programs are reused by every ``sample`` call (same sampler value, shapes and options); when it is
# collected, the entry goes, the runner goes, and jax's weak caches drop the programs.
_RUNNERS: dict[int, tuple[weakref.ref, Callable]] = {}


def _run(fn_ref, program, options, spec, dynamic, *args):
    cls, static, names = spec
    energy = object.__new__(cls)  # the Energy rebuilt field by field, as jax unflattens a pytree
    for name, value in (("energy_fn", fn_ref()), *static, *zip(names, dynamic)):
        object.__setattr__(energy, name, value)
    return program(*options, energy, *args)


def _split(energy: Energy) -> tuple[tuple, tuple]:
    """The energy without its function: (class, static fields, names of the others), (the others' values)."""
    fields = [f for f in dataclasses.fields(energy) if f.name != "energy_fn"]
    static = tuple((f.name, getattr(energy, f.name)) for f in fields if f.metadata.get("static", False))
    names = tuple(f.name for f in fields if not f.metadata.get("static", False))
    return (type(energy), static, names), tuple(getattr(energy, name) for name in names)


def _runner(energy_fn: Callable) -> Callable:
    """The jitted runner of ``sample``'s programs for energies with this function (see ``_RUNNERS``)."""
    key = id(energy_fn)
    entry = _RUNNERS.get(key)
    if entry is not None and entry[0]() is energy_fn:
        return entry[1]

    def forget(ref, key=key):
        if _RUNNERS.get(key, (None,))[0] is ref:
            del _RUNNERS[key]

    try:
        ref = weakref.ref(energy_fn, forget)
    except TypeError:  # not weak-referenceable: a runner for this call only, collected after it
        return jax.jit(functools.partial(_run, lambda: energy_fn), static_argnums=(0, 1, 2))
    runner = jax.jit(functools.partial(_run, ref), static_argnums=(0, 1, 2))
    _RUNNERS[key] = (ref, runner)
    return runner


def _compile(energy: Energy, program: Callable, options: tuple, *args: Any) -> tuple[Callable, float]:
    """``program(*options, energy, *args)`` compiled ahead of time, and the seconds that took (tracing,
    lowering and XLA; ~0 when jax's caches hold the program already). Nothing is stored here: the
    compiled object is used by the caller and dropped."""
    spec, dynamic = _split(energy)
    t0 = time.perf_counter()
    compiled = _runner(energy.energy_fn).lower(program, options, spec, dynamic, *args).compile()
    seconds = time.perf_counter() - t0
    return functools.partial(compiled, dynamic), seconds


def _kernel_params(sampler: Sampler, dim: int, overrides: dict[str, Any] | None) -> dict[str, jax.Array]:
    """The sampler's default kernel parameters with the ``sampler_params`` overrides, validated."""
    params = kernel_parameters(sampler, dim, overrides)
    defaults = sampler.default_params(dim)
    for name in overrides or {}:
        shape, expected = np.shape(params[name]), np.shape(defaults[name])
        if shape != expected and not (name == "inverse_mass_matrix" and shape in ((dim,), (dim, dim))):
            raise ValueError(f"sampler_params[{name!r}] has shape {shape}, but {sampler.name}'s {name} has shape "
                             f"{expected} for this energy's {dim} coordinates; pass one of that shape.")
    return params


def _validate(energy, num_chains, num_samples, num_warmup, thinning, init):
    if isinstance(getattr(energy, "energy", None), Energy) and hasattr(energy, "init_positions"):
        energy = energy.energy  # a ModelEnergy from ebmppl.numpyro.model_energy
    check_energy(energy)  # a plain function: says how to wrap it in an Energy
    for name, value, low in (("num_chains", num_chains, 1), ("num_samples", num_samples, 1),
                             ("num_warmup", num_warmup, 0), ("thinning", thinning, 1)):
        check_int(name, value, low)
    if init is not None:
        init = check_examples("init", init, energy.event_shape, num_chains, "pass finite starting positions.")
    return energy, init


def _check_on_support(init: jax.Array, support: Any, event_shape: tuple[int, ...]) -> None:
    """A ValueError naming the chains whose ``init`` is not a state of the discrete ``support``."""
    inside = np.asarray(support.contains(init, event_shape))
    if not inside.all():
        bad = np.flatnonzero(~inside)
        raise ValueError(f"init: the starting states of {_chains(bad)} are not states of the energy's support "
                         f"{support!r} (e.g. chain {int(bad[0])}); pass init=... with values of the support only "
                         "(0./1. for BINARY, -1./+1. for SPINS, one-hot rows for Categorical), or leave init=None "
                         "for uniform draws of the support.")


def sample(
    energy: Energy,
    key: jax.Array,
    *,
    sampler: str | Sampler = "nuts",
    sampler_params: dict[str, Any] | None = None,
    num_chains: int = 4,
    num_samples: int = 1000,
    num_warmup: int = 1000,
    thinning: int = 1,
    init: jax.Array | None = None,
    adapt: bool = True,
    progress_bar: bool = True,
    devices: Sequence[jax.Device] | int | str | Mesh | None = "auto",
    reinit_stalled: bool = True,
) -> Samples:
    """Draw samples from ``p(x) ∝ exp(-E(x)/T)`` with many chains in parallel.

    Chains are vmapped inside one jitted ``lax.scan``; the scan is run in
    chunks from Python only to drive the progress bar.

    Chain health is checked at every stage, from statistics the run computes
    anyway: a chain whose log-density (or its gradient) is not finite at its
    starting position is an error naming ``init`` and the chains; a chain
    that stalls in warm-up is restarted from a healthy one (``reinit_stalled``);
    after sampling a :class:`ChainHealthWarning` names every chain with mean
    acceptance below 1 % or non-finite statistics (``Samples.health`` holds
    the per-chain figures).

    Parameters
    ----------
    energy
        The :class:`~ebmppl.Energy` to sample, or a
        :class:`~ebmppl.numpyro.ModelEnergy` (the energy of a NumPyro model).
        A model's energy (``model_energy(...).energy`` or the ``ModelEnergy``
        itself) starts from NumPyro's initialisation and returns ``Samples``
        whose :meth:`~Samples.to_arviz` shows the model's named, constrained sites.
    key
        A ``jax.random`` key. The same key gives bit-identical draws.
    sampler
        A registered name (see :func:`ebmppl.samplers.available`) or a
        :class:`~ebmppl.samplers.Sampler` from a builder such as
        ``samplers.hmc(num_integration_steps=32)``. A discrete energy takes a
        discrete sampler (``"gibbs"``, ``"gibbs_with_gradients"``, ``"dmala"``,
        ...; :mod:`ebmppl.samplers.discrete`), which is given the energy's
        support; its warm-up is the sampler's own (DMALA tunes its step size,
        the others run untuned), with no mass matrix or typical region.
    sampler_params
        Kernel parameters overriding the sampler's ``default_params`` before
        warm-up, e.g. ``{"step_size": 0.05}`` (with ``adapt=False``, exactly
        the parameters used). An unknown name is a ``ValueError`` listing the
        sampler's parameters.
    num_chains, num_samples, num_warmup, thinning
        Chains; kept draws per chain; warm-up steps; steps per kept draw.
    init
        Starting positions ``(num_chains, *event_shape)``; default uniform
        on ``[-2, 2]`` in every coordinate (as Stan and NumPyro), or on
        ``center ± 2·scale`` of :meth:`Energy.typical_region` where the energy
        declares one (e.g. energies returned by :func:`ebmppl.fit`); for a
        NumPyro model, NumPyro's ``init_to_uniform`` per chain, redrawn where
        the potential or its gradient is not finite (as NumPyro's MCMC does).
        The energy and its gradient must be finite at every starting position.
        For a discrete energy (``energy.support`` binary or categorical):
        uniform draws of the support, and a given ``init`` must hold states of
        the support (values as floats, one-hot rows for categorical).
    adapt
        Tune step size (and mass matrix) during warm-up; see
        :mod:`ebmppl.samplers.adaptation` for what each sampler gets.
    progress_bar
        Show a tqdm bar over warm-up and sampling.
    devices
        Shard the chains across devices. Default ``"auto"``: every device
        where it pays (on a CPU ``import ebmppl`` makes one JAX device per
        core; ``EBMPPL_CPU_DEVICES=1`` opts out), splitting the chains over
        the most devices that give each at least
        ``ebmppl.sharding.AUTO_MIN_PER_DEVICE`` chains (fewer: one device).
        ``None`` (or ``1``): one device. Or ``"all"``, a number of devices,
        a list of devices or a one-axis ``Mesh`` (see
        :mod:`ebmppl.sharding`); then ``num_chains`` must be a multiple of
        the device count. Each chain's random stream is the same whatever
        the device count: fixed kernel parameters give the same draws to
        float rounding (usually bit for bit on element-wise energies; a
        Metropolis decision at its boundary may still send a chain another
        way); pooled warm-up statistics are summed in another order, so
        adapted chains agree in law.
    reinit_stalled
        Restart chains that stall in warm-up (mean acceptance below 1 % over a
        warm-up window, or a non-finite log-density) from the state of a
        random healthy chain, at the end of the initial fast window and of
        every slow window (see :mod:`ebmppl.samplers.adaptation`). Restarts
        after the first checkpoint are reported by a :class:`ChainHealthWarning`.

    Returns
    -------
    Samples
        Positions ``(chain, draw, *event_shape)``, per-draw stats, adapted
        parameters, final states, timings and per-chain health.

    Raises
    ------
    ValueError
        Unknown sampler name; an unknown ``sampler_params`` name, a
        non-positive step size or a parameter of the wrong shape; non-positive
        counts; ``init`` of the wrong shape or not finite, or (discrete energies) not on the support; the energy
        or its gradient not finite at the starting position of some chains (the message names them); a discrete
        sampler built for another support than the energy's.
    FloatingPointError
        The draws of some chains are not finite (the chains diverged).

    Warns
    -----
    ChainHealthWarning
        Chains with mean acceptance below 1 % or non-finite log-densities
        over the draws, and chains restarted late in warm-up.
    TypeError
        ``energy`` is not an :class:`~ebmppl.Energy`; ``init`` not floating point; a discrete sampler on a
        continuous energy, or a continuous one on a discrete energy (the message names the samplers to use).

    Examples
    --------
    >>> import jax
    >>> from ebmppl import sample
    >>> from ebmppl.targets import gaussian
    >>> target = gaussian([1.0, -1.0], [[1.0, 0.5], [0.5, 2.0]])
    >>> out = sample(target.energy, jax.random.key(0), sampler="nuts", num_chains=4,
    ...              num_warmup=300, num_samples=500, progress_bar=False)
    >>> out.positions.shape
    (4, 500, 2)
    >>> bool(jnp.allclose(out.positions.mean((0, 1)), jnp.array([1.0, -1.0]), atol=0.2))
    True
    """
    energy, init = _validate(energy, num_chains, num_samples, num_warmup, thinning, init)
    check_key(key)
    mesh = resolve_mesh(devices, size=num_chains)
    check_divisible("num_chains", num_chains, mesh)
    sampler = bind_support(as_sampler(sampler), energy)  # a discrete sampler takes the energy's support
    support = getattr(energy, "support", None)
    discrete = is_discrete(support)

    k_init, k_states, k_warm, k_draw = jax.random.split(key, 4)
    # an energy made by ebmppl.numpyro.model_energy knows its model: NumPyro's init and post-processing
    model = energy.energy_fn if getattr(energy.energy_fn, "_ebmppl_model_potential", False) else None
    if init is not None:
        origin = "the init you passed"
        if discrete:
            _check_on_support(init, support, energy.event_shape)
    elif discrete:  # uniform on the support; no typical region, no reference: those are continuous notions
        init = support.uniform(k_init, (num_chains,), energy.event_shape)
        origin = f"the default init (uniform on the support {support!r})"
    elif model is not None:
        init, origin = model.init_positions(k_init, num_chains), "NumPyro's initialisation of the model"
    else:
        center, scale = energy.typical_region()
        init = center + scale * jax.random.uniform(k_init, (num_chains, *energy.event_shape), minval=-2.0, maxval=2.0)
        origin = "the default init (uniform on center ± 2·scale of energy.typical_region(): [-2, 2] by default)"
    if (isinstance(sampler, BlockGibbs) and sampler.blocks is not None and isinstance(support, Binary)
            and sum(len(b) * (len(b) - 1) // 2 for b in sampler.blocks) <= 20_000):
        # the kernel's one assumption, checked where it is cheap: interacting blocks would sample the wrong law
        probes = support.uniform(jax.random.fold_in(k_init, 1), (4,), energy.event_shape)
        check_blocks(energy.logdensity_fn, sampler.blocks, probes, support)
    params = _kernel_params(sampler, energy.dim, sampler_params)
    if not discrete:  # parallel tempering's Gaussian reference, from the typical region (continuous only)
        params = reference_params(params, energy, sampler_params)
    initial_step = float(params["step_size"]) if "step_size" in params else None
    # the compiled programs follow the placement of their inputs: chains sharded, everything else replicated
    init, (energy, params) = shard_leading(init, mesh), replicate((energy, params), mesh)

    start_c, t_compile_start = _compile(energy, _start, (sampler,), init, k_states)
    states, init_ok = start_c(init, k_states)
    # every leaf of the states sharded by chain (leaves that do not depend on the start, e.g. parallel
    # tempering's counters, come out of the start program replicated, and the draw program would then
    # expect them replicated while producing them sharded)
    states = shard_leading(states, mesh)
    init_ok = to_host(init_ok)
    if not init_ok.all():
        raise _init_error(np.flatnonzero(~init_ok), num_chains, to_host(init), origin)

    num_chunks = min(10, num_samples)  # independent of progress_bar: same key, same draws
    chunk = -(-num_samples // num_chunks)
    on_devices = "" if mesh is None or mesh.size == 1 else f" ({mesh.size} devices)"
    bar = tqdm(total=num_warmup + num_samples, desc=f"{sampler.name} warmup{on_devices}",
               disable=not (progress_bar and is_primary()), leave=False)
    if num_warmup:
        warm_c, t_compile_warm = _compile(energy, _warm, (sampler, num_warmup, adapt, reinit_stalled), states,
                                          params, k_warm)
        t0 = time.perf_counter()
        states, params, restarted_at = jax.block_until_ready(warm_c(states, params, k_warm))
        t_warm = time.perf_counter() - t0
    else:  # no warm-up, no program to compile for it (chains continued by hand, JEM's conditional draws, ...)
        t_compile_warm, t_warm, restarted_at = 0.0, 0.0, np.full(num_chains, -1, np.int32)
    bar.update(num_warmup)

    draw_c, t_compile_draw = _compile(energy, _draw, (sampler, chunk, thinning), states, params, k_draw)
    bar.set_description(f"{sampler.name} sampling{on_devices}")
    positions, stats = [], []
    chunk_keys = list(jax.block_until_ready(jax.random.split(k_draw, num_chunks)))
    t0 = time.perf_counter()  # times the compiled sampling program only
    for key_chunk in chunk_keys:
        states, xs, st = draw_c(states, params, key_chunk)
        positions.append(xs)
        stats.append(st)
        if progress_bar:
            jax.block_until_ready(xs)
            bar.update(min(chunk, num_samples + num_warmup - bar.n))
    jax.block_until_ready(states)
    t_draw = time.perf_counter() - t0
    positions, stats, finite_positions, finite, acceptance, moments = _assemble(positions, stats, num_samples)
    # chains spread over several processes (jax.distributed): every process gets all the draws, process-local
    positions, stats, restarted_at, moments = to_local((positions, stats, restarted_at, moments))
    bar.close()
    finite_positions = to_host(finite_positions)
    if not finite_positions.all():
        raise FloatingPointError(
            f"{sampler.name} produced non-finite positions in {_chains(np.flatnonzero(~finite_positions))} of "
            f"{num_chains}: the chains diverged. Lower the step size, use more warm-up, or check the energy "
            "for overflow."
        )
    health = ChainHealth(*to_host((acceptance, finite, restarted_at)))
    report = _health_report(sampler.name, health, num_warmup, np.asarray(stats.is_divergent),
                            _collapse(initial_step, to_host(params.get("step_size")), positions),
                            _disagreement(positions, discrete, moments))
    if report is not None:
        warnings.warn(report, stacklevel=2)
    timings = {"compile": t_compile_start + t_compile_warm + t_compile_draw, "warmup": t_warm, "sampling": t_draw}
    postprocess = model.postprocess if model is not None else None
    return Samples(positions, stats, params, states, sampler.name, timings, health, postprocess)
