"""Issue 14, findings 3, 4 and 12: chain health in ``sample`` and NumPyro models sampled by ebmppl.

Each test is a user path that went wrong in silence before: an energy that is NaN where
some chains start (finding 3), a NumPyro model whose default start left one MALA chain
frozen (finding 4), and a support whose bound depends on another site (finding 12).
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.distributions import constraints
from numpyro.infer.util import initialize_model

import ebmppl
from ebmppl import ChainHealthWarning, Energy, diagnostics
from ebmppl.numpyro import SupportWarning, check_support, model_energy


def sqrt_energy():
    # finite only where x0 <= 1 (NaN beyond, inf gradient at the edge)
    return Energy(lambda p, x: jnp.sqrt(1.0 - x[0]) + 0.5 * jnp.sum(x**2), event_shape=(2,))


# ------------------------------------------------------------------ finding 3
def test_nan_at_the_start_is_an_error_naming_init_and_the_chains():
    init = jnp.array([[0.0, 0.0], [1.5, 0.0], [0.5, 0.3], [2.0, 1.0]])
    with pytest.raises(ValueError, match=r"init: .*not finite.*chains 1, 3 of 4") as err:
        ebmppl.sample(sqrt_energy(), jax.random.key(0), sampler="nuts", num_chains=4, num_warmup=50,
                      num_samples=50, init=init, progress_bar=False)
    assert "Pass init=" in str(err.value)
    # the default start (uniform on [-2, 2]) puts some chains at x0 > 1: the same error, saying where it came from
    with pytest.raises(ValueError, match="init: .*default init"):
        ebmppl.sample(sqrt_energy(), jax.random.key(0), sampler="nuts", num_chains=4, num_warmup=50,
                      num_samples=50, progress_bar=False)


def test_a_healthy_start_on_the_same_energy_samples():
    init = jnp.array([[0.0, 0.0], [-1.0, 0.5], [0.5, -0.3], [0.2, 1.0]])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ChainHealthWarning)
        out = ebmppl.sample(sqrt_energy(), jax.random.key(1), sampler="nuts", num_chains=4, num_warmup=300,
                            num_samples=300, init=init, progress_bar=False)
    # trajectories that cross the hard edge at x0 = 1 are divergent (as in Stan) and may be reported;
    # no chain may be stalled, non-finite or restarted
    messages = " ".join(str(w.message) for w in caught if issubclass(w.category, ChainHealthWarning))
    assert not any(s in messages for s in ("accepted less", "non-finite", "stalled")), messages
    assert np.all(np.isfinite(out.positions)) and np.all(out.positions[..., 0] <= 1.0)
    assert out.health.unhealthy == [] and np.all(out.health.acceptance > 0.5)
    assert float(out.params["step_size"]) > 0.05  # not the collapsed 1e-31 of the frozen run
    assert np.all(diagnostics.rhat(out.positions) < 1.05)


# ------------------------------------------------------- stalled chains in warm-up
def quartic():
    return Energy(lambda p, x: 0.5 * jnp.sum(x**2) + 0.25 * jnp.sum(x**4), event_shape=(1,))


STUCK = jnp.array([[0.5], [-0.3], [0.1], [40.0]])  # chain 3: gradient ~ 64 000, MALA rejects every move


def test_a_stalled_chain_is_restarted_from_a_healthy_one():
    with warnings.catch_warnings():
        warnings.simplefilter("error", ChainHealthWarning)  # a bad start fixed early is not worth a warning
        out = ebmppl.sample(quartic(), jax.random.key(2), sampler="mala", num_chains=4, num_warmup=400,
                            num_samples=400, init=STUCK, progress_bar=False)
    first_checkpoint = int(np.flatnonzero(ebmppl.samplers.reinit_schedule(400))[0])
    assert out.health.restarted_at.tolist() == [-1, -1, -1, first_checkpoint]
    assert np.all(out.health.acceptance > 0.3)
    assert np.all(diagnostics.rhat(out.positions) < 1.05)


def test_a_stalled_chain_left_alone_is_named_in_a_warning():
    with pytest.warns(ChainHealthWarning, match=r"chain 3 accepted less than 1%"):
        out = ebmppl.sample(quartic(), jax.random.key(2), sampler="mala", num_chains=4, num_warmup=400,
                            num_samples=400, init=STUCK, reinit_stalled=False, progress_bar=False)
    assert out.health.unhealthy == [3]
    assert out.health.restarted_at.tolist() == [-1, -1, -1, -1]


# ------------------------------------------------------------------ finding 4
Y = 1.0 + 2.0 * jax.random.normal(jax.random.key(42), (30,))


def normal_model(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(5.0))
    numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


@pytest.fixture(scope="module")
def normal_me():
    return model_energy(normal_model, jax.random.key(0), Y)


def test_model_energy_with_mala_default_init_converges_and_shows_named_constrained_sites(normal_me):
    me = normal_me
    # one chain where the finding's chain started: log sigma = -2 (sigma 0.14 against a posterior near 2)
    init = jnp.array([[0.5, 0.5], [-1.0, 1.0], [1.0, 0.0], [0.0, -2.0]])
    for start in (None, init):
        out = ebmppl.sample(me, jax.random.key(1), sampler="mala", num_chains=4, num_warmup=500,
                            num_samples=500, init=start, progress_bar=False)
        assert np.all(diagnostics.rhat(out.positions) < 1.05), diagnostics.rhat(out.positions)
        assert out.health.unhealthy == []
    assert out.health.restarted_at[3] >= 0  # the log sigma = -2 chain was restarted
    idata = out.to_arviz()
    assert set(idata.posterior.data_vars) == {"mu", "sigma"}
    assert idata.posterior["sigma"].shape == (4, 500)
    assert float(idata.posterior["sigma"].min()) > 0.0
    # the posterior of mu is close to the sample mean (flat-ish prior), within Monte-Carlo error + prior pull
    mu = idata.posterior["mu"].values
    se = float(diagnostics.mcse(mu[..., None])[0])
    assert abs(mu.mean() - float(Y.mean())) < 4 * se + 0.02


def test_sample_of_the_model_energys_energy_starts_from_numpyros_init(normal_me):
    me = normal_me
    # the same compiled programs as sample(me, ...): the Energy itself carries the model
    out = ebmppl.sample(me.energy, jax.random.key(3), sampler="mala", num_chains=4, num_warmup=500,
                        num_samples=500, progress_bar=False)
    assert set(out.to_arviz().posterior.data_vars) == {"mu", "sigma"}
    assert me.init_positions(jax.random.key(0), 3).shape == (3, 2)


# ----------------------------------------------------------------- finding 12
OBS = jnp.array([0.3, 0.85])


def dependent_bound(obs):
    # garch11's beta1 ~ flat on (0, 1 - alpha1), shrunk to two sites
    a = numpyro.sample("a", dist.ImproperUniform(constraints.unit_interval, (), ()))
    b = numpyro.sample("b", dist.ImproperUniform(constraints.interval(0.0, 1.0 - a), (), ()))
    numpyro.sample("obs_a", dist.Normal(a, 0.3), obs=obs[0])
    numpyro.sample("obs_ab", dist.Normal(a + b, 0.1), obs=obs[1])


def unit_reparametrised(obs):
    a = numpyro.sample("a", dist.ImproperUniform(constraints.unit_interval, (), ()))
    u = numpyro.sample("b_unit", dist.ImproperUniform(constraints.unit_interval, (), ()))
    b = numpyro.deterministic("b", (1.0 - a) * u)
    numpyro.factor("b_jacobian", jnp.log1p(-a))
    numpyro.sample("obs_a", dist.Normal(a, 0.3), obs=obs[0])
    numpyro.sample("obs_ab", dist.Normal(a + b, 0.1), obs=obs[1])


def grid_mean_of_b():
    # the posterior on the triangle {a, b > 0, a + b < 1}: flat prior times the two likelihoods
    g = (np.arange(2000) + 0.5) / 2000
    a, b = np.meshgrid(g, g, indexing="ij")
    logp = -0.5 * ((a - 0.3) / 0.3) ** 2 - 0.5 * ((a + b - 0.85) / 0.1) ** 2
    w = np.where(a + b < 1.0, np.exp(logp - logp.max()), 0.0)
    return float((w * b).sum() / w.sum())


def test_dependent_bound_draws_stay_in_support_and_match_the_reparametrised_model():
    truth = grid_mean_of_b()
    kw = dict(sampler="mala", num_chains=4, num_warmup=500, num_samples=2000, progress_bar=False)
    me = model_energy(dependent_bound, jax.random.key(0), OBS)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SupportWarning)
        out = ebmppl.sample(me, jax.random.key(1), **kw)
        post = out.to_arviz().posterior
    a, b = post["a"].values, post["b"].values
    assert np.all((b > 0) & (b < 1 - a))  # before: most draws of b lay above 1 - a
    assert check_support(dependent_bound, {"a": a, "b": b}, OBS) == {"a": 0.0, "b": 0.0}

    ref = ebmppl.sample(model_energy(unit_reparametrised, jax.random.key(0), OBS), jax.random.key(2), **kw)
    b_ref = ref.to_arviz().posterior["b"].values
    for draws in (b, b_ref):
        se = float(diagnostics.mcse(draws[..., None])[0])
        assert abs(draws.mean() - truth) < 4 * se, (draws.mean(), truth, se)

    # NumPyro's own post-processing (what its NUTS returns) maps b back with the initial bound:
    # check_support names the site and the reparametrisation that works
    numpyro_post = initialize_model(jax.random.key(0), dependent_bound, model_args=(OBS,)).postprocess_fn
    theirs = jax.vmap(lambda x: numpyro_post(me.unravel(x)))(out.positions.reshape(-1, 2))
    with pytest.warns(SupportWarning, match=r"site 'b': .*% of the draws lie outside.*b_unit.*numpyro.factor"):
        fractions = check_support(dependent_bound, theirs, OBS)
    assert fractions["a"] == 0.0 and fractions["b"] > 0.1


def test_divergent_transitions_are_reported_not_only_stored():
    # a docs-only trial: a centred hierarchical model had 174 NUTS divergences and a biased scale, in silence
    funnel = ebmppl.targets.neals_funnel(3)
    with pytest.warns(ChainHealthWarning, match=r"divergent transitions after warm-up"):
        out = ebmppl.sample(funnel.energy, jax.random.key(0), sampler="nuts", num_chains=4, num_warmup=300,
                            num_samples=300, progress_bar=False)
    assert int(np.asarray(out.stats.is_divergent).sum()) > 0
