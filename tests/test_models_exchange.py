"""The exchange algorithm (``ebmppl.models.exchange.Exchange``) and exact draws of a finite-state EnergyDistribution.

The reference is exact: an Ising model on a 3×3 grid has 512 states, so its
``Z(β)`` and the posterior of β on a fine grid come from enumeration.
Tolerances are Monte-Carlo errors from ArviZ's ESS-based MCSE.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC

from ebmppl import Energy, diagnostics
from ebmppl.models.exchange import ApproximateExchangeWarning, Exchange
from ebmppl.numpyro import EnergyDistribution

pytestmark = pytest.mark.xla_optimized  # long-running programs: compiled with XLA's optimisations

L = 3
N_SPINS = L * L
EDGES = jnp.array([(i, i + 1) for i in range(N_SPINS) if i % L < L - 1] + [(i, i + L) for i in range(N_SPINS - L)])
SPINS = 2.0 * ((jnp.arange(2**N_SPINS)[:, None] >> jnp.arange(N_SPINS)) & 1) - 1.0  # all 512 states
NUM_DATA = 30
TRUE_BETA = 0.4


def coupling(x):
    """Σ_{i~j} x_i x_j over the grid's 12 edges (batched)."""
    return jnp.sum(x[..., EDGES[:, 0]] * x[..., EDGES[:, 1]], axis=-1)


ISING = Energy(lambda beta, x: -beta * coupling(x), jnp.array(TRUE_BETA), event_shape=(N_SPINS,))
DATA = EnergyDistribution(ISING, states=SPINS).sample(jax.random.key(0), (NUM_DATA,))


def ising_model(x):
    beta = numpyro.sample("beta", dist.Normal(0.0, 1.0))
    numpyro.sample("x", EnergyDistribution(ISING.with_params(beta), states=SPINS), obs=x)


def exact_posterior(x):
    """Mean and sd of β | x by quadrature: log p = log N(β; 0, 1) + β Σ_n S(x_n) - N log Z(β), Z by enumeration."""
    grid = np.linspace(-3.0, 3.0, 12001)
    log_z = np.asarray(jax.vmap(lambda b: jax.nn.logsumexp(b * coupling(SPINS)))(jnp.asarray(grid)), np.float64)
    logp = -0.5 * grid**2 + grid * float(coupling(x).sum()) - x.shape[0] * log_z
    w = np.exp(logp - logp.max())
    w /= np.trapezoid(w, grid)
    mean = np.trapezoid(w * grid, grid)
    return mean, np.sqrt(np.trapezoid(w * (grid - mean) ** 2, grid))


def test_finite_state_distribution_is_exact():
    d = EnergyDistribution(ISING, states=SPINS)
    logits = -ISING.energy(SPINS)
    assert np.isclose(float(d.log_partition()), float(jax.nn.logsumexp(logits)), rtol=1e-6)
    p = np.asarray(jax.nn.softmax(logits), np.float64)
    s = np.asarray(coupling(SPINS), np.float64)
    draws = d.sample(jax.random.key(3), (20000,))
    assert draws.shape == (20000, N_SPINS)
    assert bool(d.support(draws).all()) and not bool(d.support(jnp.zeros(N_SPINS)))
    mean, sd = (p * s).sum(), np.sqrt((p * (s - (p * s).sum()) ** 2).sum())
    assert abs(float(coupling(draws).mean()) - mean) < 4 * sd / np.sqrt(20000)
    # the all-up state (most likely at β > 0): its frequency within 4 binomial s.e.
    top = np.asarray(jnp.all(draws == 1.0, axis=-1)).mean()
    assert abs(top - p[-1]) < 4 * np.sqrt(p[-1] * (1 - p[-1]) / 20000)
    assert d.log_prob(SPINS).shape == (2**N_SPINS,)  # still unnormalised -E/T
    assert np.allclose(d.log_prob(SPINS), logits)


def test_exchange_matches_the_enumerated_posterior():
    mean, sd = exact_posterior(DATA)
    mcmc = MCMC(Exchange(ising_model), num_warmup=600, num_samples=2500, num_chains=4, chain_method="vectorized",
                progress_bar=False)
    mcmc.run(jax.random.key(1), DATA)
    beta = np.asarray(mcmc.get_samples(group_by_chain=True)["beta"])[..., None]
    assert beta.shape == (4, 2500, 1)
    assert float(diagnostics.rhat(beta).max()) < 1.02
    ess = float(diagnostics.ess(beta)[0])
    assert ess > 300
    mcse_mean, mcse_sd = float(diagnostics.mcse(beta)[0]), float(diagnostics.mcse(beta, method="sd")[0])
    assert abs(beta.mean() - mean) < 4 * mcse_mean, (beta.mean(), mean, mcse_mean)
    assert abs(beta.std() - sd) < 4 * mcse_sd, (beta.std(), sd, mcse_sd)
    # diagnostics: acceptance per draw, in NumPyro's extra fields and in ArviZ's sample_stats
    accept = np.asarray(mcmc.get_extra_fields()["accept_prob"])
    assert 0.15 < accept.mean() < 0.6
    idata = diagnostics.from_numpyro(mcmc)
    assert idata.posterior["beta"].shape == (4, 2500)
    assert np.isclose(float(idata.sample_stats["acceptance_rate"].mean()), accept.mean())
    assert "log_likelihood" not in idata.groups()  # the unnormalised f_θ(x) is not a likelihood


def test_plate_sequential_and_single_chain_agree_with_the_plain_model():
    def plated(x):
        beta = numpyro.sample("beta", dist.Normal(0.0, 1.0))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("x", EnergyDistribution(ISING.with_params(beta), states=SPINS), obs=x)

    runs = {}
    for name, model in (("plain", ising_model), ("plate", plated)):
        mcmc = MCMC(Exchange(model), num_warmup=50, num_samples=100, num_chains=2, chain_method="sequential",
                    progress_bar=False)
        mcmc.run(jax.random.key(5), DATA)
        runs[name] = np.asarray(mcmc.get_samples(group_by_chain=True)["beta"])
    assert runs["plain"].shape == (2, 100)
    np.testing.assert_allclose(runs["plain"], runs["plate"], rtol=1e-5)
    one = MCMC(Exchange(ising_model, step_size=0.05, adapt_mass_matrix=False), num_warmup=50, num_samples=50,
               progress_bar=False)
    one.run(jax.random.key(6), DATA)
    assert one.get_samples()["beta"].shape == (50,) and np.isfinite(one.get_samples()["beta"]).all()


GAUSS = Energy(lambda lam, x: 0.5 * lam * jnp.sum(x**2), jnp.array(1.0), event_shape=(1,))
A, B = 2.0, 1.0
GAUSS_DATA = jax.random.normal(jax.random.key(0), (20, 1)) / jnp.sqrt(2.0)  # λ = 2


def gauss_model(x):
    lam = numpyro.sample("lam", dist.Gamma(A, B))
    numpyro.sample("x", EnergyDistribution(GAUSS.with_params(lam)), obs=x)


def run_gauss(num_mcmc_steps, step_size=0.2):
    kernel = Exchange(gauss_model, auxiliary="mala", auxiliary_params={"step_size": step_size},
                      num_mcmc_steps=num_mcmc_steps)
    mcmc = MCMC(kernel, num_warmup=400, num_samples=1500, num_chains=4, chain_method="vectorized",
                progress_bar=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mcmc.run(jax.random.key(1), GAUSS_DATA)
    assert sum(issubclass(w.category, ApproximateExchangeWarning) for w in caught) == 1
    return np.asarray(mcmc.get_samples(group_by_chain=True)["lam"])[..., None]


def test_approximate_auxiliary_draws_warn_and_come_close_to_the_conjugate_posterior():
    # x_n ~ N(0, 1/λ) written as the energy λx²/2 (Z unknown to the kernel), λ ~ Gamma(2, 1):
    # the posterior is Gamma(2 + N/2, 1 + Σx²/2). Auxiliary draws: 50 MALA steps from the data (approximate).
    # Tolerance: 4 MCSE plus an allowance of 0.1 posterior sd for the bias of the approximate draws.
    post = dist.Gamma(A + GAUSS_DATA.shape[0] / 2, B + 0.5 * float(jnp.sum(GAUSS_DATA**2)))
    mean, sd = float(post.mean), float(jnp.sqrt(post.variance))
    lam = run_gauss(50)
    mcse_mean, mcse_sd = float(diagnostics.mcse(lam)[0]), float(diagnostics.mcse(lam, method="sd")[0])
    assert abs(lam.mean() - mean) < 4 * mcse_mean + 0.1 * sd, (lam.mean(), mean, mcse_mean)
    assert abs(lam.std() - sd) < 4 * mcse_sd + 0.1 * sd, (lam.std(), sd, mcse_sd)
    # auxiliary chains that barely move (one small step) leave y ≈ x: the f(y) terms cancel the likelihood and
    # the chain returns to the prior Gamma(2, 1) (sd 1.4, three times the posterior's)
    short = run_gauss(1, step_size=0.01)
    assert short.std() > 2 * sd, (short.std(), sd)


def test_clear_errors():
    def no_ebm(x):
        mu = numpyro.sample("mu", dist.Normal())
        numpyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    def latent_ebm():
        beta = numpyro.sample("beta", dist.Normal())
        numpyro.sample("x", EnergyDistribution(ISING.with_params(beta)))

    def scaled(x):
        beta = numpyro.sample("beta", dist.Normal())
        with numpyro.handlers.scale(scale=2.0):
            numpyro.sample("x", EnergyDistribution(ISING.with_params(beta), states=SPINS), obs=x)

    key = jax.random.key(0)
    with pytest.raises(ValueError, match="no observed EBM site"):
        Exchange(no_ebm).init(key, 10, model_args=(jnp.zeros(3),))
    with pytest.raises(ValueError, match="not observed"):
        Exchange(latent_ebm).init(key, 10)
    with pytest.raises(ValueError, match="is scaled"):
        Exchange(scaled).init(key, 10, model_args=(DATA,))
    with pytest.raises(ValueError, match=r"no exact sampler .* Pass auxiliary="):
        Exchange(gauss_model).init(key, 10, model_args=(GAUSS_DATA,))
    with pytest.raises(ValueError, match="auxiliary is None"):
        Exchange(gauss_model, auxiliary_params={"step_size": 0.1})
    with pytest.raises(ValueError, match="num_mcmc_steps"):
        Exchange(gauss_model, auxiliary="mala", num_mcmc_steps=0)
    with pytest.raises(ValueError, match="step_size"):
        Exchange(gauss_model, auxiliary="mala", auxiliary_params={"step_size": -1.0}).init(
            key, 10, model_args=(GAUSS_DATA,))
    with pytest.raises(ValueError, match="states has shape"):
        EnergyDistribution(ISING, states=jnp.zeros((4, 3)))
    with pytest.raises(NotImplementedError, match="log Z"):
        EnergyDistribution(GAUSS).log_partition()


def test_observed_values_outside_the_states_are_refused():
    # a stranger's slip: 0/1 data for a ±1 state set ran and returned a posterior for data the model cannot produce
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    import pytest
    from numpyro.infer import MCMC

    from ebmppl import Energy
    from ebmppl.models import Exchange
    from ebmppl.numpyro import EnergyDistribution

    spins = 2.0 * ((jnp.arange(2**6)[:, None] >> jnp.arange(6)) & 1) - 1.0
    ring = Energy(lambda b, x: -b * jnp.sum(x * jnp.roll(x, 1)), jnp.array(0.3), event_shape=(6,))
    x01 = (EnergyDistribution(ring, states=spins).sample(jax.random.key(0), (20,)) + 1) / 2

    def model(x):
        b = numpyro.sample("b", dist.Normal(0, 1))
        numpyro.sample("x", EnergyDistribution(ring.with_params(b), states=spins), obs=x)

    with pytest.raises(ValueError, match="not among the 64 states"):
        MCMC(Exchange(model), num_warmup=5, num_samples=5, progress_bar=False).run(jax.random.key(1), x01)
