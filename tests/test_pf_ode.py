"""The probability-flow ODE log-likelihood (issue 20): exact on an analytic noise-conditional family, its prior bias
as derived, Hutchinson unbiased, and PF-ODE against AIS on a trained 2-D energy.

Tolerances: ``3·SE`` of the per-example differences (data + Hutchinson noise), ``3·ode_error`` (the Richardson
estimate), plus the derived prior bias where it is not the quantity under test.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ebmppl
from ebmppl.logz.pf_ode import pf_ode_log_likelihood
from ebmppl.noise import NoiseLadder, noise_conditional
from ebmppl.targets import gaussian_mixture

pytestmark = pytest.mark.xla_optimized  # long-running programs: compiled with XLA's optimisations

WEIGHTS = np.array([0.3, 0.7])
MEANS = np.array([[-1.5, 0.5], [1.5, -0.5]])
SCALES = np.array([0.4, 0.7])


def _mixture_energy(p, x, sigma):
    """E(x, σ) = -log Σ_k w_k N(x; μ_k, (s_k² + σ²) I): the mixture smoothed by σ, normalised at every σ."""
    var = p["s"] ** 2 + sigma**2
    d = x.shape[0]
    logs = jnp.log(p["w"]) - 0.5 * jnp.sum((x - p["mu"]) ** 2, 1) / var - 0.5 * d * jnp.log(2 * jnp.pi * var)
    return -jax.nn.logsumexp(logs)


def _family(shift, sigma_max=100.0):
    params = {"w": jnp.asarray(WEIGHTS, jnp.float32), "mu": jnp.asarray(MEANS + shift, jnp.float32),
              "s": jnp.asarray(SCALES, jnp.float32)}
    energy = noise_conditional(_mixture_energy, params, (2,), NoiseLadder.geometric(sigma_max, 0.01, 10))
    target = gaussian_mixture(WEIGHTS, MEANS + shift, [s**2 * np.eye(2) for s in SCALES])
    return energy, target


def _differences(est, energy, x):
    d = np.asarray(est.values - (-energy.energy(x)), np.float64)  # log Z = 0 at every σ
    return d.mean(), d.std(ddof=1) / math.sqrt(d.size)


@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_pf_ode_matches_the_exact_mixture(trace):
    """(a) log p_σmin of the analytic family: per-example differences average to 0 within 3 SE + 3 ode_error +
    the prior bias (σ_max = 100: bias ≈ ‖μ‖²/(2σ_max²) < 1e-3)."""
    energy, target = _family(np.zeros(2))
    x = target.sample(jax.random.key(0), 400)  # 400 as below: one compiled program serves both tests
    est = pf_ode_log_likelihood(energy, jax.random.key(1), x, num_steps=32, trace=trace, num_probes=2)
    assert est.trace == trace and est.values.shape == (400,)
    gap, se = _differences(est, energy, x)
    assert abs(gap) <= 3 * se + 3 * est.ode_error + est.prior_bias, (gap, se, est)
    assert est.ode_error < 0.01 and est.prior_bias < 1e-3
    if trace == "exact":  # no probe noise: every example is exact up to the prior's O(‖μ‖/σ_max) per-example error
        assert np.max(np.abs(np.asarray(est.values + energy.energy(x)))) < 0.05


def test_pf_ode_prior_bias_is_the_derived_kl():
    """With σ_max = 10 and the mixture's mean at (3.5, -0.2), the N(0, σ_max²) prior biases the mean low by
    KL(p_σmax ‖ π) ≈ ‖μ‖²/(2σ_max²) ≈ 0.06: the measured gap equals -prior_bias within 3 SE."""
    energy, target = _family(np.array([3.0, 0.0]))  # the same ladder (one compiled program), integrated to σ = 10
    x = target.sample(jax.random.key(2), 400)
    est = pf_ode_log_likelihood(energy, jax.random.key(3), x, num_steps=32, sigma_max=10.0)
    gap, se = _differences(est, energy, x)
    assert est.prior_bias > 3 * se  # the bias is visible at this n
    assert abs(gap + est.prior_bias) <= 3 * se + 3 * est.ode_error, (gap, se, est)
    # a prior centred on the data's mean removes most of it
    centred = pf_ode_log_likelihood(energy, jax.random.key(3), x, num_steps=32, sigma_max=10.0,
                                    prior_mean=np.asarray(x.mean(0)))
    assert centred.prior_bias < 0.1 * est.prior_bias


def test_pf_ode_hutchinson_in_higher_dimension():
    """trace="auto" takes Hutchinson above 10 dimensions; on a smoothed 12-D Gaussian it is unbiased within 3 SE."""
    scale = jnp.linspace(0.5, 1.5, 12)
    energy = noise_conditional(lambda p, x, s: 0.5 * jnp.sum((x - 1.0) ** 2 / (p**2 + s**2))
                               + 0.5 * jnp.sum(jnp.log(2 * jnp.pi * (p**2 + s**2))), scale, (12,),
                               NoiseLadder.geometric(100.0, 0.01, 5))
    x = 1.0 + scale * jax.random.normal(jax.random.key(4), (200, 12))
    est = pf_ode_log_likelihood(energy, jax.random.key(5), x, num_steps=32)
    assert est.trace == "hutchinson" and est.num_probes == 1
    gap, se = _differences(est, energy, x)
    assert abs(gap) <= 3 * se + 3 * est.ode_error + est.prior_bias, (gap, se, est)


def test_pf_ode_refuses_what_it_cannot_do():
    energy, target = _family(np.zeros(2))
    x = target.sample(jax.random.key(0), 10)
    with pytest.raises(TypeError, match="NoiseConditionalEnergy"):
        pf_ode_log_likelihood(target.energy, jax.random.key(0), x)
    with pytest.raises(ValueError, match="trace"):
        pf_ode_log_likelihood(energy, jax.random.key(0), x, trace="approx")
    clean = noise_conditional(lambda p, x, s: 0.5 * jnp.sum(x**2) / (1 + s**2), None, (2,), (1.0, 0.1, 0.0))
    with pytest.raises(ValueError, match="clean σ = 0 level"):
        pf_ode_log_likelihood(clean, jax.random.key(0), x)
    with pytest.raises(ValueError, match="shape"):
        pf_ode_log_likelihood(energy, jax.random.key(0), jnp.zeros((4, 3)))
    with pytest.raises(TypeError, match="key second"):  # the ebmppl convention: (energy, key, x)
        pf_ode_log_likelihood(energy, x, jax.random.key(0))


# ------------------------------------------------------------------ (b) PF-ODE against AIS on a trained energy
@pytest.fixture(scope="module")
def trained_moons():
    """A noise-conditional MLP trained by multi-σ DSM (continuous σ) on two moons through ebmppl.fit (8,000 steps:
    the training length at which its σ-family became consistent, see the agreement test)."""
    import optax

    multiscale = pytest.importorskip("ebmppl.objectives.multiscale")
    from ebmppl.noise import noise_conditional_mlp

    moons = ebmppl.data.two_moons()
    data = moons.sample(jax.random.key(0), 4000)
    held_out = moons.sample(jax.random.key(1), 300)
    steps = 8000
    energy = noise_conditional_mlp(jax.random.key(2), (2,), NoiseLadder.geometric(4.0, 0.05, 10), hidden=(64, 64),
                                   confinement_scale=3.0)
    trainer = multiscale.multiscale_dsm(energy, optax.adam(optax.cosine_decay_schedule(3e-3, steps, 0.05)),
                                        continuous=True)
    result = ebmppl.fit(energy, jax.random.key(3), data, objective=trainer, num_steps=steps, batch_size=256,
                        progress_bar=False)
    trained = result.energy
    pf = pf_ode_log_likelihood(trained, jax.random.key(4), held_out, num_steps=32)
    log_z = ebmppl.log_partition(trained, jax.random.key(5), method="ais", data=data[:1000], num_chains=256,
                                 num_temperatures=300)
    ais = ebmppl.evaluation.held_out_log_likelihood(trained, held_out, log_z)
    paired = np.asarray(pf.values - (trained.logdensity(held_out) - log_z.log_z), np.float64)
    gap = float(paired.mean())
    # the gap's standard error: paired data differences (Hutchinson-free: exact trace in 2-D) and log Z's error
    se = math.hypot(paired.std(ddof=1) / math.sqrt(paired.size), log_z.stderr)
    return {"energy": trained, "pf": pf, "ais": ais, "log_z": log_z, "gap": gap, "se": se}


@pytest.mark.slow
def test_pf_ode_and_ais_estimates_are_each_sound_on_the_trained_energy(trained_moons):
    """The two sides of the comparison are trustworthy for what each measures: AIS's log Z of the data-level energy
    agrees with grid quadrature within 3 SE + the grid's tolerance (GRID_TOLERANCE); the PF-ODE's integration and
    prior errors are far below its statistical error."""
    t = trained_moons
    from ebmppl.logz.grid import GRID_TOLERANCE

    grid = ebmppl.evaluation.grid_log_partition(t["energy"], limits=(-3.0, 4.0, -3.0, 3.5), resolution=300)
    assert t["log_z"].reliable
    assert abs(t["log_z"].log_z - grid) <= 3 * t["log_z"].stderr + GRID_TOLERANCE
    assert t["pf"].ode_error + t["pf"].prior_bias < t["pf"].stderr
    # the flow's density is a normalised density: its mean held-out log-likelihood cannot beat -H(two moons)
    entropy, entropy_se = ebmppl.data.two_moons().entropy(jax.random.key(9), 2_000)
    assert t["pf"].mean <= -entropy + 3 * math.hypot(t["pf"].stderr, entropy_se)


@pytest.mark.slow
def test_pf_ode_and_ais_agree_on_a_trained_2d_energy(trained_moons):
    """PF-ODE and AIS log-likelihoods agree within their combined error bars (3 SE of the paired gap, plus the
    PF-ODE's 3·ode_error and its derived prior bias).

    They agree only for a consistent σ-family. Measured on this setup (issue 20 notes): after 2,000 steps the
    PF-ODE is 0.17 nats ABOVE AIS (4.6 paired SE; the data-level energy still leaves mass where the flow puts
    none); after 8,000 steps, the length used here, the gap is 0.016 ± 0.024. A failure here after a change to the
    network or the trainer is a finding about the trained model's consistency, with both estimators checked sound
    above; do not widen the tolerance."""
    t = trained_moons
    assert abs(t["gap"]) <= 3 * t["se"] + 3 * t["pf"].ode_error + t["pf"].prior_bias, (t["gap"], t["se"])
