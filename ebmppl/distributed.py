"""Several processes, one run: who writes, and how arrays reach the host.

Under ``jax.distributed`` (one Python process per host, or several on one
machine) every process runs the same program: :func:`ebmppl.fit` and
:func:`ebmppl.sample` shard the batch and the chains over the devices of all
processes and keep parameters replicated. This module holds what that needs
beyond ``jax.devices()``:

* **one writer** — :func:`is_primary` is true on process 0 only; checkpoints,
  metric files, run folders, reports and progress bars are written or shown
  by it alone (:func:`on_primary` runs a write there and makes every process
  raise if it failed);
* **host copies** — :func:`to_host` turns arrays that may span processes into
  numpy arrays (a collective where an array is sharded across processes:
  every process must call it);
* **one source of truth** — :func:`broadcast_from_primary` and
  :func:`broadcast_bytes` send process 0's values (a checkpoint read from its
  disk) to every process, so a resumed run needs no shared filesystem.

With one process every function is a cheap no-op or ``np.asarray``.

Start the processes **before importing ebmppl**: ``import ebmppl`` imports
BlackJAX, whose import already starts JAX's backend, and
``jax.distributed.initialize`` must come first. On a cluster::

    import jax
    jax.distributed.initialize()       # reads SLURM / Open MPI / Kubernetes settings
    import ebmppl

Several CPU processes on one machine (testing a multi-host run without a
cluster), process ``i`` of ``n``, each with its own CPU device(s)
(``EBMPPL_CPU_DEVICES=1`` in its environment, and ``taskset`` to pin cores)::

    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")   # JAX 0.10's default, stated
    jax.distributed.initialize("localhost:12345", num_processes=n, process_id=i)
    import ebmppl
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import numpy as np

__all__ = ["process_index", "process_count", "is_primary", "to_host", "to_local", "broadcast_from_primary",
           "broadcast_bytes", "primary_flag", "on_primary"]

T = TypeVar("T")


def process_index() -> int:
    """This process's index under ``jax.distributed`` (0 with one process).

    Examples
    --------
    >>> process_index()
    0
    """
    return jax.process_index()


def process_count() -> int:
    """The number of processes in the run (1 without ``jax.distributed``).

    Examples
    --------
    >>> process_count()
    1
    """
    return jax.process_count()


def is_primary() -> bool:
    """Whether this process writes: process 0 does, every other process computes but writes nothing.

    Examples
    --------
    >>> is_primary()
    True
    """
    return jax.process_index() == 0


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jax.numpy.issubdtype(x.dtype, jax.dtypes.prng_key)


def _host_array(x: Any) -> np.ndarray:
    if not isinstance(x, jax.Array):
        return np.asarray(x)
    if x.is_fully_addressable:
        return np.asarray(x)
    if x.is_fully_replicated:  # every process holds the whole value: no communication
        return np.asarray(x.addressable_data(0))
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def to_host(tree: T) -> T:
    """A copy of ``tree`` with every array as a numpy array holding its global value.

    Arrays on this process's devices, and arrays replicated on every device,
    are copied without communication. An array sharded across processes is
    gathered (``jax.experimental.multihost_utils.process_allgather``): a
    collective, so **every process must call** ``to_host`` at the same point
    of the program, with the same tree, or the run hangs. PRNG keys come back
    as process-local key arrays (a key cannot be a numpy array).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> host = to_host({"w": jnp.arange(3.0), "n": 2})
    >>> type(host["w"]).__name__, host["w"].tolist(), host["n"]
    ('ndarray', [0.0, 1.0, 2.0], array(2))
    """

    def leaf(x):
        if _is_key(x):
            return jax.random.wrap_key_data(_host_array(jax.random.key_data(x)), impl=jax.random.key_impl(x))
        return _host_array(x)

    return jax.tree.map(leaf, tree)


def to_local(tree: T) -> T:
    """``tree`` itself when every array in it lives on this process; otherwise every array gathered into a
    process-local ``jax.Array`` holding the global value (a collective, see :func:`to_host`).

    What :func:`ebmppl.sample` returns under several processes: every process
    can read, index and plot all the draws, as with one process.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> x = jnp.ones(3)
    >>> to_local(x) is x
    True
    """
    arrays = [x for x in jax.tree.leaves(tree) if isinstance(x, jax.Array)]
    if all(x.is_fully_addressable for x in arrays):
        return tree
    host = to_host(tree)
    return jax.tree.map(lambda x: jax.numpy.asarray(x) if isinstance(x, np.ndarray) else x, host)


def broadcast_from_primary(tree: T) -> T:
    """Process 0's values of ``tree`` on every process, as numpy arrays (``multihost_utils.broadcast_one_to_all``).

    A collective: every process calls it with a tree of the same structure,
    shapes and dtypes (the values of processes other than 0 are ignored).
    PRNG keys are sent as their key data and come back as process-local keys.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> broadcast_from_primary({"step": jnp.array(3)})["step"].tolist()
    3
    """
    if jax.process_count() == 1:
        return to_host(tree)
    from jax.experimental import multihost_utils

    leaves, treedef = jax.tree.flatten(tree)
    keys = [_is_key(x) for x in leaves]
    data = [np.asarray(to_host(jax.random.key_data(x) if k else x)) for x, k in zip(leaves, keys, strict=True)]
    sent = multihost_utils.broadcast_one_to_all(data) if data else []
    out = [jax.random.wrap_key_data(np.asarray(s), impl=jax.random.key_impl(x)) if k else np.asarray(s)
           for s, x, k in zip(sent, leaves, keys, strict=True)]
    return jax.tree.unflatten(treedef, out)


def broadcast_bytes(data: bytes | None) -> bytes:
    """Process 0's ``data`` on every process (the others pass anything, e.g. ``None``).

    Two collectives (the length, then the bytes); how :func:`ebmppl.fit`
    resumes: process 0 reads the checkpoint and every process parses the same
    bytes, with or without a shared filesystem.

    Examples
    --------
    >>> broadcast_bytes(b"checkpoint")
    b'checkpoint'
    """
    if jax.process_count() == 1:
        return bytes(data or b"")
    from jax.experimental import multihost_utils

    mine = bytes(data or b"") if is_primary() else b""
    # the length in two 31-bit halves: int32 on the wire whatever jax_enable_x64 says
    size = len(mine)
    halves = multihost_utils.broadcast_one_to_all(np.array([size >> 31, size & 0x7FFFFFFF], np.int32))
    size = (int(halves[0]) << 31) | int(halves[1])
    if size == 0:
        return b""
    buf = np.frombuffer(mine, np.uint8) if is_primary() else np.zeros(size, np.uint8)
    return np.asarray(multihost_utils.broadcast_one_to_all(buf), np.uint8).tobytes()


def primary_flag(flag: bool) -> bool:
    """Process 0's ``flag`` on every process (a collective with several processes): a decision all share,
    e.g. whether a checkpoint exists on process 0's disk.

    Examples
    --------
    >>> primary_flag(True)
    True
    """
    if jax.process_count() == 1:
        return bool(flag)
    return bool(broadcast_bytes(b"1" if is_primary() and flag else b""))


def on_primary(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Run ``fn(*args, **kwargs)`` on process 0 only (a write); its result there, ``None`` elsewhere.

    With several processes every process learns whether it failed (a
    collective; every process must call it): process 0 re-raises its error,
    the others raise :class:`RuntimeError` with its text, so no process waits
    forever for a partner that stopped.

    Examples
    --------
    >>> on_primary(lambda x: x + 1, 1)
    2
    """
    result, error = None, None
    if is_primary():
        try:
            result = fn(*args, **kwargs)
        except Exception as err:  # handed to every process below
            error = err
    if jax.process_count() > 1:
        message = broadcast_bytes(json.dumps(f"{type(error).__name__}: {error}").encode() if error else b"")
        if message and error is None:
            raise RuntimeError(f"process 0 failed (so this process stops too): {json.loads(message)}")
    if error is not None:
        raise error
    return result
