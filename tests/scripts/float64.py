"""Run with JAX_ENABLE_X64=1: sampling, fitting, log Z and checkpoints in float64; prints a JSON line."""

import json
import pathlib
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

import ebmppl
from ebmppl.checkpoint import load_checkpoint
from ebmppl.nn import MLPEnergy
from ebmppl.targets import gaussian

assert jax.config.jax_enable_x64
out = {}
t = gaussian([1.0, -1.0], [[1.0, 0.3], [0.3, 0.5]])
s = ebmppl.sample(t.energy, jax.random.key(0), sampler="nuts", num_chains=4, num_warmup=300, num_samples=300,
                  progress_bar=False)
out["sample_dtype"] = str(s.positions.dtype)
out["sample_mean_err"] = float(np.max(np.abs(np.asarray(s.positions).mean((0, 1)) - t.mean)))
net = MLPEnergy(2, (16, 16), base_scale=2.0, key=jax.random.key(1))
net = jax.tree.map(lambda a: a.astype(jnp.float64) if isinstance(a, jax.Array) else a, net)
energy = ebmppl.Energy.from_equinox(net, event_shape=(2,))
data = jax.random.normal(jax.random.key(2), (256, 2), dtype=jnp.float64)
with tempfile.TemporaryDirectory() as d:
    r = ebmppl.fit(energy, data, key=jax.random.key(3), num_steps=40, chunk_size=20, progress_bar=False,
                   checkpoint_dir=d, sampler_params={"step_size": 0.01, "noise_scale": 0.1})
    out["fit_param_dtypes"] = sorted({str(a.dtype) for a in jax.tree.leaves(r.state.params)})
    out["fit_finite"] = bool(all(np.all(np.isfinite(np.asarray(a))) for a in jax.tree.leaves(r.state.params)))
    back, _ = load_checkpoint(pathlib.Path(d) / "checkpoint.ebm", r.state)
    out["checkpoint_exact"] = bool(all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(back.params),
                                                                           jax.tree.leaves(r.state.params))))
est = ebmppl.log_partition(t.energy, jax.random.key(4), num_chains=256, num_temperatures=200)
out["ais_err"] = abs(est.log_z - t.log_z)
out["ais_stderr"] = est.stderr
grid = ebmppl.log_partition(t.energy, method="grid", limits=(-8, 8, -8, 8), resolution=600)
out["grid_err"] = abs(grid.log_z - t.log_z)
print("RESULT " + json.dumps(out))
