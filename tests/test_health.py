"""Training health: stuck chains and bad acceptance are reported with advice."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ebmppl import Energy, buffer, fit, samplers
from ebmppl.health import TrainingHealth
from ebmppl.nn import MLPEnergy


def run(sampler, steps=400):
    energy = Energy.from_equinox(MLPEnergy(2, (16, 16), key=jax.random.key(0)), event_shape=(2,))
    data = jax.random.normal(jax.random.key(1), (512, 2))
    health = TrainingHealth(energy, probe=32, window=8, emit=False)
    # a 256-slot buffer with batch 64 and checks every 20 steps: each slot is revisited
    # about 5 times between checks, so a mixing chain decorrelates within the window
    # the constant learning rate of fit's former default optimizer: the bad-step case needs the energy to
    # sharpen within 400 steps for its acceptance to fall out of band (fit now decays the rate after half the run)
    fit(energy, jax.random.key(2), data, num_steps=steps, batch_size=64, chunk_size=20, num_mcmc_steps=5,
        sampler=sampler, callbacks=[health], progress_bar=False, optimizer=optax.adam(1e-3, b1=0.0, b2=0.999),
        health=health,
        chain_init=buffer.replay_buffer(256, 0.05, buffer.uniform_noise(-3, 3)))
    return health


def test_stuck_chains_are_reported_as_not_mixing():
    health = run(samplers.langevin(step_size=1e-6, noise_scale=1e-6))
    rhat = [r["rhat"] for r in health.records if np.isfinite(r["rhat"])]
    assert rhat and min(rhat) > 1.2
    assert any("not mixing" in msg for _, msg in health.warnings)


def test_mixing_chains_pass_and_acceptance_is_checked():
    healthy = run(samplers.mala(step_size=0.3))
    assert np.nanmedian([r["rhat"] for r in healthy.records]) < 1.2
    assert not any("not mixing" in msg for _, msg in healthy.warnings)
    assert not any("acceptance" in msg for _, msg in healthy.warnings)
    bad = run(samplers.mala(step_size=50.0))
    assert any("lower the sampler step size" in msg for _, msg in bad.warnings)
    fig = healthy.plot()
    assert len(fig.axes) == 4


def test_health_validates_its_options():
    import pytest

    energy = Energy(lambda p, x: jnp.sum(x**2), event_shape=(2,))
    with pytest.raises(ValueError, match="probe"):
        TrainingHealth(energy, probe=1)
