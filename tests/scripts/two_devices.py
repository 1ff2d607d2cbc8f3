"""Run with EBMPPL_CPU_DEVICES=2 (two CPU devices at `import ebmppl`): 1 device vs 2 devices, printed as JSON."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax

import ebmppl
from ebmppl import buffer, samplers
from ebmppl.nn import MLPEnergy
from ebmppl.objectives import ContrastiveDivergence, LossTerm, Objective, negative_chains
from ebmppl.targets import banana

assert len(jax.devices()) == 2, jax.devices()
out = {}
net = MLPEnergy(4, (32, 32), base_scale=2.0, key=jax.random.key(0))
mlp = ebmppl.Energy.from_equinox(net, event_shape=(4,))


def draws(energy, sampler, adapt, devices):
    s = ebmppl.sample(energy, jax.random.key(1), sampler=sampler, num_chains=64, num_warmup=100, num_samples=100,
                      adapt=adapt, progress_bar=False, devices=devices)
    return np.asarray(s.positions), {k: float(np.asarray(v)) for k, v in s.params.items() if np.ndim(v) == 0}, s


for name, energy in (("banana", banana().energy), ("mlp", mlp)):
    for sampler in ("mala", "hmc"):
        one, _, _ = draws(energy, sampler, False, None)
        two, _, s2 = draws(energy, sampler, False, 2)
        out[f"{name}-{sampler}-fixed-identical"] = bool(np.array_equal(one, two))
        out[f"{name}-{sampler}-fixed-max-diff"] = float(np.max(np.abs(one - two)))
        out[f"{name}-{sampler}-fixed-first-diff"] = float(np.max(np.abs(one[:, :5] - two[:, :5])))
        out[f"{name}-{sampler}-sharded"] = str(s2.positions.sharding.spec)
    one, p1, s1 = draws(energy, "mala", True, None)
    two, p2, s2 = draws(energy, "mala", True, "all")
    out[f"{name}-adapted-step-rel-diff"] = abs(p1["step_size"] - p2["step_size"]) / p1["step_size"]
    # means of the two runs as z-scores against the Monte-Carlo error of their difference
    ess = np.minimum(np.asarray(ebmppl.diagnostics.ess(one)), np.asarray(ebmppl.diagnostics.ess(two)))
    se = np.sqrt(one.reshape(-1, one.shape[-1]).var(0) / ess * 2)
    out[f"{name}-adapted-max-z"] = float(np.max(np.abs(one.mean((0, 1)) - two.mean((0, 1))) / se))

x = jax.random.normal(jax.random.key(2), (1024, 4)) * 0.7 + 1.0
results = []
for devices in (None, "all"):
    r = ebmppl.fit(mlp, x, key=jax.random.key(3), num_steps=100, batch_size=64, progress_bar=False,
                   optimizer=optax.adam(1e-3, b1=0.0), sampler=samplers.langevin(step_size=0.01, noise_scale=0.1),
                   chain_init=buffer.replay_buffer(512), num_mcmc_steps=10, chunk_size=50, devices=devices)
    results.append(r)
diffs = [float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(results[0].state.params),
                                                     jax.tree.leaves(results[1].state.params), strict=True)]
scales = [float(jnp.max(jnp.abs(a))) for a in jax.tree.leaves(results[0].state.params)]
out["fit-max-param-diff"] = max(diffs)
out["fit-max-param-scale"] = max(scales)
out["fit-loss-max-diff"] = float(np.max(np.abs(results[0].history["loss"] - results[1].history["loss"])))
# every recorded metric (reduced block by block on 2 devices): relative to its scale
out["fit-metrics-max-rel-diff"] = {
    k: float(np.nanmax(np.abs(v - results[1].history[k])) / max(1.0, float(np.nanmax(np.abs(v)))))
    for k, v in results[0].history.items() if np.issubdtype(v.dtype, np.floating) and not np.isnan(v).all()}

# a term that is not a mean over rows (denoising score matching draws noise): XLA partitions it whole
dsm = [ebmppl.fit(mlp, x, key=jax.random.key(4), num_steps=50, batch_size=64, progress_bar=False, objective="dsm",
                  optimizer=optax.adam(1e-3), chunk_size=25, devices=devices).state.params for devices in (None, "all")]
out["dsm-max-param-diff"] = max(float(jnp.max(jnp.abs(a - b)))
                                for a, b in zip(jax.tree.leaves(dsm[0]), jax.tree.leaves(dsm[1]), strict=True))

# the divergence guard on 2 devices: chains that run off to infinity stop the run at the same step as on one
runaway = ebmppl.Energy(lambda p, x: -p * jnp.sum(x**4), jnp.float32(1.0), event_shape=(2,))
stops = []
for devices in (None, "all"):
    try:
        ebmppl.fit(runaway, jnp.ones((256, 2)), key=jax.random.key(5), num_steps=20, batch_size=64, progress_bar=False,
                   sampler=samplers.langevin(step_size=1.0, noise_scale=0.1), chain_init=buffer.replay_buffer(128),
                   num_mcmc_steps=20, chunk_size=20, devices=devices, health=False)
        stops.append("finished")
    except ebmppl.TrainingDiverged as e:
        stops.append(str(e).splitlines()[0])
out["runaway-stops"] = stops


# a user's term that declares row_mean but sums over rows: refused before training, naming the fix
class SumOfSquares(LossTerm):
    row_mean = True

    def __call__(self, model, phases, extra):
        return 0.01 * jnp.sum(model.energy(phases.positive) ** 2), {}


summing = Objective("cd+sum", mlp, optax.adam(1e-3), (ContrastiveDivergence(), SumOfSquares()),
                    negative=negative_chains("langevin", 4, num_mcmc_steps=5, chain_init=buffer.replay_buffer(256)))
try:
    ebmppl.fit(mlp, x, key=jax.random.key(6), objective=summing, num_steps=4, batch_size=64, chunk_size=4,
               progress_bar=False, devices="all")
    out["summing-term"] = "trained"
except ValueError as e:
    out["summing-term"] = str(e)
print("RESULT " + json.dumps(out))
