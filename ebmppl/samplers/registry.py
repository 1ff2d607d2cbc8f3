"""Samplers by name."""

from __future__ import annotations

from collections.abc import Callable

from ebmppl.samplers import kernels
from ebmppl.samplers.base import Sampler

__all__ = ["SAMPLERS", "available", "get_sampler"]

SAMPLERS: dict[str, Callable[..., Sampler]] = {
    "langevin": kernels.langevin,
    "ula": kernels.ula,
    "mala": kernels.mala,
    "hmc": kernels.hmc,
    "nuts": kernels.nuts,
    "barker": kernels.barker,
    "mclmc": kernels.mclmc,
    "ghmc": kernels.ghmc,
    "sghmc": kernels.sghmc,
}


def available() -> list[str]:
    """Names accepted wherever a sampler is asked for.

    Examples
    --------
    >>> available()
    ['barker', 'ghmc', 'hmc', 'langevin', 'mala', 'mclmc', 'nuts', 'sghmc', 'ula']
    """
    return sorted(SAMPLERS)


def get_sampler(name: str, **options) -> Sampler:
    """Build the sampler registered as ``name`` with its default (or given) options.

    Examples
    --------
    >>> get_sampler("hmc", num_integration_steps=8).name
    'hmc'
    >>> get_sampler("gibbs")
    Traceback (most recent call last):
    ...
    ValueError: unknown sampler 'gibbs'; choose one of barker, ghmc, hmc, langevin, mala, mclmc, nuts, sghmc, ula.
    """
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(available())}.")
    return SAMPLERS[name](**options)
