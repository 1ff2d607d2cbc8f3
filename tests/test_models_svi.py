"""The SVI route of issue 17: NumPyro's SVI learns an energy's θ inside a model (ebmppl.models.ebm_sample)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import optax
import pytest
from numpyro.infer import MCMC, NUTS, SVI, Trace_ELBO
from numpyro.infer.util import log_density

from ebmppl import Energy
from ebmppl.models import chain_report, ebm_sample, energy_module, prior_chains
from ebmppl.samplers.sample import ChainHealthWarning

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _svi_closed_form import CHAINS, ENERGY, data, mle, model, run_svi, z_scores  # noqa: E402
from conftest import SUITE_XLA_FLAGS

pytestmark = pytest.mark.xla_optimized  # long-running programs: compiled with XLA's optimisations

SCRIPT = pathlib.Path(__file__).parent / "scripts" / "svi_two_devices.py"


@pytest.fixture(scope="module")
def closed_form():
    x = data()
    state, means, log_scales = run_svi(x, jax.random.key(1))
    return x, state, means, log_scales


def test_svi_recovers_the_marginal_mle(closed_form):
    x, _, means, log_scales = closed_form
    z = z_scores(x, means, log_scales)
    # tail-averaged θ against the closed-form MLE, in units of its Monte-Carlo standard error
    assert np.all(np.abs(z) < 4), z


def test_svi_negative_chains_are_healthy(closed_form):
    _, state, _, _ = closed_form
    with warnings.catch_warnings():
        warnings.simplefilter("error", ChainHealthWarning)
        report = chain_report(state.mutable_state, "z")
    assert report["finite"] and report["acceptance_rate"] > 0.5
    # the stored chains are draws of the learned prior: their spread ≈ the mean of the MLE scales, within the
    # standard error of a standard deviation from n draws (s/√(2n) per coordinate, averaged over coordinates)
    scales = np.exp(mle(data())[1])
    n = CHAINS.strategy.capacity
    se = np.sqrt(np.sum(scales**2 / (2 * n))) / scales.size
    assert report["chain_site_gap"] < 1.0
    assert abs(report["chain_std"] - scales.mean()) < 4 * se, (report["chain_std"], scales.mean(), se)


def test_factor_without_the_log_z_correction_fails():
    x = data()
    _, _, log_scales = run_svi(x, jax.random.key(1), correct=False, num_steps=1500)
    _, ls_hat = mle(x)
    # -E_θ/T alone rewards flattening the energy: the scales run away from the MLE (and keep going)
    assert np.all(log_scales[-1] > ls_hat + 1.0), (log_scales[-1], ls_hat)
    assert np.all(log_scales[-1] > log_scales[-500] + 0.1)


def test_no_log_z_factor_without_a_key():
    # MCMC over the latents evaluates the log density without a seed: the constant term is left out
    x = data()[:10]
    params = {"prior": ENERGY.params, "z": jnp.zeros((10, 3))}
    logp, tr = log_density(model, (x,), {}, params)
    assert "z$log_Z" not in tr and "z$chains" not in tr
    assert np.isfinite(float(logp))


def test_latents_under_numpyro_mcmc_with_theta_fixed():
    # with θ fixed the same model runs under NUTS: p(z | x) is Gaussian, mean x·s²/(s²+σ²) + μ·σ²/(s²+σ²)
    x = data()[:4]
    fixed = numpyro.handlers.substitute(model, {"prior": {"mean": jnp.zeros(3), "log_scale": jnp.zeros(3)}})
    mcmc = MCMC(NUTS(fixed), num_warmup=300, num_samples=1000, progress_bar=False)
    mcmc.run(jax.random.key(0), x)
    z = np.asarray(mcmc.get_samples()["z"])
    exact = np.asarray(x) * 1.0 / (1.0 + 0.25)
    se = z.std(0) / np.sqrt(np.asarray(numpyro.diagnostics.effective_sample_size(z[None])))
    assert np.all(np.abs(z.mean(0) - exact) < 4 * se)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="no floating-point parameters"):
        numpyro.handlers.seed(lambda: energy_module("p", Energy(lambda p, x: jnp.sum(x**2), event_shape=(2,))),
                              0)()
    with pytest.raises(TypeError, match="negative="):
        numpyro.handlers.seed(lambda: ebm_sample("z", ENERGY, negative="mala", obs=jnp.zeros(3)), 0)()
    with pytest.raises(ValueError, match="capacity"):
        prior_chains("mala", 3, capacity=0)
    with pytest.raises(KeyError, match="ebm_sample sites found"):
        chain_report({"z$chains": None}, "y")


def test_diverging_negative_chains_are_said_aloud():
    e = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))
    huge = prior_chains("ula", 2, num_mcmc_steps=20, sampler_params={"step_size": 50.0}, target_acceptance=None)

    def m(x):
        with numpyro.plate("data", x.shape[0]):
            ebm_sample("x", energy_module("theta", e), obs=x, negative=huge)

    svi = SVI(m, lambda x: None, optax.adam(0.01), Trace_ELBO())
    result = svi.run(jax.random.key(0), 3, jnp.ones((32, 2)), progress_bar=False)
    assert not np.isfinite(result.losses[-1])  # the NaN reaches the loss: SVI shows it
    with pytest.warns(ChainHealthWarning, match="diverged"):
        chain_report(result.state.mutable_state, "x")
    assert np.all(np.isfinite(result.state.mutable_state["x$chains"]["buffer"].samples))  # never stored


@pytest.mark.slow
def test_svi_route_runs_sharded_on_two_devices(closed_form):
    # the one-device side is this module's fixture (same data, key and program); the subprocess runs only the
    # sharded fit, so the comparison costs one SVI run instead of two
    env = {**os.environ, "EBMPPL_CPU_DEVICES": "2", "JAX_PLATFORMS": "cpu"}
    env["XLA_FLAGS"] = SUITE_XLA_FLAGS  # no forced device count; the suite's compile flags
    run = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(next(ln for ln in run.stdout.splitlines() if ln.startswith("RESULT "))[len("RESULT "):])
    assert out["buffer_devices"] == 2
    x, _, m1, l1 = closed_form
    assert np.all(np.abs(z_scores(x, m1, l1)) < 4) and np.all(np.abs(out["z_two"]) < 4), out
    first_step_diff = max(np.abs(m1[:5] - np.asarray(out["first_means"])).max(),
                          np.abs(l1[:5] - np.asarray(out["first_log_scales"])).max())
    assert first_step_diff < 1e-5, out  # same draws, same arithmetic up to reduction order


def test_learned_site_energy_gives_log_z_when_asked(closed_form):
    # the value of log Z_θ is never computed in training; ask for it (AIS) and compare with the Gaussian's
    from ebmppl import log_partition
    from ebmppl.models import site_energy

    x, _, means, log_scales = closed_form
    theta = {"mean": jnp.asarray(means[-1]), "log_scale": jnp.asarray(log_scales[-1])}
    learned = site_energy(model, {"prior": theta}, "z", x)
    estimate = log_partition(learned, jax.random.key(3))
    exact = float(np.sum(learned.params["log_scale"]) + 1.5 * np.log(2 * np.pi))
    assert estimate.reliable
    assert abs(float(estimate.log_z) - exact) < 4 * float(estimate.stderr) + 1e-3, (estimate, exact)



def test_equinox_energy_is_learned_and_read_back():
    # an Equinox network's array part is callable: energy_module must store it, not call it
    from ebmppl.models import site_energy
    from ebmppl.nn import MLPEnergy

    e = Energy.from_equinox(MLPEnergy(2, (8,), key=jax.random.key(0)), event_shape=(2,))

    def m(x):
        with numpyro.plate("data", x.shape[0]):
            ebm_sample("x", energy_module("prior", e), obs=x, negative=prior_chains("mala", 2, num_mcmc_steps=3))

    x = 2.0 * jax.random.normal(jax.random.key(1), (64, 2))
    result = SVI(m, lambda x: None, optax.adam(1e-2), Trace_ELBO()).run(jax.random.key(0), 20, x, progress_bar=False)
    learned = site_energy(m, result.params, "x", x)
    assert type(learned.params).__name__ == "MLPEnergy"
    assert np.all(np.isfinite(result.losses))
    assert not np.allclose(learned.energy(x), e.energy(x))  # θ moved


# ---------------------------------------------------------------- what a stranger ran into (issue 17)
def _blob_model(x, subsample=None):
    with numpyro.plate("data", x.shape[0], subsample_size=subsample) as idx:
        ebm_sample("z", energy_module("prior", ENERGY), obs=x[idx], negative=prior_chains("mala", 3, num_mcmc_steps=3))


def test_more_than_one_particle_is_refused_not_run_away():
    x = data()[:64]
    # NumPyro drops mutable state with several particles (svi.run then fails on the state's structure, loudly);
    # a hand-written loop would go on with chains restarted from noise at every step: refused at the next step
    svi = SVI(_blob_model, lambda x: None, optax.adam(0.01), Trace_ELBO(num_particles=4))
    state = svi.init(jax.random.key(0), x)
    update = jax.jit(svi.update)
    with pytest.warns(UserWarning, match="mutable state is currently ignored"):
        state, _ = update(state, x)
    with pytest.raises(ValueError, match="num_particles=1"):
        update(state, x)


def test_site_energy_refuses_params_without_the_energy_and_handles_subsampling():
    from ebmppl.models import site_energy

    x = data()[:64]
    theta = {"mean": jnp.ones(3), "log_scale": jnp.zeros(3)}
    with pytest.raises(KeyError, match="initial parameters"):
        site_energy(_blob_model, theta, "z", x)  # the site's own dict instead of the model's params
    learned = site_energy(_blob_model, {"prior": theta}, "z", x, 16)  # a subsampling plate needs a key
    assert learned.params["mean"].tolist() == [1.0, 1.0, 1.0]


def test_observed_values_are_checked():
    bad = data()[:8].at[2, 0].set(jnp.nan)
    with pytest.raises(ValueError, match="non-finite"):
        numpyro.handlers.seed(_blob_model, 0)(bad)
    with pytest.raises(ValueError, match=r"event shape is \(3,\)"):
        numpyro.handlers.seed(_blob_model, 0)(jnp.zeros((8, 2)))
