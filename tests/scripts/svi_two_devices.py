"""Run with EBMPPL_CPU_DEVICES=2 (two CPU devices at `import ebmppl`): the SVI route on 1 and 2 devices, as JSON."""

import json
import pathlib
import sys

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from _svi_closed_form import data, run_svi, z_scores  # noqa: E402

from ebmppl.sharding import leading_axis, resolve_mesh, shard_leading  # noqa: E402

assert len(jax.devices()) == 2, jax.devices()
x = data()
key = jax.random.key(1)
_, m1, l1 = run_svi(x, key)
mesh = resolve_mesh(2)


def sharded(run):
    def inner(state):
        with leading_axis(mesh):  # the negative chains are sharded along their leading axis
            return run(state)
    return inner


state2, m2, l2 = run_svi(shard_leading(x, mesh), key, trace_step=sharded)
buffer = state2.mutable_state["z$chains"]["buffer"].samples
out = {"z_one": z_scores(x, m1, l1).tolist(), "z_two": z_scores(x, m2, l2).tolist(),
       "max_param_diff": float(max(np.abs(m1 - m2).max(), np.abs(l1 - l2).max())),
       "first_step_diff": float(max(np.abs(m1[:5] - m2[:5]).max(), np.abs(l1[:5] - l2[:5]).max())),
       "buffer_devices": len(buffer.sharding.device_set)}
print("RESULT " + json.dumps(out))
