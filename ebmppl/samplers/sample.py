"""``sample``: many vectorised chains on an energy, with warm-up, thinning and timings."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from tqdm.auto import tqdm

from ebmppl._validation import check_examples, check_int
from ebmppl.energy import Energy
from ebmppl.samplers.adaptation import warmup
from ebmppl.samplers.base import LogDensityFn, Sampler, StepStats
from ebmppl.samplers.registry import get_sampler
from ebmppl.sharding import check_divisible, replicate, resolve_mesh, shard_leading

__all__ = ["sample", "run_chains", "init_chains", "Samples"]


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

    def to_arviz(self, var_name: str = "x"):
        """Convert to ArviZ ``InferenceData`` (see :func:`ebmppl.diagnostics.to_inference_data`).

        Examples
        --------
        >>> from ebmppl.targets import gaussian
        >>> out = sample(gaussian([0.0], [[1.0]]).energy, jax.random.key(0), sampler="mala", num_chains=2,
        ...              num_warmup=100, num_samples=50, progress_bar=False)
        >>> idata = out.to_arviz()
        >>> idata.posterior["x"].shape
        (2, 50, 1)
        """
        from ebmppl.diagnostics import to_inference_data

        return to_inference_data(self, var_name=var_name)


def _logdensity(energy: Energy) -> LogDensityFn:
    return lambda x: -energy.energy_fn(energy.params, x) / energy.temperature


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
            stats = StepStats(
                acceptance_rate=stats.acceptance_rate.mean(0),
                is_divergent=stats.is_divergent.any(0),
                num_grad_evals=stats.num_grad_evals.sum(0),
                logdensity=stats.logdensity[-1],
            )
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
    # the chunks joined in one compiled call (op by op it was ~5 % of a short run)
    join = lambda *a: jnp.concatenate(a, axis=1)[:, :num_samples]  # noqa: E731
    positions = join(*positions)
    return positions, jax.tree.map(join, *stats), jnp.all(jnp.isfinite(positions))


class _Compiled:
    """Ahead-of-time compiled programs, cached by program and argument signature.

    Compile time is measured apart from run time, and a second ``sample``
    call with the same sampler and shapes reuses the compiled program.
    """

    _cache: dict[Any, Any] = {}

    @classmethod
    def get(cls, name: Any, fn: Callable, *args: Any) -> tuple[Any, float]:
        leaves, tree = jax.tree.flatten(args)
        signature = (name, tree, tuple((np.shape(x), jnp.result_type(x)) for x in leaves))
        if signature in cls._cache:
            return cls._cache[signature], 0.0
        t0 = time.perf_counter()
        compiled = jax.jit(fn).lower(*args).compile()
        cls._cache[signature] = compiled
        return compiled, time.perf_counter() - t0


def _validate(energy, num_chains, num_samples, num_warmup, thinning, init):
    if not isinstance(energy, Energy):
        raise TypeError(
            f"energy must be an ebmppl.Energy, got {type(energy).__name__}; wrap your function with "
            "Energy(energy_fn, params, event_shape=...)."
        )
    for name, value, low in (("num_chains", num_chains, 1), ("num_samples", num_samples, 1),
                             ("num_warmup", num_warmup, 0), ("thinning", thinning, 1)):
        check_int(name, value, low)
    if init is not None:
        init = check_examples("init", init, energy.event_shape, num_chains, "pass finite starting positions.")
    return init


def sample(
    energy: Energy,
    key: jax.Array,
    *,
    sampler: str | Sampler = "nuts",
    num_chains: int = 4,
    num_samples: int = 1000,
    num_warmup: int = 1000,
    thinning: int = 1,
    init: jax.Array | None = None,
    adapt: bool = True,
    progress_bar: bool = True,
    devices: Sequence[jax.Device] | int | str | Mesh | None = None,
) -> Samples:
    """Draw samples from ``p(x) ∝ exp(-E(x)/T)`` with many chains in parallel.

    Chains are vmapped inside one jitted ``lax.scan``; the scan is run in
    chunks from Python only to drive the progress bar.

    Parameters
    ----------
    energy
        The :class:`~ebmppl.Energy` to sample.
    key
        A ``jax.random`` key. The same key gives bit-identical draws.
    sampler
        A registered name (see :func:`ebmppl.samplers.available`) or a
        :class:`~ebmppl.samplers.Sampler` from a builder such as
        ``samplers.hmc(num_integration_steps=32)``.
    num_chains, num_samples, num_warmup, thinning
        Chains; kept draws per chain; warm-up steps; steps per kept draw.
    init
        Starting positions ``(num_chains, *event_shape)``; default uniform
        on ``[-2, 2]`` in every coordinate (as Stan and NumPyro).
    adapt
        Tune step size (and mass matrix) during warm-up; see
        :mod:`ebmppl.samplers.adaptation` for what each sampler gets.
    progress_bar
        Show a tqdm bar over warm-up and sampling.
    devices
        Shard the chains across devices: ``"all"``, a number of devices, a
        list of devices or a one-axis ``Mesh`` (see :mod:`ebmppl.sharding`).
        ``num_chains`` must be a multiple of the device count. Each chain's
        random stream is the same whatever the device count.

    Returns
    -------
    Samples
        Positions ``(chain, draw, *event_shape)``, per-draw stats, adapted
        parameters, final states and timings.

    Raises
    ------
    ValueError
        Unknown sampler name; non-positive counts; ``init`` of the wrong shape
        or not finite.
    TypeError
        ``energy`` is not an :class:`~ebmppl.Energy`; ``init`` not floating point.

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
    init = _validate(energy, num_chains, num_samples, num_warmup, thinning, init)
    mesh = resolve_mesh(devices)
    check_divisible("num_chains", num_chains, mesh)
    sampler = get_sampler(sampler) if isinstance(sampler, str) else sampler
    if not isinstance(sampler, Sampler):
        raise TypeError(f"sampler must be a name or an ebmppl.samplers.Sampler, got {type(sampler).__name__}.")

    k_init, k_states, k_warm, k_draw = jax.random.split(key, 4)
    if init is None:
        init = jax.random.uniform(k_init, (num_chains, *energy.event_shape), minval=-2.0, maxval=2.0)
    params = sampler.default_params(energy.dim)
    # the compiled programs follow the placement of their inputs: chains sharded, everything else replicated
    init, (energy, params) = shard_leading(init, mesh), replicate((energy, params), mesh)

    def warm(energy, init, params, k_states, k_warm):
        ld = _logdensity(energy)
        states = init_chains(sampler, ld, k_states, init)
        return warmup(sampler, ld, k_warm, states, params, num_warmup, adapt)

    num_chunks = min(10, num_samples)  # independent of progress_bar: same key, same draws
    chunk = -(-num_samples // num_chunks)

    def draw_chunk(energy, states, params, key):
        return run_chains(sampler, _logdensity(energy), key, states, params, chunk, thinning)

    warm_c, t_compile_warm = _Compiled.get(("warmup", sampler, num_warmup, adapt, mesh), warm, energy, init, params, k_states, k_warm)
    bar = tqdm(total=num_warmup + num_samples, desc=f"{sampler.name} warmup", disable=not progress_bar, leave=False)
    t0 = time.perf_counter()
    states, params = jax.block_until_ready(warm_c(energy, init, params, k_states, k_warm))
    t_warm = time.perf_counter() - t0
    bar.update(num_warmup)

    draw_c, t_compile_draw = _Compiled.get(("draws", sampler, chunk, thinning, mesh), draw_chunk, energy, states, params, k_draw)
    bar.set_description(f"{sampler.name} sampling")
    positions, stats = [], []
    chunk_keys = list(jax.block_until_ready(jax.random.split(k_draw, num_chunks)))
    t0 = time.perf_counter()  # times the compiled sampling program only
    for key_chunk in chunk_keys:
        states, xs, st = draw_c(energy, states, params, key_chunk)
        positions.append(xs)
        stats.append(st)
        if progress_bar:
            jax.block_until_ready(xs)
            bar.update(min(chunk, num_samples + num_warmup - bar.n))
    jax.block_until_ready(states)
    t_draw = time.perf_counter() - t0
    positions, stats, finite = _assemble(positions, stats, num_samples)
    bar.close()
    if not bool(finite):
        raise FloatingPointError(
            f"{sampler.name} produced non-finite positions: the chains diverged. Lower the step size, "
            "use more warm-up, or check the energy for overflow."
        )
    timings = {"compile": t_compile_warm + t_compile_draw, "warmup": t_warm, "sampling": t_draw}
    return Samples(positions, stats, params, states, sampler.name, timings)
