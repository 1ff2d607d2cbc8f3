"""log Z by plain importance sampling from the base ``q``: fine in low dimension, hopeless in high."""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax

from ebmppl.energy import Energy
from ebmppl.logz.base import _Base
from ebmppl.logz.estimate import LogZEstimate, _summarise

__all__: list[str] = []


@eqx.filter_jit
def _log_weights(energy: Energy, key: jax.Array, base: _Base, num_samples: int) -> jax.Array:
    """Log-weights ``log p̃(x) − log q(x)`` of ``num_samples`` independent draws from the base."""
    x = base.sample(key, (num_samples, *energy.event_shape))
    return jax.vmap(energy.logdensity_fn)(x) - jax.vmap(base.log_prob)(x)


def _importance(energy: Energy, key: jax.Array, base: _Base, num_samples: int, notes: Sequence[str] = (),
                advice: str | None = None) -> LogZEstimate:
    """The importance-sampling estimator: the mean weight of ``num_samples`` draws from ``base``."""
    return _summarise(_log_weights(energy, key, base, int(num_samples)), "importance", notes=notes, advice=advice)
