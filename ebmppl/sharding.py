"""Sharding chains and batches across devices.

ebmppl's unit of parallelism is the leading axis: chains in
:func:`ebmppl.sample`, examples and negatives in :func:`ebmppl.fit`. Sharding
that axis over a one-dimensional device mesh (``NamedSharding``) is all it
takes; XLA partitions the vmapped computation and all-reduces what needs
reducing (pooled warm-up statistics, parameter gradients). Parameters stay
replicated.

Random numbers do not depend on the device count: every chain's key is split
from one key on the full chain axis, and JAX's partitionable Threefry makes
the bits of a sharded split equal to those of an unsharded one. So 1 device
and N devices give the same draws where the arithmetic is the same (and agree
to floating-point reduction order where it is not, e.g. a pooled mean).

Multi-host: call ``jax.distributed.initialize()`` on every process first;
``jax.devices()`` then lists every host's devices and the same code runs
(see the *Scaling* guide).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["AXIS", "check_divisible", "constrain_leading", "leading_axis", "replicate", "resolve_mesh", "shard_leading"]

AXIS = "shard"
_ACTIVE: contextvars.ContextVar[Mesh | None] = contextvars.ContextVar("ebmppl_shard_mesh", default=None)


def resolve_mesh(devices: Sequence[jax.Device] | int | str | Mesh | None) -> Mesh | None:
    """Turn a ``devices=`` argument into a one-axis mesh (``None`` stays ``None``: no sharding).

    Parameters
    ----------
    devices
        ``None`` (one device, no sharding), ``"all"`` (every device of
        ``jax.devices()``), an int (the first that many devices), a sequence of
        devices, or a ready :class:`jax.sharding.Mesh` with one axis.

    Examples
    --------
    >>> mesh = resolve_mesh("all")
    >>> mesh.axis_names, mesh.size == len(jax.devices())
    (('shard',), True)
    >>> resolve_mesh(None) is None
    True
    """
    if devices is None:
        return None
    if isinstance(devices, Mesh):
        if len(devices.axis_names) != 1:
            raise ValueError(f"devices: a Mesh with one axis is needed, got axes {devices.axis_names}.")
        return Mesh(devices.devices.reshape(-1), (AXIS,))
    available = jax.devices()
    if isinstance(devices, str):
        if devices != "all":
            raise ValueError(f"devices must be None, 'all', an int, a list of devices or a Mesh; got {devices!r}.")
        chosen = available
    elif isinstance(devices, int) and not isinstance(devices, bool):
        if not 1 <= devices <= len(available):
            raise ValueError(f"devices={devices} but {len(available)} device(s) are available; pass 1..{len(available)}"
                             " (on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N makes N).")
        chosen = available[:devices]
    else:
        chosen = list(devices)
        if not chosen or not all(isinstance(d, jax.Device) for d in chosen):
            raise TypeError("devices must be a non-empty sequence of jax.Device (e.g. jax.devices()).")
    return Mesh(np.asarray(chosen), (AXIS,))


def check_divisible(name: str, size: int, mesh: Mesh | None) -> None:
    """Raise if ``size`` (a chain or batch count) cannot be split evenly over the mesh.

    Examples
    --------
    >>> check_divisible("num_chains", 8, resolve_mesh(1))   # one device: anything goes
    >>> check_divisible("num_chains", 3, None)
    """
    if mesh is not None and size % mesh.size:
        raise ValueError(f"{name}={size} must be a multiple of the number of devices ({mesh.size}) to shard it; "
                         f"use {(-(-size // mesh.size)) * mesh.size}.")


def shard_leading(tree: Any, mesh: Mesh | None) -> Any:
    """Place every array of ``tree`` sharded along its leading axis (scalars replicated).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> x = shard_leading(jnp.zeros((8, 2)), resolve_mesh("all"))
    >>> x.shape
    (8, 2)
    """
    if mesh is None:
        return tree

    def place(a):
        a = jax.numpy.asarray(a) if not isinstance(a, jax.Array) else a
        spec = PartitionSpec(AXIS) if a.ndim >= 1 and a.shape[0] % mesh.size == 0 else PartitionSpec()
        return jax.device_put(a, NamedSharding(mesh, spec))

    return jax.tree.map(place, tree)


def replicate(tree: Any, mesh: Mesh | None) -> Any:
    """Place every array of ``tree`` on every device of the mesh (parameters, optimizer state).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> replicate({"w": jnp.ones(3)}, resolve_mesh("all"))["w"].shape
    (3,)
    """
    if mesh is None:
        return tree
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


@contextlib.contextmanager
def leading_axis(mesh: Mesh | None) -> Iterator[None]:
    """While tracing inside this context, :func:`constrain_leading` shards over ``mesh``.

    The training driver enters it around the traced body of a step, so the
    objectives mark their batch and negatives as sharded without taking a mesh
    argument themselves.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> with leading_axis(resolve_mesh("all")):
    ...     y = jax.jit(lambda x: constrain_leading(x) * 2)(jnp.ones((4, 2)))
    >>> y.shape
    (4, 2)
    """
    token = _ACTIVE.set(mesh)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def constrain_leading(x: jax.Array) -> jax.Array:
    """Mark ``x`` as sharded along its leading axis when a mesh is active; otherwise return it unchanged.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> constrain_leading(jnp.ones((4, 2))).shape  # no active mesh: a no-op
    (4, 2)
    """
    mesh = _ACTIVE.get()
    if mesh is None or x.ndim == 0 or x.shape[0] % mesh.size:
        return x
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, PartitionSpec(AXIS)))
