"""One process of a (possibly multi-process) CD fit and sample; driven by tests/test_distributed.py.

    python distributed_fit.py OUT --nproc N --pid I --port P [--steps S] [--ckpt DIR] [--resume] [--sleep SEC] [--no-sample] [--one-device-too]

With ``--nproc 1`` no ``jax.distributed``: the process uses the devices it has
(``EBMPPL_CPU_DEVICES`` / ``XLA_FLAGS`` set by the caller). With ``--nproc 2``
it joins a 2-process run (gloo CPU collectives) on ``localhost:P``.
``--ckpt DIR``: every process gets its own checkpoint folder ``DIR/p<pid>`` (as
hosts without a shared filesystem would): only ``DIR/p0`` may ever be written.
Every file this process opens for writing or renames into place is logged
(``os.replace``, ``os.rename`` and ``open`` patched), and the result —
parameters, loss history, sampler draws, the log — goes to ``OUT/result_p<pid>.npz``.
"""

import argparse
import builtins
import json
import os
import pathlib
import time

parser = argparse.ArgumentParser()
parser.add_argument("out")
parser.add_argument("--nproc", type=int, default=1)
parser.add_argument("--pid", type=int, default=0)
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--steps", type=int, default=100)
parser.add_argument("--ckpt", default=None)
parser.add_argument("--resume", action="store_true")
parser.add_argument("--sleep", type=float, default=0.0)
parser.add_argument("--no-sample", action="store_true")
parser.add_argument("--health", action="store_true", help="fit's default training-health monitor on")
parser.add_argument("--one-device-too", action="store_true", help="also fit on the first device alone (1 process)")
args = parser.parse_args()

import jax  # noqa: E402

if args.nproc > 1:  # before importing ebmppl: its import (BlackJAX's) starts JAX's backend
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"localhost:{args.port}", num_processes=args.nproc, process_id=args.pid)

import numpy as np  # noqa: E402
import optax  # noqa: E402

import ebmppl  # noqa: E402
from ebmppl import buffer, samplers  # noqa: E402
from ebmppl.data import two_moons  # noqa: E402
from ebmppl.distributed import to_host  # noqa: E402
from ebmppl.nn import MLPEnergy  # noqa: E402
from ebmppl.targets import banana  # noqa: E402

writes: list[str] = []
_replace, _rename, _open = os.replace, os.rename, builtins.open


CACHE = os.environ.get("JAX_COMPILATION_CACHE_DIR")  # JAX's own compilation cache is not ebmppl's writing


def _log(kind, path):
    if not (CACHE and str(path).startswith(CACHE)):
        writes.append(f"{kind} {path}")


def _log_replace(src, dst, *a, **k):
    _log("replace", dst)
    return _replace(src, dst, *a, **k)


def _log_rename(src, dst, *a, **k):
    _log("rename", dst)
    return _rename(src, dst, *a, **k)


def _log_open(file, mode="r", *a, **k):
    if any(c in mode for c in "wax+"):
        _log("open", file)
    return _open(file, mode, *a, **k)


os.replace, os.rename, builtins.open = _log_replace, _log_rename, _log_open

assert jax.process_count() == args.nproc and jax.process_index() == args.pid
x = np.asarray(two_moons().sample(jax.random.key(0), 1024))
net = MLPEnergy(2, (32, 32), key=jax.random.key(1))
energy = ebmppl.Energy.from_equinox(net, event_shape=(2,))
callbacks = [lambda step, state, metrics: time.sleep(args.sleep)] if args.sleep else []
ckpt = None if args.ckpt is None else pathlib.Path(args.ckpt) / f"p{args.pid}"


def train(devices, checkpoint_dir):
    return ebmppl.fit(energy, jax.random.key(3), x, num_steps=args.steps, batch_size=64, progress_bar=False,
                      optimizer=optax.adam(1e-3), sampler=samplers.langevin(step_size=0.01, noise_scale=0.1),
                      chain_init=buffer.replay_buffer(512), num_mcmc_steps=10, chunk_size=10, devices=devices,
                      checkpoint_dir=checkpoint_dir, checkpoint_every=10, resume=args.resume, callbacks=callbacks,
                      health=args.health)


def params(result):
    return {f"param_{i}": np.asarray(leaf) for i, leaf in enumerate(jax.tree.leaves(to_host(result.state.params)))}


# devices=N under several processes: an equal share of every process's devices, never process 0's alone
from ebmppl.sharding import resolve_mesh  # noqa: E402

mesh_processes = sorted({d.process_index for d in resolve_mesh(args.nproc).devices.flat})
mesh_errors = []
if args.nproc > 1:
    for bad in (1, [jax.local_devices()[0]]):
        try:
            resolve_mesh(bad)
        except ValueError as e:
            mesh_errors.append(str(e))

t0 = time.perf_counter()
result = train("all", ckpt)
fit_seconds = time.perf_counter() - t0
out = params(result)
out["loss"] = result.history["loss"]
out["step"] = np.asarray(result.history["step"])
if args.one_device_too:
    out.update({f"one_{k}": v for k, v in params(train(1, None)).items()})
if not args.no_sample:
    s = ebmppl.sample(banana().energy, jax.random.key(5), sampler="mala", num_chains=8, num_warmup=50, num_samples=50,
                      adapt=False, progress_bar=False, devices="all")
    assert s.positions.is_fully_addressable, "sample must return host-readable draws on every process"
    out["draws"] = np.asarray(s.positions)
os.replace, os.rename, builtins.open = _replace, _rename, _open
info = {"devices": len(jax.devices()), "local_devices": len(jax.local_devices()), "writes": writes,
        "fit_seconds": fit_seconds, "mesh_processes": mesh_processes,
        "mesh_errors": mesh_errors, "param_sharding": str(jax.tree.leaves(result.state.params)[0].sharding)}
out["info"] = np.asarray(json.dumps(info))
path = pathlib.Path(args.out) / f"result_p{args.pid}.npz"
np.savez(path.with_suffix(".tmp.npz"), **out)
os.replace(path.with_suffix(".tmp.npz"), path)
print(f"done p{args.pid}: {json.dumps(info)}", flush=True)
