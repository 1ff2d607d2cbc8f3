"""
Sharded sampling across devices
===============================

Chains are independent, so they are the natural unit to spread over
devices. ``ebmppl.sample(..., devices="all")`` places the chain axis on a
one-dimensional device mesh (a ``NamedSharding``); XLA runs each device's
share of the chains and all-reduces what the warm-up pools. Every chain's
random stream is split from one key over the full chain axis, so the draws
do not depend on how many devices ran them.

On a CPU, ``import ebmppl`` already makes one device per usable core
(``EBMPPL_CPU_DEVICES=N``, set before the import, asks for N); on a GPU node
``jax.devices()`` lists the GPUs; on a cluster, call
``jax.distributed.initialize()`` first on every host and the same line shards
over all of them. ``fit(..., devices="all")`` does the same for training:
batch and negatives sharded, parameters replicated, gradients all-reduced.
"""

import os
import sys

if "jax" not in sys.modules:  # run as a script: at least two CPU devices (the docs build sets this too)
    os.environ.setdefault("EBMPPL_CPU_DEVICES", str(max(2, os.cpu_count() or 1)))


import jax
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import ebmppl
from ebmppl.nn import MLPEnergy

FAST = os.environ.get("EBMPPL_FAST") == "1"
CHAINS, DRAWS = (256, 100) if FAST else (2048, 500)
print("devices:", jax.devices())

# %%
# An MLP energy over 16 dimensions; many MALA chains with a fixed step size.
net = MLPEnergy(16, (128, 128), confinement_scale=3.0, key=jax.random.key(0))
energy = ebmppl.Energy.from_equinox(net, event_shape=(16,))
sampler = ebmppl.samplers.mala(step_size=0.05)


def run(devices):
    kw = dict(sampler=sampler, num_chains=CHAINS, num_warmup=0, num_samples=DRAWS, adapt=False,
              progress_bar=False, devices=devices)
    ebmppl.sample(energy, jax.random.key(1), **kw)  # compile once
    best = min((ebmppl.sample(energy, jax.random.key(1), **kw) for _ in range(3)),
               key=lambda s: s.timings["sampling"])
    return best


one = run(None)
many = run("all")
print("chains placed as", many.positions.sharding)

# %%
# The same draws on one device and on all of them, to float rounding: each chain's
# random stream does not depend on the layout, but an MLP's matrix products may
# round differently by block size, so we report the largest difference.
diff = float(np.max(np.abs(np.asarray(one.positions) - np.asarray(many.positions))))
print(f"largest difference between 1 and {len(jax.devices())} device(s): {diff:.2e}")
speedup = one.timings["sampling"] / many.timings["sampling"]
print(f"sampling time: 1 device {one.timings['sampling']:.3f} s, {len(jax.devices())} devices "
      f"{many.timings['sampling']:.3f} s  (×{speedup:.2f})")

# %%
# Throughput and where the chains ran.
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
steps = CHAINS * DRAWS
axes[0].bar(["1 device", f"{len(jax.devices())} devices"],
            [steps / one.timings["sampling"] / 1e6, steps / many.timings["sampling"] / 1e6],
            color=["0.6", "tab:blue"])
axes[0].set(ylabel="million chain-steps per second", title=f"MALA, {CHAINS} chains, 16-D MLP energy")
shards = [(s.device.id, s.index[0]) for s in many.positions.addressable_shards]
for device_id, rows in shards:
    axes[1].barh(device_id, rows.stop - rows.start if rows.stop is not None else CHAINS,
                 left=rows.start or 0, color=f"C{device_id}")
axes[1].set(xlabel="chain index", ylabel="device", yticks=[d for d, _ in shards], xlim=(0, CHAINS),
            title="chain axis split over the device mesh")
fig.savefig(os.environ.get("EBMPPL_FIGURE", "sharded_sampling.png"), dpi=100)
