"""Samplers by name: the one table every ``sampler="name"`` argument reads."""

from __future__ import annotations

from collections.abc import Callable

from ebmppl.samplers import discrete, kernels
from ebmppl.samplers.base import Sampler

__all__ = ["SAMPLERS", "available", "get_sampler", "register", "as_sampler"]

#: Name → builder (a :class:`~ebmppl.samplers.Sampler` subclass, or any callable returning one).
SAMPLERS: dict[str, Callable[..., Sampler]] = {
    "langevin": kernels.Langevin,
    "ula": kernels.ULA,
    "mala": kernels.MALA,
    "hmc": kernels.HMC,
    "nuts": kernels.NUTS,
    "barker": kernels.Barker,
    "mclmc": kernels.MCLMC,
    "ghmc": kernels.GHMC,
    "sghmc": kernels.SGHMC,
    # discrete energies (binary and categorical supports, ebmppl.support)
    **discrete.DISCRETE_SAMPLERS,
}


def available() -> list[str]:
    """Names accepted wherever a sampler is asked for.

    Examples
    --------
    >>> available()
    ['barker', 'block_gibbs', 'discrete_metropolis', 'dmala', 'dula', 'ghmc', 'gibbs', 'gibbs_with_gradients', 'hmc', 'langevin', 'mala', 'mclmc', 'nuts', 'parallel_tempering', 'sghmc', 'ula']
    """
    return sorted(SAMPLERS)


def register(name: str, builder: Callable[..., Sampler], *, overwrite: bool = False) -> Callable[..., Sampler]:
    """Make ``name`` a sampler name everywhere (``sample``, ``fit``, ``inpaint``, the CLI, ...).

    Parameters
    ----------
    name
        The registry name (a new one, unless ``overwrite``).
    builder
        A :class:`~ebmppl.samplers.Sampler` subclass, or any callable whose
        call with no arguments (or with the options given to
        :func:`get_sampler`) returns a Sampler.
    overwrite
        Replace an existing entry of that name.

    Returns
    -------
    The builder, unchanged.

    Raises
    ------
    ValueError
        ``name`` is taken (and ``overwrite`` is false).
    TypeError
        ``name`` is not a string or ``builder`` not callable.

    Examples
    --------
    >>> class SlowMALA(kernels.MALA):
    ...     name = "slow_mala"
    >>> _ = register("slow_mala", SlowMALA)
    >>> get_sampler("slow_mala", step_size=0.01)
    SlowMALA(step_size=0.01)
    >>> register("mala", SlowMALA)
    Traceback (most recent call last):
    ...
    ValueError: sampler name 'mala' is taken (by MALA); pick another name, or pass overwrite=True.
    >>> del SAMPLERS["slow_mala"]
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string, got {name!r}.")
    if not callable(builder):
        raise TypeError(f"builder must be a Sampler subclass or a callable returning a Sampler, got {builder!r}.")
    if name in SAMPLERS and not overwrite:
        taken = getattr(SAMPLERS[name], "__name__", repr(SAMPLERS[name]))
        raise ValueError(f"sampler name {name!r} is taken (by {taken}); pick another name, or pass overwrite=True.")
    SAMPLERS[name] = builder
    return builder


def get_sampler(name: str, **options) -> Sampler:
    """Build the sampler registered as ``name`` with its default (or given) options.

    Examples
    --------
    >>> get_sampler("hmc", num_integration_steps=8).name
    'hmc'
    >>> get_sampler("hmc") == get_sampler("hmc")   # samplers are values
    True
    >>> get_sampler("slice")
    Traceback (most recent call last):
    ...
    ValueError: unknown sampler 'slice'; choose one of barker, block_gibbs, discrete_metropolis, dmala, dula, ghmc, gibbs, gibbs_with_gradients, hmc, langevin, mala, mclmc, nuts, parallel_tempering, sghmc, ula.
    """
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(available())}.")
    sampler = SAMPLERS[name](**options)
    if not isinstance(sampler, Sampler):
        raise TypeError(f"the builder registered as {name!r} returned {type(sampler).__name__}, not an "
                        "ebmppl.samplers.Sampler.")
    return sampler


def as_sampler(value: str | Sampler, argument: str = "sampler") -> Sampler:
    """The :class:`~ebmppl.samplers.Sampler` that ``value`` names or is: every ``sampler=`` argument goes through here.

    Raises
    ------
    ValueError
        An unknown name (the message lists the registered ones).
    TypeError
        A Sampler *class* rather than a value (``samplers.MALA`` for ``samplers.MALA()``), or anything else.

    Examples
    --------
    >>> as_sampler("mala") == kernels.MALA()
    True
    >>> as_sampler(kernels.HMC)
    Traceback (most recent call last):
    ...
    TypeError: sampler=HMC is a Sampler class; pass a value: HMC() (options as keywords, e.g. HMC(step_size=0.1)) or the name 'hmc'.
    """
    if isinstance(value, str):
        return get_sampler(value)
    if isinstance(value, Sampler):
        return value
    if isinstance(value, type) and issubclass(value, Sampler):
        name = getattr(value, "name", None)
        by_name = f" or the name {name!r}" if isinstance(name, str) and SAMPLERS.get(name) is value else ""
        raise TypeError(f"{argument}={value.__name__} is a Sampler class; pass a value: {value.__name__}() (options "
                        f"as keywords, e.g. {value.__name__}(step_size=0.1)){by_name}.")
    raise TypeError(f"{argument} must be a sampler name (one of {', '.join(available())}) or an ebmppl.samplers "
                    f"Sampler value such as samplers.mala(step_size=0.1), got {type(value).__name__}.")
