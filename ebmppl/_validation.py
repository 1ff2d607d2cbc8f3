"""Boundary checks shared by the public entry points: each error names the argument and the fix."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def check_int(name: str, value: Any, low: int) -> int:
    """``value`` as an int ``>= low`` (bools refused), or a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}.")
    return int(value)


def check_examples(name: str, x: Any, event_shape: tuple[int, ...], leading: int | None, fix: str) -> jax.Array:
    """``x`` as a float array ``(leading or n, *event_shape)`` with finite entries, or a clear error.

    ``fix`` is the advice appended when ``x`` holds NaN or inf.
    """
    x = jnp.asarray(x)
    expected = f"({leading if leading is not None else 'n'}, *event_shape) = ({leading if leading is not None else 'n'}, *{event_shape})"
    if x.ndim != 1 + len(event_shape) or x.shape[1:] != tuple(event_shape) or (leading is not None and x.shape[0] != leading):
        raise ValueError(f"{name} has shape {x.shape}; expected {expected}.")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name} has dtype {x.dtype}; pass floating-point values (e.g. .astype('float32')).")
    if not bool(jnp.all(jnp.isfinite(x))):
        raise ValueError(f"{name} contains NaN or inf; {fix}")
    return x
