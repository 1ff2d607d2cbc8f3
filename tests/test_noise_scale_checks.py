"""Noise ladders said aloud: the trainers' data-scale checks, typical_region from the confinement, and the
PF-ODE's warning on a family trained at discrete levels only (stranger report, issue 20: A3, A5, A6, A7)."""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ebmppl
from ebmppl.logz.pf_ode import pf_ode_log_likelihood
from ebmppl.noise import LadderScaleCheck, NoiseLadder, NoiseLadderWarning, noise_conditional, noise_conditional_mlp
from ebmppl.objectives.multiscale import multiscale_dsm
from ebmppl.objectives.recovery_likelihood import diffusion_recovery_likelihood, recovery_sample

GUIDE_LADDER = NoiseLadder.geometric(3.0, 0.1, 8)  # the guide's ladder, for data of unit scale
DRL_LADDER = NoiseLadder.geometric(5.0, 0.0, 8, smallest_positive=0.1)


def _helix(n=2000):
    """The stranger's 3-D helix: radius 30, pitch 5 per turn, 4 turns, noise 1 (spread ~ 30, finest scale 1)."""
    rng = np.random.default_rng(0)
    t = rng.uniform(0.0, 8.0 * np.pi, n)
    return np.stack([30 * np.cos(t), 30 * np.sin(t), 5 * t / (2 * np.pi)], 1) + rng.normal(size=(n, 3))


def _two_moons(n=2000):
    return np.asarray(ebmppl.data.two_moons().sample(jax.random.key(0), n))


def _small(n=2000):
    """Two modes of scale 0.01 (the stranger's A2/A6 data, in shape)."""
    rng = np.random.default_rng(1)
    modes = np.where(rng.uniform(size=(n, 1)) < 0.7, 0.01, -0.01) * np.array([1.0, 0.0])
    return modes + 0.004 * rng.normal(size=(n, 2))


def _silent(check, data):
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoiseLadderWarning)
        check(data)


def test_multiscale_dsm_warns_on_a_ladder_below_the_data_and_a_narrow_confinement():
    e = noise_conditional_mlp(jax.random.key(0), (3,), GUIDE_LADDER, hidden=(8,), confinement_scale=3.0)
    check = multiscale_dsm(e, optax.adam(1e-3)).check_data
    with pytest.warns(NoiseLadderWarning, match=r"σ_max = 3 is below .*confinement_scale = 3 is below") as rec:
        check(_helix())
    message = str(rec[0].message)
    assert "NoiseLadder.geometric(" in message and "confinement_center=x.mean(0)" in message
    # the suggested σ_max is the data's widest pairwise distance (≈ 2 × radius 30 and then some), read back
    suggested = float(message.split("NoiseLadder.geometric(")[1].split(",")[0])
    assert 60 <= suggested <= 80
    # the same data standardised, or a ladder and confinement on the data's scale: silent
    x = _helix()
    _silent(check, (x - x.mean(0)) / x.std(0))
    wide = noise_conditional_mlp(jax.random.key(0), (3,), NoiseLadder.geometric(70.0, 0.5, 12), hidden=(8,),
                                 confinement_scale=90.0, confinement_center=tuple(x.mean(0)))
    _silent(multiscale_dsm(wide, optax.adam(1e-3)).check_data, x)


def test_multiscale_dsm_warns_when_sigma_min_is_above_the_data_scale():
    e = noise_conditional_mlp(jax.random.key(0), (2,), GUIDE_LADDER, hidden=(8,), confinement_scale=3.0)
    check = multiscale_dsm(e, optax.adam(1e-3)).check_data
    with pytest.warns(NoiseLadderWarning, match=r"smallest positive σ = 0.1 is above .*blob") as rec:
        check(_small())
    assert "σ_max" not in str(rec[0].message).split("Fix:")[0].replace("σ_max²", "")  # only σ_min is wrong
    _silent(check, _two_moons())  # the guide's ladder on the guide's data


def test_drl_warns_on_small_data_and_suggests_a_clean_level_ladder():
    e = noise_conditional_mlp(jax.random.key(0), (2,), DRL_LADDER, hidden=(8,), scale_by_sigma=False,
                              confinement_scale=3.0)
    check = diffusion_recovery_likelihood(e, optax.adam(1e-3)).check_data
    with pytest.warns(NoiseLadderWarning, match=r"drl: .*smallest_positive="):
        check(_small())
    _silent(check, 50 * _small())  # the stranger's ×50 data, on which DRL learnt the density
    moons = noise_conditional_mlp(jax.random.key(0), (2,), NoiseLadder.geometric(2.0, 0.0, 6, smallest_positive=0.1),
                                  hidden=(8,), scale_by_sigma=False, confinement_scale=3.0)
    _silent(diffusion_recovery_likelihood(moons, optax.adam(1e-3)).check_data, _two_moons())


def test_fit_runs_the_check_before_the_first_step():
    e = noise_conditional_mlp(jax.random.key(0), (2,), GUIDE_LADDER, hidden=(8,))
    trainer = multiscale_dsm(e, optax.adam(1e-3))
    assert isinstance(trainer.check_data, LadderScaleCheck)
    assert trainer.check_data == LadderScaleCheck.for_energy(e, "multiscale_dsm")  # hashable, equal by value
    assert hash(trainer.check_data) == hash(LadderScaleCheck.for_energy(e, "multiscale_dsm"))
    with warnings.catch_warnings():  # as an error, the warning stops fit before it compiles the first step
        warnings.simplefilter("error", NoiseLadderWarning)
        with pytest.raises(NoiseLadderWarning, match="multiscale_dsm"):
            ebmppl.fit(e, jax.random.key(1), jnp.asarray(_small(256)), objective=trainer, num_steps=1,
                       batch_size=64, progress_bar=False)


def test_typical_region_follows_the_confinement():
    center = (0.0, 0.0, 30.0)
    e = noise_conditional_mlp(jax.random.key(0), (3,), NoiseLadder.geometric(80.0, 0.5, 6), hidden=(8,),
                              confinement_scale=90.0, confinement_center=center)
    c, s = e.typical_region()
    np.testing.assert_allclose(c, center)
    np.testing.assert_allclose(s, math.hypot(90.0, 0.5), rtol=1e-6)
    c80, s80 = e.at_noise(80.0).typical_region()  # N(c, s²) smoothed to the level
    np.testing.assert_allclose(c80, center)
    np.testing.assert_allclose(s80, math.hypot(90.0, 80.0), rtol=1e-6)
    free = noise_conditional_mlp(jax.random.key(0), (3,), NoiseLadder.geometric(80.0, 0.5, 6), hidden=(8,))
    assert [v.tolist() for v in free.typical_region()] == [[0.0] * 3, [1.0] * 3]
    only_scale = noise_conditional_mlp(jax.random.key(0), (3,), NoiseLadder.geometric(80.0, 0.5, 6), hidden=(8,),
                                       confinement_scale=90.0)
    np.testing.assert_allclose(only_scale.typical_region()[0], 0.0)


def test_recovery_sample_starts_at_the_confinement_center():
    """The start N(center, σ_max² I): its mean over n chains is the centre within 5 σ_max/√n per coordinate."""
    ladder = NoiseLadder((2.0, 0.0))
    e = noise_conditional_mlp(jax.random.key(0), (2,), ladder, hidden=(8,), scale_by_sigma=False,
                              confinement_scale=1.0, confinement_center=(50.0, -20.0))
    n = 400
    out = recovery_sample(e, jax.random.key(1), n, num_steps=1, progress_bar=False)
    start_mean = np.asarray(out.per_level[0]).mean(0)
    assert np.all(np.abs(start_mean - np.array([50.0, -20.0])) < 5 * 2.0 / math.sqrt(n)), start_mean


def _gauss(p, x, s):
    return 0.5 * jnp.sum(x**2) / (1.0 + s**2)


def test_pf_ode_warns_outside_what_a_family_is_trained_at():
    x = jax.random.normal(jax.random.key(0), (8, 2))
    fine = noise_conditional(_gauss, None, (2,), NoiseLadder.geometric(20.0, 0.1, 6))
    kw = dict(num_steps=4, error_estimate=False)
    with warnings.catch_warnings():  # the ladder's own range: silent
        warnings.simplefilter("error", NoiseLadderWarning)
        pf_ode_log_likelihood(fine, jax.random.key(1), x, **kw)
        pf_ode_log_likelihood(fine, jax.random.key(1), x, sigma_min=0.5, sigma_max=10.0, **kw)
    with pytest.warns(NoiseLadderWarning, match=r"sigma_min = 0.01 is below .*continuous=True"):
        pf_ode_log_likelihood(fine, jax.random.key(1), x, sigma_min=0.01, **kw)
    with pytest.warns(NoiseLadderWarning, match=r"sigma_max = 50 is above"):
        pf_ode_log_likelihood(fine, jax.random.key(1), x, sigma_max=50.0, **kw)
    drl = noise_conditional(_gauss, None, (2,), DRL_LADDER)  # a clean level: a DRL-trained family
    with pytest.warns(NoiseLadderWarning, match=r"clean σ = 0 level.*not log p"):
        pf_ode_log_likelihood(drl, jax.random.key(1), x, sigma_min=0.1, **kw)
