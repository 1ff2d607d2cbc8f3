"""Noise ladders, noise-conditional energies and the annealed samplers (ebmppl.noise, ebmppl.samplers.annealed).

The samplers are held to densities whose σ-smoothed form is closed form at every level: a Gaussian
``N(μ, s²)`` smoothed is ``N(μ, s² + σ²)``, and on it every update of annealed Langevin and of the
reverse-diffusion predictor is linear, so the mean and variance the finite run reaches (transient and
discretisation bias included) follow from an exact recursion; the samples must match it within their
standard errors. A two-mode mixture checks the mode weights against the exact weight.
"""

import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

import ebmppl
from ebmppl.checkpoint import CheckpointError
from ebmppl.energy import SamplerSettings
from ebmppl.noise import NoiseConditionalEnergy, NoiseLadder, noise_conditional, noise_conditional_mlp
from ebmppl.samplers.annealed import AnnealedSamples, annealed_langevin, predictor_corrector

_energy_at = jax.jit(lambda e, x, s: e.noise_energy(x, s))  # one compiled function per network, any σ

Z = 4.0  # tolerance in standard errors: a fixed key, and a false alarm at 4 SE is ~1e-4 per check

MU, S = np.array([1.0, -0.5]), 0.5  # the Gaussian family N(μ, s²) in 2-D
GAUSS_LADDER = NoiseLadder.geometric(4.0, 0.05, 10)


def _gauss_fn(p, x, s):
    return 0.5 * jnp.sum((x - p["mu"]) ** 2) / (p["s"] ** 2 + s**2)


W, M, SM = 0.3, 2.0, 0.3  # the mixture W N(-M, SM²) + (1 - W) N(M, SM²) in 1-D
MIX_LADDER = NoiseLadder.geometric(6.0, 0.05, 10)


def _mix_fn(p, x, s):
    sd = jnp.sqrt(SM**2 + s**2)
    return -jax.nn.logsumexp(jnp.log(jnp.array([W, 1 - W])) + norm.logpdf(x[0], jnp.array([-M, M]), sd))


@pytest.fixture(scope="module")
def gauss():
    return noise_conditional(_gauss_fn, {"mu": jnp.asarray(MU, jnp.float32), "s": jnp.float32(S)}, (2,), GAUSS_LADDER)


@pytest.fixture(scope="module")
def mixture():
    return noise_conditional(_mix_fn, None, (1,), MIX_LADDER)


# --------------------------------------------------------------------------- ladders
def test_ladder_geometric_and_validation():
    ladder = NoiseLadder.geometric(10.0, 0.01, 4)
    assert ladder.sigmas == (10.0, 1.0, 0.1, 0.01)
    assert (ladder.sigma_max, ladder.sigma_min, ladder.num_levels) == (10.0, 0.01, 4)
    np.testing.assert_allclose(np.diff(np.log(ladder.sigmas)), math.log(0.1), rtol=1e-9)
    clean = NoiseLadder.geometric(1.0, 0.0, 5)
    assert clean.sigma_min == 0.0 and clean.sigmas[-2] == pytest.approx(0.01)
    assert hash(ladder) == hash(NoiseLadder.geometric(10.0, 0.01, 4)) and ladder == NoiseLadder((10.0, 1.0, 0.1, 0.01))
    with pytest.raises(ValueError, match="strictly descending"):
        NoiseLadder((0.1, 1.0))
    with pytest.raises(ValueError, match="strictly descending"):
        NoiseLadder((1.0, 1.0))
    with pytest.raises(ValueError, match=">= 0"):
        NoiseLadder((1.0, -0.1))
    with pytest.raises(ValueError, match="at least one"):
        NoiseLadder(())
    with pytest.raises(ValueError, match="num_levels"):
        NoiseLadder.geometric(1.0, 0.1, 0)
    with pytest.raises(ValueError, match="sigma_min"):
        NoiseLadder.geometric(1.0, 2.0, 3)
    with pytest.raises(ValueError, match="sigma_max"):
        NoiseLadder.geometric(-1.0, 0.1, 3)


# --------------------------------------------------------------------------- the energy
def test_noise_conditional_energy_levels(gauss):
    x = jax.random.normal(jax.random.key(0), (3, 4, 2))
    mu = jnp.asarray(MU, jnp.float32)
    for sigma in (0.05, 0.7, 4.0):
        v = S**2 + sigma**2
        np.testing.assert_allclose(gauss.noise_energy(x, sigma), 0.5 * jnp.sum((x - mu) ** 2, -1) / v, rtol=1e-5)
        np.testing.assert_allclose(gauss.noise_score(x, sigma), -(x - mu) / v, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(gauss.at_noise(sigma).energy(x), gauss.noise_energy(x, sigma), rtol=1e-6)
    # as an Energy it is the data level σ_min; one σ per example
    np.testing.assert_allclose(gauss.energy(x), gauss.noise_energy(x, GAUSS_LADDER.sigma_min), rtol=1e-6)
    per = jnp.broadcast_to(jnp.array([4.0, 0.05, 0.7, 0.05]), (3, 4))
    np.testing.assert_allclose(gauss.noise_energy(x, per),
                               0.5 * jnp.sum((x - mu) ** 2, -1) / (S**2 + per**2), rtol=1e-5)
    # the temperature divides the score, as for every Energy
    np.testing.assert_allclose(gauss.with_temperature(2.0).noise_score(x, 0.7), gauss.noise_score(x, 0.7) / 2,
                               rtol=1e-6)
    with pytest.raises(ValueError, match="one sigma per example"):
        gauss.noise_energy(x, jnp.ones(3))
    with pytest.raises(ValueError, match="trailing axes"):
        gauss.noise_score(jnp.ones((3, 5)), 1.0)


def test_updates_keep_type_ladder_and_function(gauss):
    settings = SamplerSettings("mala", {"step_size": 0.1}, 5)
    for e in (gauss.with_params({"mu": jnp.zeros(2), "s": jnp.float32(1.0)}), gauss.with_temperature(0.5),
              gauss.with_sampler_settings(settings)):
        assert isinstance(e, NoiseConditionalEnergy)
        assert e.ladder == gauss.ladder and e.noise_energy_fn is gauss.noise_energy_fn
    # a pytree: jit and grad over its parameters, one compiled function for new θ
    grad = jax.grad(lambda p: gauss.with_params(p).noise_energy(jnp.ones((2, 2)), 0.3).sum())(gauss.params)
    assert grad["mu"].shape == (2,)
    f = jax.jit(lambda e, x: e.noise_score(x, jnp.float32(0.3)))
    np.testing.assert_allclose(f(gauss, jnp.ones((2, 2))), gauss.noise_score(jnp.ones((2, 2)), 0.3), rtol=1e-6)


def test_data_level_works_with_every_energy_tool(gauss):
    # log Z of the σ_min level on the grid is the Gaussian's: log(2π (s² + σ_min²))
    est = ebmppl.log_partition(gauss, jax.random.key(0), method="grid", limits=(-4.0, 6.0, -5.5, 4.5))
    assert est.log_z == pytest.approx(math.log(2 * math.pi * (S**2 + GAUSS_LADDER.sigma_min**2)), abs=0.01)


def test_construction_errors():
    with pytest.raises(TypeError, match=r"\(params, x, sigma\)"):
        noise_conditional(lambda p, x: jnp.sum(x**2), None, (1,), (1.0, 0.1))
    with pytest.raises(TypeError, match="NoiseLadder"):
        noise_conditional(_mix_fn, None, (1,), "geometric")
    with pytest.raises(ValueError, match="not finite"):  # at σ_max = 1: log(0)
        noise_conditional(lambda p, x, s: jnp.sum(x**2) - jnp.log(1.0 - s), None, (1,), (1.0, 0.1))
    with pytest.raises(ValueError, match="scale_by_sigma=False"):
        noise_conditional_mlp(jax.random.key(0), (2,), (1.0, 0.0), hidden=(8,))
    with pytest.raises(ValueError, match="hidden"):
        noise_conditional_mlp(jax.random.key(0), (2,), (1.0, 0.1), hidden=())
    with pytest.warns(DeprecationWarning, match="confinement_scale"):
        e = noise_conditional_mlp(jax.random.key(0), (2,), (1.0, 0.1), hidden=(8,), base_scale=2.0)
    assert e.noise_energy_fn.static.confinement_scale == 2.0


def test_mlp_levels_and_confinement():
    ladder = NoiseLadder.geometric(2.0, 0.05, 5)
    e = noise_conditional_mlp(jax.random.key(0), (2,), ladder, hidden=(16, 16), confinement_scale=3.0,
                              confinement_center=(1.0, 0.0))
    free = noise_conditional_mlp(jax.random.key(0), (2,), ladder, hidden=(16, 16))
    x = jnp.array([[4.0, 0.0]])
    for sigma in ladder.sigmas:  # the base term is N(c, s²) smoothed to the level: ‖x - c‖² / (2 (s² + σ²))
        assert float(_energy_at(e, x, sigma)[0] - _energy_at(free, x, sigma)[0]) == pytest.approx(
            4.5 / (9 + sigma**2), rel=1e-4)
    # scale_by_sigma: E = f(x, σ)/σ, so σ E(x, σ) is the network's output (finite and O(1) at every level)
    out = jnp.stack([s * _energy_at(free, x, s) for s in ladder.sigmas])
    assert bool(jnp.all(jnp.isfinite(out))) and float(jnp.abs(out).max()) < 10
    drl = noise_conditional_mlp(jax.random.key(0), (2,), NoiseLadder.geometric(1.0, 0.0, 4), hidden=(16,),
                                scale_by_sigma=False)
    assert bool(jnp.isfinite(drl.energy(x)).all()) and bool(jnp.isfinite(drl.noise_score(x, 0.0)).all())


# --------------------------------------------------------------------------- save / load
def test_save_load_round_trip(tmp_path: pathlib.Path):
    x = jax.random.normal(jax.random.key(3), (6, 2))
    ladder = NoiseLadder.geometric(2.0, 0.05, 5)
    e = noise_conditional_mlp(jax.random.key(0), (2,), ladder, hidden=(16, 16), confinement_scale=3.0,
                              num_frequencies=2).with_temperature(1.5)
    loaded = ebmppl.load(ebmppl.save(tmp_path / "ncsn.ebm", e))
    assert isinstance(loaded, NoiseConditionalEnergy) and loaded.ladder == ladder
    assert loaded.temperature == 1.5
    for sigma in (0.05, 0.3, 2.0):
        np.testing.assert_array_equal(_energy_at(loaded, x, sigma), _energy_at(e, x, sigma))
    drl = noise_conditional_mlp(jax.random.key(1), (2,), (1.0, 0.3, 0.0), hidden=(8,), scale_by_sigma=False)
    loaded = ebmppl.load(ebmppl.save(tmp_path / "drl.ebm", drl))
    np.testing.assert_array_equal(loaded.energy(x), drl.energy(x))
    level = ebmppl.load(ebmppl.save(tmp_path / "level.ebm", e.at_noise(0.3)))  # one level: a plain Energy
    assert type(level) is ebmppl.Energy
    np.testing.assert_allclose(level.energy(x), e.at_noise(0.3).energy(x), rtol=1e-6)
    # your own function: parameters only, loaded with like=
    own = noise_conditional(_gauss_fn, {"mu": jnp.ones(2), "s": jnp.float32(2.0)}, (2,), ladder)
    path = ebmppl.save(tmp_path / "own.ebm", own)
    with pytest.raises(CheckpointError, match="like="):
        ebmppl.load(path)
    back = ebmppl.load(path, like=noise_conditional(_gauss_fn, {"mu": jnp.zeros(2), "s": jnp.float32(1.0)}, (2,),
                                                    ladder))
    assert isinstance(back, NoiseConditionalEnergy) and float(back.params["s"]) == 2.0


# --------------------------------------------------------------------------- annealed samplers, exact recursions
def _langevin_recursion(m, v, ladder, eps, steps):
    """Mean and per-coordinate variance of annealed ULA on the smoothed Gaussians N(μ, (s² + σ_i²) I)."""
    for sigma in ladder.sigmas:
        alpha, var = eps * sigma**2 / ladder.sigma_min**2, S**2 + sigma**2
        a = 1 - alpha / (2 * var)
        for _ in range(steps):
            m, v = a * m + (1 - a) * MU, a * a * v + alpha
    return m, v


def _check_moments(x, m, v, what):
    n = x.shape[0]
    mean, var = x.mean(0), x.var(0, ddof=1)
    se_mean, se_var = np.sqrt(v / n), v * math.sqrt(2 / (n - 1))
    assert np.all(np.abs(mean - m) < Z * se_mean), (what, mean, m, se_mean)
    assert np.all(np.abs(var - v) < Z * se_var), (what, var, v, se_var)


def test_annealed_langevin_gaussian_exact(gauss):
    n, steps = 4000, 30
    eps = 0.05 * GAUSS_LADDER.sigma_min**2
    out = annealed_langevin(gauss, jax.random.key(0), n, steps_per_level=steps, denoise=False, progress_bar=False)
    assert isinstance(out, AnnealedSamples) and out.per_level.shape == (10, n, 2)
    # the default start N(0, σ_max² I), then the exact recursion level by level
    m, v = _langevin_recursion(np.zeros(2), GAUSS_LADDER.sigma_max**2, GAUSS_LADDER, eps, steps)
    _check_moments(np.asarray(out.samples, np.float64), m, v, "annealed Langevin")
    np.testing.assert_array_equal(out.per_level[-1], out.samples)
    # Tweedie's step on the same draws: μ + (x - μ) s² / (s² + σ_L²), exactly
    den = annealed_langevin(gauss, jax.random.key(0), n, steps_per_level=steps, progress_bar=False)
    shrink = S**2 / (S**2 + GAUSS_LADDER.sigma_min**2)
    np.testing.assert_allclose(den.samples, MU + (out.samples - MU) * shrink, atol=2e-5)


def test_predictor_gaussian_exact(gauss):
    # the reverse-diffusion predictor alone is linear:
    # x ← x - Δ (x - μ)/(s² + σ_i²) + √Δ z with Δ = σ_i² - σ_{i+1}²
    n = 4000
    out = predictor_corrector(gauss, jax.random.key(1), n, corrector_steps=0, denoise=False, progress_bar=False)
    m, v = np.zeros(2), GAUSS_LADDER.sigma_max**2
    sig = GAUSS_LADDER.sigmas
    for s_i, s_next in zip(sig[:-1], sig[1:], strict=True):
        delta = s_i**2 - s_next**2
        a = 1 - delta / (S**2 + s_i**2)
        m, v = a * m + (1 - a) * MU, a * a * v + delta
    _check_moments(np.asarray(out.samples, np.float64), m, v, "predictor")


def test_predictor_corrector_gaussian(gauss):
    # with the corrector the step follows the batch's mean norms; to O(1/n) it is ε = 2 r² V² / v on N(μ, V)
    n, r = 4000, 0.16
    out = predictor_corrector(gauss, jax.random.key(2), n, snr=r, denoise=False, progress_bar=False)
    m, v = np.zeros(2), GAUSS_LADDER.sigma_max**2
    sig = (*GAUSS_LADDER.sigmas, None)
    for s_i, s_next in zip(sig[:-1], sig[1:], strict=True):
        big_v = S**2 + s_i**2
        spread = v + np.sum((m - MU) ** 2) / 2  # E‖x - μ‖² / d
        eps = 2 * r * r * big_v**2 / spread
        a = 1 - eps / big_v
        m, v = a * m + (1 - a) * MU, a * a * v + 2 * eps
        if s_next is not None:
            delta = s_i**2 - s_next**2
            a = 1 - delta / big_v
            m, v = a * m + (1 - a) * MU, a * a * v + delta
    _check_moments(np.asarray(out.samples, np.float64), m, v, "predictor-corrector")


# --------------------------------------------------------------------------- mode weights
def test_annealed_langevin_mixture(mixture):
    n, steps = 3000, 100
    out = annealed_langevin(mixture, jax.random.key(4), n, steps_per_level=steps, denoise=False, progress_bar=False)
    x = np.asarray(out.samples[:, 0], np.float64)
    right = x > 0
    se = math.sqrt(W * (1 - W) / n)
    assert abs(right.mean() - (1 - W)) < Z * se, (right.mean(), se)
    # once σ ≤ 0.25 the modes are apart (4 / 0.39 sd): inside the right one each step is linear on
    # N(M, SM² + σ²). Given the chains at the end of that level, the final mean and variance follow exactly
    # (the transient left by 100 steps of relative size 0.05 per level included).
    k = next(i for i, sg in enumerate(MIX_LADDER.sigmas) if sg <= 0.25)
    start = np.asarray(out.per_level[k, :, 0], np.float64)
    sel = start > 0
    assert np.array_equal(sel, right)  # no chain changed mode after level k
    eps = 0.05 * MIX_LADDER.sigma_min**2
    gain, q, drift = 1.0, 0.0, 0.0  # x_final = gain x_k + drift + ξ, Var ξ = q
    for sigma in MIX_LADDER.sigmas[k + 1:]:
        alpha, var = eps * sigma**2 / MIX_LADDER.sigma_min**2, SM**2 + sigma**2
        a = 1 - alpha / (2 * var)
        for _ in range(steps):
            gain, drift, q = a * gain, a * drift + (1 - a) * M, a * a * q + alpha
    xs, xf = start[sel], x[sel]
    m_pred, v_pred = gain * xs.mean() + drift, gain**2 * xs.var(ddof=1) + q
    assert abs(xf.mean() - m_pred) < Z * math.sqrt(q / xs.size), (xf.mean(), m_pred)
    se_v = math.sqrt((2 * q * q + 4 * gain**2 * xs.var() * q) / xs.size)
    assert abs(xf.var(ddof=1) - v_pred) < Z * se_v, (xf.var(), v_pred, se_v)


def test_predictor_corrector_mixture():
    # the reverse diffusion needs a fine ladder (its Euler-Maruyama steps are the levels) and a σ_max well
    # above the data's spread (the prior N(0, σ_max²) stands in for p_{σ_max}); 100 levels up to 20
    fine = noise_conditional(_mix_fn, None, (1,), NoiseLadder.geometric(20.0, 0.05, 100))
    n = 3000
    out = predictor_corrector(fine, jax.random.key(4), n, corrector_steps=2, progress_bar=False)
    right = np.asarray(out.samples[:, 0]) > 0
    se = math.sqrt(W * (1 - W) / n)
    assert abs(right.mean() - (1 - W)) < Z * se, (right.mean(), se)


def test_single_chain_langevin_misses_the_weights(mixture):
    # the reason for annealing: Langevin on the data level alone keeps each chain in the mode it starts in
    start = jnp.where(jnp.arange(1000)[:, None] < 500, -M, M).astype(jnp.float32)
    one_level = noise_conditional(_mix_fn, None, (1,), NoiseLadder((MIX_LADDER.sigma_min,)))
    out = annealed_langevin(one_level, jax.random.key(5), 1000, steps_per_level=1000, step_scale=0.2 * 0.05**2,
                            init=start, progress_bar=False)
    assert float((out.samples > 0).mean()) == pytest.approx(0.5, abs=0.01)  # stuck at the start's 50/50, not 70/30


def test_sampler_errors(gauss, mixture):
    with pytest.raises(TypeError, match="noise_conditional_mlp"):
        annealed_langevin(ebmppl.Energy(lambda p, x: jnp.sum(x**2), None, event_shape=(2,)), jax.random.key(0), 4)
    with pytest.raises(ValueError, match="predictor_corrector"):
        annealed_langevin(noise_conditional(_gauss_fn, gauss.params, (2,), (1.0, 0.0)), jax.random.key(0), 4)
    with pytest.raises(ValueError, match="init has shape"):
        annealed_langevin(gauss, jax.random.key(0), 4, init=jnp.zeros((3, 2)), progress_bar=False)
    with pytest.raises(ValueError, match="num_samples"):
        predictor_corrector(gauss, jax.random.key(0), 0)
    with pytest.raises(ValueError, match="step_scale"):
        annealed_langevin(gauss, jax.random.key(0), 4, step_scale=-1.0)
    with pytest.raises(ValueError, match="snr"):
        predictor_corrector(gauss, jax.random.key(0), 4, snr=0.0)
    with pytest.raises(FloatingPointError, match="diverged"):
        annealed_langevin(mixture, jax.random.key(0), 8, steps_per_level=20, step_scale=50.0, progress_bar=False)
