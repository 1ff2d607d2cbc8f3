"""Run with EBMPPL_CPU_DEVICES=2 (two CPU devices at `import ebmppl`): the MCEM route sharded on 2 devices, as JSON.

The one-device run it is compared with is the test module's own fixture (``run(data(), key(2))``, devices=None:
the same single-device program), so it is not run again here."""

import json
import pathlib
import sys

import jax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from _mcem_closed_form import data, run, tail_summary, truth  # noqa: E402

assert len(jax.devices()) == 2, jax.devices()
x = data()
out = {"truth": truth(x).tolist()}
for devices in (2,):
    result, trace = run(x, jax.random.key(2), devices=devices)
    mean, mcse = tail_summary(trace)
    out[str(devices)] = {"mean": mean.tolist(), "mcse": mcse.tolist(),
                         "chains_sharding": str(result.state.positive.chains.sharding),
                         "chains_devices": len(result.state.positive.chains.sharding.device_set),
                         "finite": bool(result.history["finite"].all())}
print("RESULT " + json.dumps(out))
