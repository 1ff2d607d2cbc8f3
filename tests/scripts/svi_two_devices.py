"""Run with EBMPPL_CPU_DEVICES=2 (two CPU devices at `import ebmppl`): the SVI route sharded on 2 devices, as JSON.

The one-device run it is compared with is the test module's fixture (``run_svi(data(), key(1))`` in a one-device
process: the same program), so it is not run again here; the first iterates come back for that comparison."""

import json
import pathlib
import sys

import jax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from _svi_closed_form import data, run_svi, z_scores  # noqa: E402

from ebmppl.sharding import leading_axis, resolve_mesh, shard_leading  # noqa: E402

assert len(jax.devices()) == 2, jax.devices()
x = data()
key = jax.random.key(1)
mesh = resolve_mesh(2)


def sharded(run):
    def inner(state):
        with leading_axis(mesh):  # the negative chains are sharded along their leading axis
            return run(state)
    return inner


state2, m2, l2 = run_svi(shard_leading(x, mesh), key, trace_step=sharded)
buffer = state2.mutable_state["z$chains"]["buffer"].samples
out = {"z_two": z_scores(x, m2, l2).tolist(), "first_means": m2[:5].tolist(), "first_log_scales": l2[:5].tolist(),
       "buffer_devices": len(buffer.sharding.device_set)}
print("RESULT " + json.dumps(out))
