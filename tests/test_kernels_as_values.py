"""Kernels as values: samplers are Equinox modules that hash by their options, the warm-up strategy is an
object, ``sample`` keeps no compiled program alive beyond its energy, and a new sampler is one class plus
one registry line (the Design page's worked example, sampled and trained with)."""

import gc
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import moment_z_scores

import ebmppl
from ebmppl import Energy, sample, samplers
from ebmppl.support import SPINS


# ----------------------------------------------------------------- the Design page's example
class RWState(NamedTuple):
    position: jax.Array
    logdensity: jax.Array


class RandomWalk(samplers.Sampler):
    """Random-walk Metropolis: propose x' = x + s·ξ, accept with probability min(1, p(x')/p(x))."""

    name = "rwm"
    exact = True                               # Metropolis-adjusted: its stationary law is p itself
    warmup = samplers.StepSizeAdaptation()     # warm-up tunes s by dual averaging ...
    target_acceptance = 0.234                  # ... towards this acceptance rate
    step_size: float = eqx.field(static=True, default=0.5)   # an option: static, so equal samplers hash equal

    def init(self, key, position, logdensity_fn):
        return RWState(position, logdensity_fn(position))

    def step(self, key, state, logdensity_fn, params):
        k_move, k_accept = jax.random.split(key)
        x = state.position + params["step_size"] * jax.random.normal(k_move, state.position.shape)
        logdensity = logdensity_fn(x)
        p_accept = jnp.minimum(1.0, jnp.exp(logdensity - state.logdensity))
        accept = jax.random.uniform(k_accept) < p_accept
        new = jax.tree.map(lambda a, b: jnp.where(accept, a, b), RWState(x, logdensity), state)
        return new, samplers.StepStats(p_accept, jnp.array(False), jnp.array(0), new.logdensity)

    def default_params(self, dim):
        return {"step_size": jnp.asarray(self.step_size)}


def test_design_page_sampler(gauss2d):
    """The toy sampler, registered by one line, samples a Gaussian (moments within 4 MCSE) through
    ``ebmppl.sample`` and trains an energy through ``ebmppl.fit(objective="cd")``."""
    samplers.register("rwm", RandomWalk)
    try:
        out = sample(gauss2d.energy, jax.random.key(0), sampler="rwm", num_chains=4, num_warmup=500,
                     num_samples=2000, progress_bar=False)
        z_mean, z_cov = moment_z_scores(np.asarray(out.positions, np.float64), gauss2d.mean, gauss2d.cov)
        assert z_mean.max() < 4 and z_cov.max() < 4, (z_mean, z_cov)
        assert 0.15 < float(np.mean(out.health.acceptance)) < 0.35  # adapted towards 0.234

        data = jnp.array([1.0, -1.0]) + jax.random.normal(jax.random.key(1), (512, 2))
        energy = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))
        result = ebmppl.fit(energy, jax.random.key(2), data, objective="cd", sampler="rwm", num_steps=60,
                            optimizer=optax.sgd(0.1), sampler_params={"step_size": 0.7}, num_mcmc_steps=10,
                            alpha=0.0, chunk_size=30, progress_bar=False)
        assert np.all(np.isfinite(result.history["loss"]))
        # the negatives came from the toy kernel (a Metropolis acceptance rate) ...
        assert 0.05 < float(np.mean(result.history["acceptance_rate"])) < 0.95
        # ... and CD moved the mean from 0 towards the data's (1, -1) (persistent chains lag θ, so it may
        # overshoot: the check is the direction and the size of the move, not convergence)
        moved = np.asarray(result.energy.params)
        assert moved[0] > 0.5 and moved[1] < -0.5, moved
        # a Sampler value works as well as its registered name
        assert samplers.get_sampler("rwm", step_size=0.2) == RandomWalk(0.2)
    finally:
        del samplers.SAMPLERS["rwm"]


# ----------------------------------------------------------------- samplers are values
@pytest.mark.parametrize("name", samplers.available())
def test_samplers_with_equal_options_are_equal_and_hash_equal(name):
    a, b = samplers.get_sampler(name), samplers.get_sampler(name)
    assert a is not b and a == b and hash(a) == hash(b)
    assert a.default_params(3).keys() == b.default_params(3).keys()
    # every sampler has an option that changes it: its step size, parallel tempering's number of levels, a
    # discrete sampler's scan or blocks or support
    option = ({"num_replicas": 5} if name == "parallel_tempering" else {"sweep": True} if name == "gibbs"
              else {"blocks": ((0,), (1, 2))} if name == "block_gibbs"
              else {"support": SPINS} if name in ("discrete_metropolis", "gibbs_with_gradients")
              else {"step_size": 0.123})
    other = samplers.get_sampler(name, **option)
    assert other != a
    assert isinstance(a, samplers.Sampler) and isinstance(a.warmup, samplers.Warmup)


def test_a_sampler_is_a_jit_static_argument_compiled_once():
    """Equal samplers built apart hit the same compiled program; a list option becomes a tuple (hashable)."""
    traces = []

    @jax.jit
    def one_step(sampler, x):  # a sampler has no array leaves: its options live in the pytree structure
        traces.append(1)
        state = sampler.init(jax.random.key(0), x, lambda y: -0.5 * jnp.sum(y**2))
        return sampler.position(sampler.step(jax.random.key(1), state, lambda y: -0.5 * jnp.sum(y**2),
                                             sampler.default_params(2))[0])

    one_step(samplers.langevin(step_size=0.1, clamp=[-1, 1]), jnp.zeros(2))
    one_step(samplers.langevin(step_size=0.1, clamp=(-1.0, 1.0)), jnp.ones(2))
    assert len(traces) == 1
    one_step(samplers.langevin(step_size=0.2, clamp=(-1.0, 1.0)), jnp.ones(2))
    assert len(traces) == 2
    static = jax.jit(lambda s, x: s.default_params(2)["step_size"] * x, static_argnums=0)
    assert float(static(samplers.mala(step_size=0.5), 2.0)) == 1.0


@pytest.mark.parametrize("bad", ["window", None, samplers.WindowAdaptation])
def test_a_warmup_that_is_not_a_strategy_object_is_a_type_error_naming_the_choices(bad):
    class Stringly(samplers.MALA):
        name = "stringly"
        warmup = bad

    with pytest.raises(TypeError, match=r"Stringly.warmup must be a warm-up strategy object: WindowAdaptation\(\), "
                                        r"StepSizeAdaptation\(\), MCLMCTuning\(\) or NoAdaptation\(\)"):
        Stringly()


def test_warmup_strategies_dispatch_by_object(gauss2d):
    """The same kernel under two strategies: the window one adapts a mass matrix, step-size-only does not."""
    class StepOnlyHMC(samplers.HMC):
        warmup = samplers.StepSizeAdaptation()

    kw = dict(num_chains=4, num_warmup=200, num_samples=20, progress_bar=False)
    window = sample(gauss2d.energy, jax.random.key(0), sampler=samplers.hmc(num_integration_steps=4), **kw)
    step_only = sample(gauss2d.energy, jax.random.key(0), sampler=StepOnlyHMC(num_integration_steps=4), **kw)
    np.testing.assert_allclose(step_only.params["inverse_mass_matrix"], np.ones(2))
    assert np.all(np.abs(np.log(np.asarray(window.params["inverse_mass_matrix"]) / np.diag(gauss2d.cov))) < 0.7)


def test_the_rebuild_is_init_at_the_position():
    """No ``rebuild``: a state made under an old θ is refreshed by ``init`` at its position."""
    s = samplers.hmc()
    assert not hasattr(s, "rebuild")
    state = s.init(None, jnp.ones(2), lambda x: -jnp.sum(x**2))
    fresh = s.init(None, s.position(state), lambda x: -2.0 * jnp.sum(x**2))
    assert float(fresh.logdensity) == -4.0


# ----------------------------------------------------------------- sample(sampler_params=...)
def test_sample_takes_sampler_params(gauss2d):
    kw = dict(sampler="mala", num_chains=2, num_warmup=0, num_samples=10, adapt=False, progress_bar=False)
    out = sample(gauss2d.energy, jax.random.key(0), sampler_params={"step_size": 0.05}, **kw)
    assert float(out.params["step_size"]) == pytest.approx(0.05)
    # the override is the starting point of warm-up, which then tunes it
    tuned = sample(gauss2d.energy, jax.random.key(0), sampler="mala", sampler_params={"step_size": 1e-4},
                   num_chains=2, num_warmup=200, num_samples=10, progress_bar=False)
    assert float(tuned.params["step_size"]) > 1e-2
    dense = sample(gauss2d.energy, jax.random.key(0), sampler="hmc", num_chains=2, num_warmup=0, num_samples=5,
                   adapt=False, progress_bar=False, sampler_params={"inverse_mass_matrix": np.asarray(gauss2d.cov)})
    assert dense.params["inverse_mass_matrix"].shape == (2, 2)


@pytest.mark.parametrize("params, match", [
    ({"stepsize": 0.1}, r"sampler_params has unknown key 'stepsize'; this sampler's parameters are: 'step_size'"),
    ({"step_size": -1.0}, r"sampler_params\['step_size'\] must be > 0"),
    ({"step_size": np.ones(2)}, r"sampler_params\['step_size'\] must have shape \(\).*got shape \(2,\)"),
    ({"step_size": "0.1"}, r"sampler_params\['step_size'\] must be a number or an array, got the string"),
    ({"inverse_mass_matrix": np.ones(3)}, r"sampler_params\['inverse_mass_matrix'\] has shape \(3,\)"),
    # a build option passed as a kernel parameter: the error names the builder call that sets it
    ({"num_integration_steps": 5}, r"unknown key 'num_integration_steps'.*"
                                   r"sampler=ebmppl\.samplers\.hmc\(num_integration_steps=5\)"),
])
def test_sample_rejects_bad_sampler_params(gauss2d, params, match):
    sampler = "hmc" if {"inverse_mass_matrix", "num_integration_steps"} & set(params) else "mala"
    with pytest.raises((TypeError, ValueError), match=match):
        sample(gauss2d.energy, jax.random.key(0), sampler=sampler, sampler_params=params, num_chains=2,
               num_warmup=0, num_samples=5, progress_bar=False)


# ----------------------------------------------------------------- no compiled program outlives its energy
def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _fresh_energy():
    # a new closure every call: nothing jax could cache by identity is shared between calls
    return Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))


@pytest.mark.usefixtures("without_persistent_cache")  # a disk-cache hit is fast too: the reuse must be in memory
def test_a_second_sample_of_the_same_energy_reuses_its_programs(gauss2d):
    kw = dict(sampler="ula", num_chains=2, num_warmup=20, num_samples=20, progress_bar=False)
    energy = _fresh_energy()
    first = sample(energy, jax.random.key(0), **kw)
    again = sample(energy.with_params(jnp.ones(2)), jax.random.key(1), **kw)  # same function, new θ
    assert again.timings["compile"] < 0.25 * first.timings["compile"], (first.timings, again.timings)
    assert set(again.timings) == {"compile", "warmup", "sampling"}


@pytest.mark.slow
def test_sampling_fresh_energies_does_not_grow_memory():
    """60 ``sample`` calls, each on a fresh energy, grow resident memory by < 50 MB after a warm-up of 10
    calls: the compiled programs (~3 MB each) go with their energy. (A cache of them keyed on the
    energy, as before, grew ~650 MB over 200 calls: ~195 MB over 60, four times the bound.) No warm-up and
    one draw: the programs are compiled and run all the same, at half the compile time."""
    kw = dict(sampler="ula", num_chains=2, num_warmup=0, num_samples=1, progress_bar=False)
    for i in range(10):
        sample(_fresh_energy(), jax.random.key(i), **kw)
    gc.collect()
    before = _rss_mb()
    for i in range(60):
        sample(_fresh_energy(), jax.random.key(i), **kw)
    gc.collect()
    assert _rss_mb() - before < 50.0
