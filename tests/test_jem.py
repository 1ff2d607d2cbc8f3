"""JEM: the classifier's energies, hybrid training on digits, calibration."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ebmppl import fit
from ebmppl.jem import expected_calibration_error, jem_hybrid, joint_energy

pytestmark = pytest.mark.xla_optimized  # long-running programs: compiled with XLA's optimisations


class Classifier(eqx.Module):
    mlp: eqx.nn.MLP

    def __init__(self, key):
        self.mlp = eqx.nn.MLP(64, 10, 128, 2, activation=jax.nn.silu, key=key)

    def __call__(self, image):
        return self.mlp(image.reshape(-1))


def test_energies_are_the_classifier_read_two_ways():
    joint = joint_energy(Classifier(jax.random.key(0)), event_shape=(1, 8, 8))
    x = jax.random.uniform(jax.random.key(1), (5, 1, 8, 8), minval=-1, maxval=1)
    params = joint.energy.params
    logits = jax.vmap(lambda xi: joint.logits(params, xi))(x)
    np.testing.assert_allclose(joint.energy.energy(x), -jax.scipy.special.logsumexp(logits, -1), rtol=1e-5)
    np.testing.assert_allclose(joint.conditional(params, 3).energy(x), -logits[:, 3], rtol=1e-5)
    np.testing.assert_allclose(joint.predict(params, x).sum(-1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="y must be"):
        joint.conditional(params, 10)


def test_fit_validates_labels():
    joint = joint_energy(Classifier(jax.random.key(0)), event_shape=(1, 8, 8))
    trainer = jem_hybrid(joint, optax.adam(1e-3))
    with pytest.raises(ValueError, match="integer labels"):
        fit(joint.energy, (jnp.zeros((10, 1, 8, 8)), jnp.zeros(10)), key=jax.random.key(0), objective=trainer,
            progress_bar=False)


@pytest.mark.slow
def test_jem_on_digits_classifies_and_is_calibrated():
    pytest.importorskip("sklearn")
    from ebmppl.data import load_digits

    x, y = map(jnp.asarray, load_digits("train"))
    x_test, y_test = load_digits("test")
    report = {}
    for name, weight in (("ce", 0.0), ("jem", 1.0)):
        joint = joint_energy(Classifier(jax.random.key(0)), event_shape=(1, 8, 8))
        trainer = jem_hybrid(joint, optax.adam(1e-3, b1=0.0 if weight else 0.9), generative_weight=weight,
                             num_mcmc_steps=10)
        result = fit(joint.energy, (x, y), key=jax.random.key(1), num_steps=1500, batch_size=128,
                     objective=trainer, progress_bar=False)
        probs = np.asarray(joint.predict(result.state.params, jnp.asarray(x_test)))
        report[name] = ((probs.argmax(1) == y_test).mean(), expected_calibration_error(probs, y_test))
    assert report["jem"][0] >= 0.95 and report["ce"][0] >= 0.95, report
    assert all(0 <= ece < 0.1 for _, ece in report.values()), report
