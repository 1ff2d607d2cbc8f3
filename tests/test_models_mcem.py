"""Route (b), Monte-Carlo EM through ``ebmppl.fit``: posterior chains (x⁺) against prior chains (x⁻).

Closed form (the SVI route's model and data): θ's iterates averaged over the last half are within 4 Monte-Carlo
standard errors (ESS of the iterate trace) of the marginal MLE; the same on 2 forced CPU devices; bad input is
a clear error naming the argument.
"""

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
import numpyro.distributions as dist
import optax
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _mcem_closed_form import D, ENERGY, OBJECTIVE, SIGMA, data, model, run, tail_summary, truth  # noqa: E402

import ebmppl  # noqa: E402
from ebmppl.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from ebmppl.diagnostics import ess  # noqa: E402
from ebmppl.models import ebm_sample, energy_module  # noqa: E402
from ebmppl.models.mcem import PosteriorState, mcem, posterior_inference_data  # noqa: E402
from ebmppl.objectives import TrainState  # noqa: E402
from conftest import SUITE_XLA_FLAGS

pytestmark = pytest.mark.xla_optimized  # long-running programs: compiled with XLA's optimisations

SCRIPT = pathlib.Path(__file__).parent / "scripts" / "mcem_two_devices.py"
Z_LIMIT = 4.0  # |estimate - MLE| in Monte-Carlo standard errors


@pytest.fixture(scope="module")
def closed_form():
    x = data()
    result, trace = run(x, jax.random.key(2))
    return x, result, trace


def test_mcem_recovers_the_marginal_mle(closed_form):
    x, result, trace = closed_form
    mean, mcse = tail_summary(trace)
    mle = truth(x)
    z = (mean - mle) / mcse
    assert np.all(np.abs(z) < Z_LIMIT), (mean, mle, mcse, z)
    # the check has power: the answer of plain CD on x (scale² = var(x), the noise not removed) lies far outside
    naive = 0.5 * np.log(np.asarray(x, np.float64).var(0))
    assert np.all(np.abs(naive - mle[D:]) > Z_LIMIT * mcse[D:])
    assert bool(result.history["finite"].all())


def test_mcem_reports_both_chain_sets(closed_form):
    _, result, _ = closed_form
    h = result.history
    for name in ("positive_acceptance_rate", "positive_step_size", "acceptance_rate", "step_size", "cd_gap"):
        assert name in h and np.isfinite(h[name]).all(), name
    tail = slice(len(h["loss"]) // 2, None)
    # the posterior step adapts to the posterior (narrower than the prior): a stationary step means the mean
    # acceptance sits at the target (0.6), exactly up to the change of the log step over the tail
    log_step = np.log(h["positive_step_size"][tail])
    drift = (log_step[-1] - log_step[0]) / (0.05 * log_step.size)
    assert abs(np.mean(h["positive_acceptance_rate"][tail][:-1]) - 0.6 - drift) < 0.01
    assert not [m for _, m in result.health.warnings if "posterior chains" in m]
    assert isinstance(result.state.positive, PosteriorState)
    assert result.state.positive.chains.shape == (x_len := data().shape[0], D) and x_len == 500


def test_posterior_chains_as_arviz_match_the_exact_posterior(closed_form):
    x, result, _ = closed_form
    idata = posterior_inference_data(OBJECTIVE, result.state, jax.random.key(3), (x[:20], jnp.arange(20)),
                                     num_chains=2, num_samples=200, num_warmup=20)
    draws = np.asarray(idata.posterior["z"])
    assert draws.shape == (2, 200, 20, D) and idata.posterior["z"].dims[2] == "example"
    assert "acceptance_rate" in idata.sample_stats
    p = result.energy.params
    tau2, mu = np.exp(2 * np.asarray(p["log_scale"])), np.asarray(p["mean"])
    post_mean = (tau2 * np.asarray(x[:20]) + SIGMA**2 * mu) / (tau2 + SIGMA**2)
    post_sd = np.sqrt(tau2 * SIGMA**2 / (tau2 + SIGMA**2))
    u = ((draws - post_mean) / post_sd).reshape(2, 200, -1)  # standardised: N(0, 1) under the exact posterior
    total_ess = float(np.sum(ess(u)))
    assert abs(u.mean()) < Z_LIMIT / np.sqrt(total_ess)
    assert abs(u.var() - 1.0) < Z_LIMIT * np.sqrt(2.0 / total_ess)


@pytest.mark.slow
def test_mcem_sharded_on_two_devices_agrees_with_one(closed_form):
    # the one-device side is this module's fixture (devices=None, same key and data); the subprocess runs only the
    # two-device fit, so the comparison costs one fit instead of two
    env = {**os.environ, "EBMPPL_CPU_DEVICES": "2", "JAX_PLATFORMS": "cpu"}
    env["XLA_FLAGS"] = SUITE_XLA_FLAGS  # no forced device count; the suite's compile flags
    proc = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))[len("RESULT "):])
    _, one_result, one_trace = closed_form
    two = out["2"]
    assert bool(one_result.history["finite"].all()) and two["finite"]
    assert two["chains_devices"] == 2, two["chains_sharding"]  # the posterior chains did shard
    m1, s1 = tail_summary(one_trace)
    m2, s2 = (np.asarray(v) for v in (two["mean"], two["mcse"]))
    assert np.all(np.abs(m1 - m2) < Z_LIMIT * np.sqrt(s1**2 + s2**2)), (m1, m2)
    assert np.all(np.abs(m2 - np.asarray(out["truth"])) < Z_LIMIT * s2)


def test_short_run_chains_with_observations_of_another_shape():
    # observations of another shape than the latent (x = A z + noise, 5 from 3): plain array data, short-run chains
    a = jax.random.normal(jax.random.key(0), (5, D))

    def linear(x):
        prior = energy_module("prior", ENERGY)
        with numpyro.plate("data", x.shape[0]):
            z = ebm_sample("z", prior)
            numpyro.sample("x", dist.Normal(z @ a.T, SIGMA).to_event(1), obs=x)

    x = jax.random.normal(jax.random.key(1), (64, 5))
    objective = mcem(linear, ENERGY, optax.adam(1e-2), num_mcmc_steps=5)
    result = ebmppl.fit(ENERGY, jax.random.key(2), x, objective=objective, num_steps=10, batch_size=16,
                        progress_bar=False, health=False)
    assert bool(result.history["finite"].all()) and result.state.positive.chains.shape == (0, D)
    assert np.isfinite(result.history["positive_acceptance_rate"]).all()


def test_checkpoint_resume_is_bit_identical_and_old_states_load(tmp_path):
    x = data()[:64]
    objective = mcem(model, ENERGY, optax.adam(1e-2), num_data=64, num_mcmc_steps=3)
    kw = dict(objective=objective, batch_size=16, chunk_size=5, progress_bar=False, health=False)
    whole = ebmppl.fit(ENERGY, jax.random.key(0), (x, jnp.arange(64)), num_steps=20, **kw)
    ebmppl.fit(ENERGY, jax.random.key(0), (x, jnp.arange(64)), num_steps=10, checkpoint_dir=tmp_path, **kw)
    resumed = ebmppl.fit(ENERGY, jax.random.key(0), (x, jnp.arange(64)), num_steps=20, checkpoint_dir=tmp_path,
                         resume=True, **kw)
    for a, b in zip(jax.tree.leaves(whole.state.positive), jax.tree.leaves(resumed.state.positive), strict=True):
        assert np.array_equal(a, b)
    assert np.array_equal(whole.state.params["mean"], resumed.state.params["mean"])
    # a state written before TrainState had its `positive` field (five fields) loads into today's template
    old = whole.state[:5]
    path = save_checkpoint(tmp_path / "old.ebm", tuple(old), {"step": 20})
    template = TrainState(*old)
    state, _ = load_checkpoint(path, template)
    assert state.positive is None and np.array_equal(state.params["log_scale"], old[0]["log_scale"])


# ---------------------------------------------------------------- bad input
def _fit(objective, x=None, **kw):
    x = data()[:32] if x is None else x
    batch = (x, jnp.arange(x.shape[0])) if kw.pop("indices", True) else x
    return ebmppl.fit(ENERGY, jax.random.key(0), batch, objective=objective, num_steps=2, batch_size=8,
                      progress_bar=False, health=False, **kw)


@pytest.mark.parametrize("options, match", [
    ({"site": "w"}, r"site='w' is not a sample site of the model; its sample sites: \['x', 'z'\]"),
    ({"site": "x"}, r"site='x' is a .* site, not an energy site"),
    ({"param": "theta"}, r"param='theta' is not a numpyro.param site of the model"),
])
def test_unknown_or_wrong_sites_are_named(options, match):
    with pytest.raises(ValueError, match=match):
        _fit(mcem(model, ENERGY, optax.sgd(0.1), num_data=32, **options))


def test_model_mismatches_are_named():
    def two_latents(x):
        prior = energy_module("prior", ENERGY)
        scale = numpyro.sample("scale", dist.LogNormal(0.0, 1.0))
        with numpyro.plate("data", x.shape[0]):
            z = ebm_sample("z", prior)
            numpyro.sample("x", dist.Normal(z, scale).to_event(1), obs=x)

    with pytest.raises(ValueError, match=r"latent sites \['scale'\] besides site='z'"):
        _fit(mcem(two_latents, ENERGY, optax.sgd(0.1), num_data=32))

    def wrong_param(x):
        noise = numpyro.param("noise", 0.5)
        with numpyro.plate("data", x.shape[0]):
            z = ebm_sample("z", energy_module("prior", ENERGY))
            numpyro.sample("x", dist.Normal(z, noise).to_event(1), obs=x)

    with pytest.raises(ValueError, match=r"param='noise' does not hold the energy's parameters"):
        _fit(mcem(wrong_param, ENERGY, optax.sgd(0.1), num_data=32, param="noise"))
    with pytest.warns(UserWarning, match=r"other numpyro.param sites \['noise'\] stay at their initial values"):
        _fit(mcem(wrong_param, ENERGY, optax.sgd(0.1), num_data=32))

    other = ebmppl.Energy(lambda p, z: jnp.sum(z**2) * p["mean"].sum(), ENERGY.params, event_shape=(D,))
    with pytest.raises(ValueError, match=r"not the energy of site='z'"):
        _fit(mcem(model, other, optax.sgd(0.1), num_data=32))

    def global_site(x):
        prior = energy_module("prior", ENERGY)
        z = ebm_sample("z", prior)
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("x", dist.Normal(z, SIGMA).to_event(1), obs=x)

    with pytest.raises(ValueError, match=r"site='z' must have one draw per example, inside a plate"):
        _fit(mcem(global_site, ENERGY, optax.sgd(0.1), num_data=32))


def test_persistent_chains_need_indices():
    with pytest.raises(ValueError, match=r"num_data=32\) keeps one posterior chain per example"):
        _fit(mcem(model, ENERGY, optax.sgd(0.1), num_data=32), indices=False)
    with pytest.raises(ValueError, match=r"integers in \[0, num_data=16\)"):
        _fit(mcem(model, ENERGY, optax.sgd(0.1), num_data=16))


@pytest.mark.parametrize("options, error, match", [
    ({"num_mcmc_steps": 0}, ValueError, "num_mcmc_steps must be an int >= 1"),
    ({"num_data": 0}, ValueError, "num_data must be None"),
    ({"target_acceptance": 1.5}, ValueError, r"target_acceptance must be in \(0, 1\)"),
    ({"negative": "mala"}, TypeError, "negative must be ebmppl.models.prior_chains"),
    ({"site": ""}, TypeError, "site must be a site name"),
    ({"sampler_params": {"step_size": -1.0}}, ValueError, r"sampler_params\['step_size'\] must be > 0"),
])
def test_builder_options_are_checked(options, error, match):
    with pytest.raises(error, match=match):
        mcem(model, ENERGY, optax.sgd(0.1), **options)


def test_objectives_built_alike_are_equal():
    # one compiled step for equal objectives (fit reuses it)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt = optax.sgd(0.1)
        a = mcem(model, ENERGY, opt, num_data=8)
    assert a == mcem(model, ENERGY, opt, num_data=8) and hash(a) == hash(mcem(model, ENERGY, opt, num_data=8))


def test_health_warns_when_the_posterior_chains_stall():
    from ebmppl.health import TrainingHealth

    health = TrainingHealth(ENERGY, window=4, grace=0, emit=False)
    metrics = {"acceptance_rate": np.full(5, 0.6), "positive_acceptance_rate": np.full(5, 0.02)}
    health(5, None, metrics)
    assert health.records[-1]["positive_acceptance_rate"] == pytest.approx(0.02)
    assert any("posterior chains (positive phase) accept 0.02" in m and "Lower their step" in m
               for _, m in health.warnings)
    quiet = TrainingHealth(ENERGY, window=4, grace=0, emit=False)
    quiet(5, None, {"acceptance_rate": np.full(5, 0.6), "positive_acceptance_rate": np.full(5, 0.6)})
    assert not quiet.warnings
