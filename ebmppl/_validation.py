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
        labels = len(event_shape) >= 2 and x.shape[1:] == tuple(event_shape[:-1])
        hint = (f" These look like integer labels of a categorical energy: one-hot encode them, "
                f"jax.nn.one_hot({name}, {event_shape[-1]})." if labels else "")
        raise ValueError(f"{name} has shape {x.shape}; expected {expected}.{hint}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} has no examples (shape {x.shape}); pass at least one row.")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name} has dtype {x.dtype}; pass floating-point values (e.g. .astype('float32')).")
    if not bool(jnp.all(jnp.isfinite(x))):
        raise ValueError(f"{name} contains NaN or inf; {fix}")
    return x


def is_key(x: Any) -> bool:
    """Whether ``x`` is one ``jax.random`` key (what :func:`check_key` accepts): tells an old call form apart.

    Examples
    --------
    >>> is_key(jax.random.key(0)), is_key(jax.random.PRNGKey(0)), is_key(jnp.zeros((5, 2))), is_key((1, 2))
    (True, True, False, False)
    """
    try:
        check_key(x)
    except TypeError:
        return False
    return True


def check_key(key: Any, name: str = "key") -> jax.Array:
    """``key`` unchanged if it is one ``jax.random`` key, or a TypeError naming ``name`` and the fix.

    Both new-style typed keys (``jax.random.key(0)``) and legacy raw keys
    (``jax.random.PRNGKey(0)``, ``uint32[2]``) are accepted; traced keys are
    checked by shape and dtype only.

    Examples
    --------
    >>> _ = check_key(jax.random.key(0)); _ = check_key(jax.random.PRNGKey(0))
    >>> check_key(0)
    Traceback (most recent call last):
    ...
    TypeError: key must be a jax.random key, e.g. key=jax.random.key(0); got the int 0. ...
    """
    dtype = getattr(key, "dtype", None)
    shape = getattr(key, "shape", None)
    if dtype is not None and shape is not None:
        typed = jnp.issubdtype(dtype, jax.dtypes.prng_key)
        if typed and tuple(shape) == ():
            return key
        if not typed and dtype == np.uint32 and len(shape) == 1 and shape[0] in (2, 4):
            return key  # raw key data (threefry: 2 words; rbg: 4)
        what = f"an array of shape {tuple(shape)} and dtype {dtype}"
        if typed:
            what = f"{int(np.prod(shape))} keys of shape {tuple(shape)}; pass one key (e.g. {name}[0])"
    elif isinstance(key, (bool, int, np.integer)):
        what = f"the int {key!r}. An int seed is not a key: use jax.random.key({key!r})"
    else:
        what = f"a {type(key).__name__}"
    raise TypeError(f"{name} must be a jax.random key, e.g. {name}=jax.random.key(0); got {what}. "
                    "The same key gives the same result.")


def check_energy(energy: Any, name: str = "energy") -> Any:
    """``energy`` unchanged if it is an :class:`~ebmppl.Energy`, else a TypeError that says how to make one.

    Examples
    --------
    >>> check_energy(lambda p, x: (x**2).sum())
    Traceback (most recent call last):
    ...
    TypeError: energy must be an ebmppl.Energy, got function; wrap it: ebmppl.Energy(fn, params, event_shape=...).
    """
    from ebmppl.energy import Energy

    if isinstance(energy, Energy):
        return energy
    inner = getattr(energy, "energy", None)
    if isinstance(inner, Energy):
        raise TypeError(f"{name} must be an ebmppl.Energy, got {type(energy).__name__}; pass its .energy.")
    hint = "wrap it: ebmppl.Energy(fn, params, event_shape=...)" if callable(energy) else \
        "build one with ebmppl.Energy(energy_fn, params, event_shape=...)"
    raise TypeError(f"{name} must be an ebmppl.Energy, got {type(energy).__name__}; {hint}.")


def _build_options(sampler: Any) -> set[str]:
    """The names a sampler's builder takes (its dataclass fields), or none for anything that is not a sampler value."""
    import dataclasses

    # ebmppl's own samplers only: their builder is ebmppl.samplers.<name>; a user's sampler class is not
    if not dataclasses.is_dataclass(sampler) or not type(sampler).__module__.startswith("ebmppl.samplers") \
            or not isinstance(getattr(sampler, "name", None), str):
        return set()
    return {f.name for f in dataclasses.fields(sampler)}


def check_sampler_params(overrides: Any, valid: Any, name: str = "sampler_params", sampler: Any = None) -> dict[str, Any]:
    """``overrides`` as a dict whose keys are all in ``valid`` (the sampler's kernel parameters), else a ValueError.

    A typo (``{"stepsize": 0.1}``) would otherwise be ignored in silence. Given the ``sampler`` value, a key
    that is one of its build options (HMC's ``num_integration_steps``) is refused naming the builder call that
    sets it: options are fixed when the sampler is built, kernel parameters can be passed per call.

    Examples
    --------
    >>> check_sampler_params({"step_size": 0.1}, ["step_size", "noise_scale"])
    {'step_size': 0.1}
    >>> check_sampler_params({"stepsize": 0.1}, ["step_size", "noise_scale"])
    Traceback (most recent call last):
    ...
    ValueError: sampler_params has unknown key 'stepsize'; this sampler's parameters are: 'noise_scale', 'step_size'.
    >>> from ebmppl import samplers
    >>> check_sampler_params({"num_integration_steps": 5}, ["step_size", "inverse_mass_matrix"],
    ...                      sampler=samplers.hmc())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: sampler_params has unknown key 'num_integration_steps'; ... build the sampler with it instead: sampler=ebmppl.samplers.hmc(num_integration_steps=5).
    """
    if overrides is None:
        return {}
    if not isinstance(overrides, dict):
        raise TypeError(f"{name} must be a dict such as {{'step_size': 0.1}}, got {type(overrides).__name__}.")
    unknown = [k for k in overrides if k not in valid]
    if unknown:
        keys = ", ".join(repr(k) for k in unknown)
        options = _build_options(sampler)
        built = {k: overrides[k] for k in unknown if k in options}
        hint = "" if not built else (
            f" {', '.join(repr(k) for k in built)} {'is an option' if len(built) == 1 else 'are options'} of the "
            f"sampler, fixed when it is built; build the sampler with {'it' if len(built) == 1 else 'them'} "
            f"instead: sampler=ebmppl.samplers.{sampler.name}("
            f"{', '.join(f'{k}={v!r}' for k, v in built.items())}).")
        raise ValueError(f"{name} has unknown key{'s' if len(unknown) > 1 else ''} {keys}; this sampler's "
                         f"parameters are: {', '.join(repr(k) for k in sorted(valid))}.{hint}")
    return dict(overrides)
