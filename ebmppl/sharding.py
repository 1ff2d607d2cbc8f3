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
and N devices give the same draws where the arithmetic is the same, usually
bit for bit, and agree to floating-point rounding where it is not (a pooled
mean, a matrix product blocked by batch size, a multiply-add XLA fuses in
one block shape and not another); a Metropolis decision at its boundary can
then send one chain another way, along a path of the same law.

Every core by default: on a CPU, XLA gives JAX one device that runs a
program on one core (only large matrix products may be threaded over
cores). ``import ebmppl`` therefore asks JAX for one CPU device
per usable core (:func:`configure_cpu_devices`), and ``fit`` and ``sample``
shard by default (``devices="auto"``) whenever there is more than one device
and the leading axis splits into blocks of at least :data:`AUTO_MIN_PER_DEVICE`.
Opt out with the environment variable ``EBMPPL_CPU_DEVICES=1`` (set before
``import ebmppl``) or per call with ``devices=None``.

Multi-host: call ``jax.distributed.initialize()`` on every process first;
``jax.devices()`` then lists every host's devices and the same code runs
(see the *Scaling* guide).
"""

from __future__ import annotations

import contextlib
import contextvars
import numbers
import os
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import jax
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["AXIS", "AUTO_MIN_PER_DEVICE", "blockwise_mean", "check_divisible", "concat_leading",
           "configure_cpu_devices", "constrain_leading", "constrain_replicated", "cpu_devices_status", "leading_axis",
           "replicate", "resolve_mesh", "shard_leading", "split_leading", "usable_cores"]

AXIS = "shard"
#: ``devices="auto"`` shards only where every device gets at least this many chains or examples: below it the
#: per-step synchronisation costs more than a second core gives (measured: ``benchmarks/bench_sharding.py``).
AUTO_MIN_PER_DEVICE = 32
CPU_DEVICES_ENV = "EBMPPL_CPU_DEVICES"
_ACTIVE: contextvars.ContextVar[Mesh | None] = contextvars.ContextVar("ebmppl_shard_mesh", default=None)
_CONFIGURED: dict[str, Any] = {"devices": None, "reason": "configure_cpu_devices() has not run"}


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota (containers).

    Examples
    --------
    >>> usable_cores() >= 1
    True
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, max(1, int(quota)))
    return max(1, cores)


def _cgroup_cpu_quota() -> float | None:
    """CPUs a container's cgroup quota allows (v2 ``cpu.max``, else v1 ``cpu.cfs_quota_us``); ``None``: no quota."""
    try:  # cgroup v2: "quota period" or "max period"
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    for folder in ("/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"):  # cgroup v1: -1 = no quota
        try:
            with open(f"{folder}/cpu.cfs_quota_us") as f, open(f"{folder}/cpu.cfs_period_us") as g:
                quota, period = int(f.read()), int(g.read())
            return None if quota <= 0 or period <= 0 else quota / period
        except (OSError, ValueError):
            continue
    return None


def configure_cpu_devices(num: int | None = None) -> int | None:
    """Give JAX's CPU backend one device per usable core (run by ``import ebmppl``); returns the count set.

    XLA runs a program on one CPU device on one core (only large matrix
    products may be spread over cores); with one device per
    core, the chains and batches that :func:`ebmppl.fit` and
    :func:`ebmppl.sample` shard by default (``devices="auto"``) use every
    core. Nothing is changed (returns ``None``) when the user already chose:
    ``--xla_force_host_platform_device_count`` in ``XLA_FLAGS``, a
    ``jax_num_cpu_devices`` set before, ``JAX_PLATFORMS`` without ``cpu``,
    or JAX's backends already initialised (the count can no longer change:
    import ebmppl before running any JAX computation). Only the CPU backend
    is affected: on a GPU machine ``jax.devices()`` still lists the GPUs.

    Parameters
    ----------
    num
        Devices to ask for; default: the environment variable
        ``EBMPPL_CPU_DEVICES`` if set (``1`` opts out: one device, as plain
        JAX), else :func:`usable_cores`.

    Returns
    -------
    int or None
        The device count set, or ``None`` when nothing was changed
        (``ebmppl.sharding.cpu_devices_status()`` says why).

    Examples
    --------
    >>> configure_cpu_devices() is None   # import ebmppl has already run it: the backend is initialised now
    True
    """
    env = os.environ.get(CPU_DEVICES_ENV, "").strip()
    requested = num

    def skip(reason: str) -> None:
        # a second call (import ebmppl ran the first) keeps the first one's account of what happened
        if _CONFIGURED["devices"] is None or not reason.startswith("JAX's backends"):
            _CONFIGURED.update(devices=None, reason=reason)
        wanted = requested if requested is not None else (int(env) if env else None)
        if wanted is not None and wanted != _cpu_device_count():  # asked for explicitly: say it was not honoured
            source = f"num={requested!r}" if requested is not None else f"{CPU_DEVICES_ENV}={env}"
            warnings.warn(f"{source} ignored: {reason}; JAX keeps {_cpu_device_count()} CPU device(s). "
                          f"Set {CPU_DEVICES_ENV} before the first JAX computation and without "
                          "--xla_force_host_platform_device_count in XLA_FLAGS.", UserWarning, stacklevel=3)


    if num is None and env:
        try:
            num = int(env)
        except ValueError:
            raise ValueError(f"{CPU_DEVICES_ENV}={env!r}: expected a whole number of CPU devices (1 = one device, "
                             "as plain JAX).") from None
    if num is not None and (isinstance(num, bool) or int(num) < 1):
        source = f"{CPU_DEVICES_ENV}={env!r}" if env and str(num) == str(int(env)) else f"num={num!r}"
        raise ValueError(f"{source}: the number of CPU devices must be >= 1 (1 = one device, as plain JAX).")
    if re.search(r"xla_force_host_platform_device_count", os.environ.get("XLA_FLAGS", "")):
        return skip("XLA_FLAGS sets --xla_force_host_platform_device_count")
    platforms = os.environ.get("JAX_PLATFORMS", jax.config.jax_platforms or "")
    if platforms and "cpu" not in platforms.split(","):
        return skip(f"JAX_PLATFORMS={platforms!r} excludes the CPU")
    try:
        from jax._src import xla_bridge

        initialised = xla_bridge.backends_are_initialized()
    except (ImportError, AttributeError):  # a JAX without the probe: do not risk a late config change
        return skip("cannot tell whether JAX's backends are initialised")
    if initialised:
        return skip("JAX's backends were initialised before ebmppl was imported (anything that asks JAX for "
                    "devices or makes an array starts them: jax.devices(), jax.random.key, import blackjax, ...)")
    if jax.config.jax_num_cpu_devices not in (-1, None) and _CONFIGURED["devices"] is None:
        return skip("jax_num_cpu_devices was set before ebmppl was imported")
    num = usable_cores() if num is None else int(num)
    jax.config.update("jax_num_cpu_devices", num)
    _CONFIGURED.update(devices=num, reason=f"{num} CPU device(s)" + (f" from {CPU_DEVICES_ENV}" if env else
                                                                      " (one per usable core)"))
    return num


def _cpu_device_count() -> int | None:
    """CPU devices JAX has or will make; ``None`` when that cannot be told without starting the backend."""
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        try:
            return len(jax.devices("cpu"))
        except RuntimeError:  # no CPU backend
            return None
    match = re.search(r"xla_force_host_platform_device_count=(\d+)", os.environ.get("XLA_FLAGS", ""))
    if match:
        return int(match.group(1))
    n = jax.config.jax_num_cpu_devices
    return 1 if n in (-1, None) else int(n)


def cpu_devices_status() -> str:
    """What :func:`configure_cpu_devices` did at import, in words (for bug reports and benchmarks).

    Examples
    --------
    >>> isinstance(cpu_devices_status(), str)
    True
    """
    return str(_CONFIGURED["reason"])


def resolve_mesh(devices: Sequence[jax.Device] | int | str | Mesh | None, size: int | None = None) -> Mesh | None:
    """Turn a ``devices=`` argument into a one-axis mesh (``None`` stays ``None``: no sharding).

    Parameters
    ----------
    devices
        ``"auto"`` (the default of ``fit`` and ``sample``: every device where
        it pays, see below), ``None`` (one device, no sharding), ``"all"``
        (every device of ``jax.devices()``), an int (the first that many
        devices; under ``jax.distributed`` an equal share of every
        process's), a sequence of devices, or a ready
        :class:`jax.sharding.Mesh` with one axis.
    size
        The length of the axis to shard (chains, batch). ``"auto"`` uses the
        most devices that split it evenly into blocks of at least
        :data:`AUTO_MIN_PER_DEVICE` (none: one device); with several
        processes (``jax.distributed``) it uses every device, like ``"all"``.

    Examples
    --------
    >>> mesh = resolve_mesh("all")
    >>> mesh.axis_names, mesh.size == len(jax.devices())
    (('shard',), True)
    >>> resolve_mesh(None) is None
    True
    >>> resolve_mesh("auto", size=4) is None   # 4 chains: not worth a second device
    True
    """
    if devices is None:
        return None
    if isinstance(devices, str) and devices == "auto":
        available = jax.devices()
        if jax.process_count() > 1:
            return Mesh(np.asarray(available), (AXIS,))
        if size is None:
            return None
        usable = [n for n in range(len(available), 1, -1) if size % n == 0 and size // n >= AUTO_MIN_PER_DEVICE]
        return Mesh(np.asarray(available[:usable[0]]), (AXIS,)) if usable else None
    if isinstance(devices, Mesh):
        if len(devices.axis_names) != 1:
            raise ValueError(f"devices: a Mesh with one axis is needed, got axes {devices.axis_names}.")
        return Mesh(devices.devices.reshape(-1), (AXIS,))
    available = jax.devices()
    if isinstance(devices, str):
        if devices != "all":
            raise ValueError(f"devices must be 'auto', None, 'all', an int, a list of devices or a Mesh; got "
                             f"{devices!r}.")
        chosen = available
    elif isinstance(devices, numbers.Integral) and not isinstance(devices, bool):
        devices = int(devices)
        if not 1 <= devices <= len(available):
            raise ValueError(f"devices={devices} but {len(available)} device(s) are available; pass 1..{len(available)}"
                             f" (on CPU, {CPU_DEVICES_ENV}=N in the environment before `import ebmppl` and before "
                             "any JAX computation makes N devices).")
        chosen = _first_devices(devices, available)
    elif isinstance(devices, (bool, numbers.Number)) or not isinstance(devices, Iterable):
        raise TypeError(f"devices must be 'auto', None, 'all', a whole number of devices, a list of jax.Device or a "
                        f"Mesh; got {devices!r} ({type(devices).__name__}).")
    else:
        chosen = list(devices)
        if not chosen or not all(isinstance(d, jax.Device) for d in chosen):
            raise TypeError("devices must be a non-empty sequence of jax.Device (e.g. jax.devices()).")
        if len(set(chosen)) != len(chosen):
            raise ValueError(f"devices lists a device more than once ({chosen}); list each device once.")
        _check_every_process(chosen)
    return Mesh(np.asarray(chosen), (AXIS,))


def _first_devices(n: int, available: list[jax.Device]) -> list[jax.Device]:
    """The first ``n`` devices; under ``jax.distributed``, the first ``n / processes`` of every process.

    Every process runs the same program on its own devices, so a mesh that leaves a process out (the
    first ``n`` of ``jax.devices()`` are all process 0's) cannot run.
    """
    count = jax.process_count()
    if count == 1:
        return available[:n]
    if n % count:
        raise ValueError(f"devices={n}: with {count} processes (jax.distributed) every process needs an equal share "
                         f"of the devices; pass a multiple of {count}, or 'all'.")
    by_process: dict[int, list[jax.Device]] = {}
    for d in available:
        by_process.setdefault(d.process_index, []).append(d)
    per = n // count
    if any(len(ds) < per for ds in by_process.values()):
        raise ValueError(f"devices={n}: some process has fewer than {per} devices; pass at most "
                         f"{count * min(len(ds) for ds in by_process.values())}, or 'all'.")
    return [d for p in sorted(by_process) for d in by_process[p][:per]]


def _check_every_process(chosen: list[jax.Device]) -> None:
    missing = set(range(jax.process_count())) - {d.process_index for d in chosen}
    if missing:
        raise ValueError(f"devices leaves out process(es) {sorted(missing)} of this jax.distributed run; every "
                         "process runs fit/sample and needs devices in the mesh: pass devices of every process "
                         "(e.g. 'all').")


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
        return _put(a, NamedSharding(mesh, spec))

    return jax.tree.map(place, tree)


def replicate(tree: Any, mesh: Mesh | None) -> Any:
    """Place every array of ``tree`` on every device of the mesh (parameters, optimizer state).

    Works when the mesh spans several processes (``jax.distributed``): every
    process passes the same value (host arrays, process-local arrays or PRNG
    keys; ``jax.device_put`` checks they agree, which is a collective, so every
    process must call this at the same point), and arrays already spread over
    the processes are resharded.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> replicate({"w": jnp.ones(3)}, resolve_mesh("all"))["w"].shape
    (3,)
    """
    if mesh is None:
        return tree
    sharding = NamedSharding(mesh, PartitionSpec())
    if sharding.is_fully_addressable:  # one process (the usual case): one batched transfer
        return jax.device_put(tree, sharding)
    return jax.tree.map(lambda a: _put(a, sharding), tree)


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


def constrain_replicated(x: Any) -> Any:
    """Mark ``x`` (an array or a pytree) as replicated on every device of the active mesh; otherwise unchanged.

    For values each device needs whole and that are cheap to compute everywhere (a replay buffer's slot
    indices): computed on every device, they need no all-gather later.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> constrain_replicated(jnp.ones(3)).shape  # no active mesh: a no-op
    (3,)
    """
    mesh = _ACTIVE.get()
    if mesh is None or mesh.size == 1:
        return x
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, PartitionSpec()))


def _put(a: Any, sharding: NamedSharding) -> Any:
    """``jax.device_put(a, sharding)``, also when the sharding spans processes and ``a`` is a process-local
    array (committed or not) or a PRNG key array, neither of which ``device_put`` accepts there."""
    if sharding.is_fully_addressable:
        return jax.device_put(a, sharding)
    if isinstance(a, jax.Array) and jax.numpy.issubdtype(a.dtype, jax.dtypes.prng_key):
        data = _put(jax.random.key_data(a), sharding)  # the key's trailing data axis stays whole
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(a))
    if isinstance(a, jax.Array) and not a.is_fully_addressable:
        return a if a.sharding == sharding else jax.device_put(a, sharding)  # a global array: reshard
    # a host copy: device_put then checks it is the same on every process and keeps this process's part
    return jax.device_put(np.asarray(a), sharding)


def _active_blocks(*arrays: jax.Array) -> int:
    """Devices of the active mesh when every array's leading axis splits evenly over them, else 1."""
    mesh = _ACTIVE.get()
    if mesh is None or mesh.size == 1 or any(a.ndim == 0 or a.shape[0] % mesh.size for a in arrays):
        return 1
    return mesh.size


def concat_leading(arrays: Sequence[jax.Array]) -> jax.Array:
    """Concatenate along the leading axis without moving rows between devices; undo with :func:`split_leading`.

    One device: ``jnp.concatenate``. With a mesh active (inside ``fit(devices=...)``), device ``d``'s
    block of the result holds device ``d``'s rows of every array, so evaluating one network on data and
    negatives together (one pass, twice the rows per matrix product) needs no all-to-all; the row
    order differs from ``jnp.concatenate``, which :func:`split_leading` undoes.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> x = concat_leading([jnp.zeros((4, 2)), jnp.ones((2, 2))])
    >>> [a.shape for a in split_leading(x, (4, 2))]
    [(4, 2), (2, 2)]
    """
    d = _active_blocks(*arrays)
    if d == 1:
        return jax.numpy.concatenate(arrays)
    blocks = [constrain_leading(a.reshape(d, a.shape[0] // d, *a.shape[1:])) for a in arrays]
    out = jax.numpy.concatenate(blocks, axis=1)
    return constrain_leading(out.reshape(-1, *out.shape[2:]))


def split_leading(x: jax.Array, sizes: Sequence[int]) -> list[jax.Array]:
    """The arrays that :func:`concat_leading` joined (leading lengths ``sizes``), in their own row order.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> a, b = split_leading(concat_leading([jnp.arange(4.0), jnp.arange(2.0)]), (4, 2))
    >>> a.tolist(), b.tolist()
    ([0.0, 1.0, 2.0, 3.0], [0.0, 1.0])
    """
    mesh = _ACTIVE.get()
    d = 1 if mesh is None or any(n % mesh.size for n in sizes) else mesh.size
    bounds = np.cumsum([0, *sizes])
    if d == 1:
        return [x[bounds[i]:bounds[i + 1]] for i in range(len(sizes))]
    y = constrain_leading(x.reshape(d, x.shape[0] // d, *x.shape[1:]))
    local = np.cumsum([0, *(n // d for n in sizes)])
    return [constrain_leading(y[:, local[i]:local[i + 1]].reshape(sizes[i], *x.shape[1:])) for i in range(len(sizes))]


def blockwise_mean(fn: Any, shared: Any, rows: Any) -> Any | None:
    """``fn(shared, rows)`` on each device's block of ``rows``, averaged over the devices with ONE all-reduce.

    For a function that is a mean over the rows of ``rows`` (every leaf of
    ``rows`` has the batch on its leading axis): on equal blocks the mean of
    the blocks' means is the whole batch's mean, so each device evaluates
    ``fn`` on its own rows and a single all-reduce of one flat vector
    combines them. Under ``fit(devices=...)`` this is how a step's loss and
    gradient are reduced: XLA's own partitioning of the same computation
    all-reduces every gradient leaf and every metric separately, and on CPU
    each of those is a synchronisation of all devices.

    Returns ``None`` (evaluate ``fn`` whole instead) when no mesh of more
    than one device is active, when a leaf of ``rows`` does not split evenly,
    or when ``fn`` returns anything but floating arrays.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> scaled_mean = lambda scale, rows: scale * jnp.mean(rows)
    >>> blockwise_mean(scaled_mean, jnp.float32(2.0), jnp.arange(4.0)) is None  # no active mesh: evaluate whole
    True
    >>> mesh = resolve_mesh("all")
    >>> def reduced(rows):
    ...     with leading_axis(mesh):
    ...         out = blockwise_mean(scaled_mean, jnp.float32(2.0), rows)
    ...     return scaled_mean(2.0, rows) if out is None else out  # None on one device
    >>> float(jax.jit(reduced)(jnp.arange(4.0)))
    3.0
    """
    mesh = _ACTIVE.get()
    leaves = jax.tree.leaves(rows)
    if mesh is None or mesh.size == 1 or not leaves or any(a.ndim == 0 or a.shape[0] % mesh.size for a in leaves):
        return None
    with leading_axis(None):  # shapes of the outputs: evaluated on one block, no device
        block = jax.tree.map(lambda a: jax.ShapeDtypeStruct((a.shape[0] // mesh.size, *a.shape[1:]), a.dtype), rows)
        out_shapes = jax.eval_shape(fn, shared, block)
    if not all(jax.numpy.issubdtype(s.dtype, jax.numpy.floating) for s in jax.tree.leaves(out_shapes)):
        return None
    n = mesh.size

    def local(shared, rows):
        with leading_axis(None):  # inside: plain per-device arrays
            flat, unravel = ravel_pytree(fn(shared, rows))
        return unravel(jax.lax.psum(flat, AXIS) / n)

    specs = jax.tree.map(lambda _: PartitionSpec(AXIS), rows)
    return jax.shard_map(local, mesh=mesh, in_specs=(PartitionSpec(), specs), out_specs=PartitionSpec(),
                         check_vma=False)(shared, rows)
