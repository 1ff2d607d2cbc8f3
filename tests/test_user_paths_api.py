"""Issue 14, findings 5-9: the Python API as a new user meets it — save/load, checkpoint folders,
the Trainer contract, batch iterators, and the messages for the usual mistakes.

Each test failed before the fix it names and passes after it; all go through the public API.
"""

import json
import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ebmppl
from ebmppl import compose, nn, targets
from ebmppl.checkpoint import CheckpointError, save_checkpoint
from ebmppl.conditional import inpaint
from ebmppl.diagnostics import compare
from ebmppl.objectives import Trainer
from ebmppl.objectives.base import apply_gradients, initial_state

QUIET = {"progress_bar": False}
SLOW_LANGEVIN = {"sampler_params": {"step_size": 0.01, "noise_scale": 0.1}}


def _skewed_data(n=256, seed=3):
    """A 2-D data set no other test uses: a skewed, shifted cloud (exp of a Gaussian in x1)."""
    z = jax.random.normal(jax.random.key(seed), (n, 2))
    return jnp.stack([jnp.exp(0.5 * z[:, 0]) - 1.0, 0.5 * z[:, 1] + 0.3 * z[:, 0]], axis=1)


def _mlp(key=0, in_size=2):
    net = nn.MLPEnergy(in_size, (16, 16), base_scale=3.0, base_center=[0.5] * in_size, key=jax.random.key(key))
    return ebmppl.Energy.from_equinox(net, event_shape=(in_size,))


def _run_fresh(code: str) -> dict:
    """Run ``code`` in a fresh Python process (nothing of this one carried over) and return its JSON output."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300,
                         check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- finding 5: save and load
def test_finding5_python_api_fit_saves_and_loads_in_a_fresh_process(tmp_path):
    data = _skewed_data()
    result = ebmppl.fit(_mlp(), data, key=jax.random.key(1), num_steps=30, chunk_size=10,
                        checkpoint_dir=tmp_path / "ckpt", **QUIET, **SLOW_LANGEVIN)
    mlp_file = ebmppl.save(tmp_path / "mlp.ebm", result)
    g = targets.gaussian([1.0, -1.0], [[1.0, 0.3], [0.3, 0.5]])
    composed = compose.product(result.energy, g.energy.with_temperature(2.0))
    conditioned = compose.condition(composed, jnp.array([0.5, 0.0]), jnp.array([True, False]))
    ebmppl.save(tmp_path / "product.ebm", composed)
    ebmppl.save(tmp_path / "conditioned.ebm", conditioned)
    probe = np.asarray(jax.random.normal(jax.random.key(2), (8, 2)))
    expected = {"mlp": result.energy.energy(probe), "product": composed.energy(probe),
                "conditioned": conditioned.energy(probe[:, :1])}
    got = _run_fresh(f"""
        import json, jax, numpy as np, ebmppl
        probe = np.asarray({probe.tolist()!r}, dtype=np.float32)
        d = {str(tmp_path)!r}
        mlp = ebmppl.load(d + "/mlp.ebm")
        out = {{"mlp": mlp.energy(probe).tolist(),
               "from_checkpoint": ebmppl.load(d + "/ckpt").energy(probe).tolist(),
               "product": ebmppl.load(d + "/product.ebm").energy(probe).tolist(),
               "conditioned": ebmppl.load(d + "/conditioned.ebm").energy(probe[:, :1]).tolist()}}
        draws = ebmppl.sample(mlp, jax.random.key(0), sampler="mala", num_chains=2, num_warmup=50,
                              num_samples=20, progress_bar=False)
        out["draws_shape"] = list(draws.positions.shape)
        out["draws_finite"] = bool(np.isfinite(np.asarray(draws.positions)).all())
        print(json.dumps(out))
    """)
    # same parameters, same function, same float32 arithmetic: identical up to float rounding of XLA's fusion
    for name in ("mlp", "product", "conditioned"):
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got["from_checkpoint"], expected["mlp"], rtol=1e-6, atol=1e-6)
    assert got["draws_shape"] == [2, 20, 2] and got["draws_finite"]
    assert mlp_file.read_bytes().startswith(b"EBMPPL-CKPT ")


def test_finding5_targets_and_convnets_round_trip(tmp_path):
    cases = {
        "banana": targets.banana(1.5, 0.5).energy,
        "funnel": targets.neals_funnel(4).energy.with_temperature(0.7),
        "mixture": targets.gaussian_mixture([0.3, 0.7], [[-2.0, 0.0], [2.0, 1.0]], [0.25 * np.eye(2)] * 2).energy,
        "ring_or_gauss": compose.mixture([targets.ring().energy, targets.gaussian([0.0, 0.0], np.eye(2)).energy]),
    }
    for name, energy in cases.items():
        loaded = ebmppl.load(ebmppl.save(tmp_path / f"{name}.ebm", energy))
        x = jax.random.normal(jax.random.key(0), (5, *energy.event_shape))
        np.testing.assert_array_equal(np.asarray(loaded.energy(x)), np.asarray(energy.energy(x)), err_msg=name)
        assert float(loaded.temperature) == pytest.approx(float(energy.temperature))
    conv = ebmppl.Energy.from_equinox(nn.ConvEnergy(1, width=4, spectral_norm=True, key=jax.random.key(0)),
                                      event_shape=(1, 8, 8))
    loaded = ebmppl.load(ebmppl.save(tmp_path / "conv.ebm", conv))
    x = jax.random.normal(jax.random.key(1), (3, 1, 8, 8))
    np.testing.assert_array_equal(np.asarray(loaded.energy(x)), np.asarray(conv.energy(x)))


def test_finding5_custom_function_loads_with_like_and_mismatches_are_named(tmp_path):
    def fn(p, x):
        return 0.5 * jnp.sum(((x - p["loc"]) / jnp.exp(p["log_scale"])) ** 2)

    trained = ebmppl.Energy(fn, {"loc": jnp.array([1.0, 2.0]), "log_scale": jnp.array([0.1, -0.2])}, event_shape=(2,))
    path = ebmppl.save(tmp_path / "custom.ebm", trained)
    with pytest.raises(CheckpointError, match="parameters only.*like="):
        ebmppl.load(path)
    template = ebmppl.Energy(fn, {"loc": jnp.zeros(2), "log_scale": jnp.zeros(2)}, event_shape=(2,))
    loaded = ebmppl.load(path, like=template)
    np.testing.assert_array_equal(np.asarray(loaded.params["log_scale"]), np.asarray(trained.params["log_scale"]))
    wrong = ebmppl.Energy(fn, {"loc": jnp.zeros(3), "log_scale": jnp.zeros(3)}, event_shape=(3,))
    with pytest.raises(CheckpointError, match="event_shape"):
        ebmppl.load(path, like=wrong)
    wrong_shape = ebmppl.Energy(lambda p, x: fn({"loc": p["loc"][:2], "log_scale": p["log_scale"]}, x),
                                {"loc": jnp.zeros(4), "log_scale": jnp.zeros(2)}, event_shape=(2,))
    with pytest.raises(CheckpointError, match=r"\['loc'\].*float32\[2\].*float32\[4\]"):
        ebmppl.load(path, like=wrong_shape)


class _Trap:
    """Unpickling this would create a file: loading must never do it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_finding5_loading_never_unpickles(tmp_path):
    marker = tmp_path / "code-ran"
    evil = np.array([_Trap(str(marker))], dtype=object)
    meta = {"content": "ebmppl-energy", "energy_format": 1, "event_shape": [2], "temperature": 1.0,
            "architecture": None, "parameters": ["[0]"]}
    path = save_checkpoint(tmp_path / "evil.ebm", [evil], meta)  # a valid checksum around a pickled object
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="without executing code"):
        ebmppl.load(path, like=ebmppl.Energy(lambda p, x: jnp.sum(x**2) * p[0], [jnp.ones(())], event_shape=(2,)))
    assert not marker.exists()
    # and the header of a saved file is plain JSON
    head = ebmppl.save(tmp_path / "ok.ebm", _mlp()).read_bytes().split(b"\n", 1)[0]
    header = json.loads(head[len(b"EBMPPL-CKPT "):])
    assert header["metadata"]["architecture"]["module"] == "MLPEnergy"


# ---------------------------------------------------------------- finding 6: checkpoint_dir of another run
def test_finding6_checkpoint_dir_holding_a_run_is_refused_unless_resume_or_overwrite(tmp_path):
    data = _skewed_data()
    first = ebmppl.fit(_mlp(0), data, key=jax.random.key(1), num_steps=10, chunk_size=10, checkpoint_dir=tmp_path,
                       **QUIET, **SLOW_LANGEVIN)
    other = ebmppl.Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))
    with pytest.raises(FileExistsError, match=r"resume=True.*overwrite=True"):
        ebmppl.fit(other, data, key=jax.random.key(1), num_steps=10, checkpoint_dir=tmp_path, **QUIET)
    # the first run's checkpoint is intact
    np.testing.assert_array_equal(np.asarray(ebmppl.load(tmp_path).energy(data[:4])),
                                  np.asarray(first.energy.energy(data[:4])))
    with pytest.raises(ValueError, match="not both"):
        ebmppl.fit(other, data, key=jax.random.key(1), num_steps=10, checkpoint_dir=tmp_path, resume=True,
                   overwrite=True, **QUIET)
    second = ebmppl.fit(other, data, key=jax.random.key(1), num_steps=10, chunk_size=10, checkpoint_dir=tmp_path,
                        overwrite=True, **QUIET, **SLOW_LANGEVIN)
    np.testing.assert_array_equal(np.asarray(ebmppl.load(tmp_path, like=other).params),
                                  np.asarray(second.energy.params))


# ---------------------------------------------------------------- finding 7: the Trainer contract, iterators, resume
def _least_squares_trainer(lr=0.1):
    """A custom Trainer that follows the documented contract: metrics ``loss`` and ``finite`` only.

    It moves ``params`` (a location) towards the batch mean; a batch may be ``x`` or ``(x, weights)``.
    """
    opt = optax.sgd(lr)

    def init(key, params):
        return initial_state(key, params, opt, None, (2,))

    def step(state, batch):
        x, w = batch if isinstance(batch, tuple) else (batch, jnp.ones(batch.shape[0], jnp.int32))
        w = w.astype(x.dtype)
        loss, grads = jax.value_and_grad(lambda p: jnp.sum(w * jnp.sum((x - p) ** 2, -1)) / jnp.sum(w))(state.params)
        new, ok = apply_gradients(state, grads, loss, opt, state.buffer, state.key)
        return new, {"loss": loss, "finite": ok}

    return Trainer("least_squares", init, step)


def test_finding7_custom_trainer_with_contract_metrics_only(tmp_path):
    data = _skewed_data()
    energy = ebmppl.Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))
    result = ebmppl.fit(energy, data, key=jax.random.key(0), objective=_least_squares_trainer(), num_steps=200,
                        batch_size=256, progress_bar=True, checkpoint_dir=tmp_path)
    assert set(result.history) == {"loss", "finite", "step"}
    # the minimiser is the mean of the (resampled) batches: within a few standard errors of the data mean
    se = np.asarray(jnp.std(data, axis=0)) / np.sqrt(256)
    assert np.all(np.abs(np.asarray(result.energy.params) - np.asarray(data.mean(0))) < 5 * se)
    assert ebmppl.load(tmp_path, like=energy).params.shape == (2,)


def test_finding7_trainer_without_contract_metrics_is_named():
    energy = ebmppl.Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))
    good = _least_squares_trainer()
    broken = Trainer("broken", good.init, lambda s, b: (good.step(s, b)[0], {"objective": jnp.float32(0.0)}))
    with pytest.raises(TypeError, match=r"'loss'.*'finite'"):
        ebmppl.fit(energy, _skewed_data(), key=jax.random.key(0), objective=broken, num_steps=5, **QUIET)


def test_finding7_optimizer_with_a_trainer_is_an_error():
    energy = ebmppl.Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))
    with pytest.raises(TypeError, match="optimizer applies to a named objective"):
        ebmppl.fit(energy, _skewed_data(), key=jax.random.key(0), objective=_least_squares_trainer(),
                   optimizer=optax.adam(1.0), num_steps=5, **QUIET)


def test_finding7_iterators_of_tuples():
    data = _skewed_data(128)
    energy = ebmppl.Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))
    # (x, labels): labels used as integer weights by the custom trainer; only the first half counts
    weights = (np.arange(32) < 16).astype(np.int32)
    batches = [(np.asarray(data[i:i + 32]), weights) for i in range(0, 128, 32)] * 25
    result = ebmppl.fit(energy, batches, key=jax.random.key(0), objective=_least_squares_trainer(0.5),
                        num_steps=100, **QUIET)
    target = np.mean([np.asarray(data[i:i + 16]).mean(0) for i in range(0, 128, 32)], axis=0)
    np.testing.assert_allclose(np.asarray(result.energy.params), target, atol=0.05)
    # (x, observed_mask): recovery CD on incomplete batches
    mask = np.asarray(jax.random.bernoulli(jax.random.key(1), 0.8, (32, 2)))
    masked = [(np.asarray(data[i:i + 32]), mask) for i in range(0, 128, 32)]
    out = ebmppl.fit(_mlp(), masked, key=jax.random.key(2), objective="recovery_cd", num_steps=4, chunk_size=2,
                     num_mcmc_steps=2, **QUIET, **SLOW_LANGEVIN)
    assert out.history["loss"].shape == (4,) and out.history["finite"].all()


def test_finding7_resume_from_an_iterator_is_bit_exact(tmp_path):
    data = np.asarray(_skewed_data(320))
    batches = [data[i:i + 32] for i in range(0, 320, 32)] * 4  # 40 distinct-in-order batches
    opts = {"num_mcmc_steps": 3, "chunk_size": 5, **QUIET, **SLOW_LANGEVIN}
    whole = ebmppl.fit(_mlp(), batches, key=jax.random.key(4), num_steps=40, **opts)
    # the same run, interrupted at step 20 (a callback that asks to stop: the checkpoint is written) ...
    stopped = ebmppl.fit(_mlp(), batches, key=jax.random.key(4), num_steps=40, checkpoint_dir=tmp_path,
                         callbacks=[lambda step, state, metrics: step >= 20], **opts)
    assert int(stopped.state.step) == 20
    # ... and resumed with the same batches passed again from the start
    resumed = ebmppl.fit(_mlp(), batches, key=jax.random.key(4), num_steps=40, checkpoint_dir=tmp_path, resume=True,
                         **opts)
    for a, b in zip(jax.tree.leaves(whole.energy.params), jax.tree.leaves(resumed.energy.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(whole.history["loss"], resumed.history["loss"])


# ---------------------------------------------------------------- finding 8: messages
def test_finding8_an_int_key_is_named_at_every_entry_point():
    target = targets.gaussian([0.0, 0.0], np.eye(2))
    energy = target.energy
    calls = {
        "fit": lambda: ebmppl.fit(energy, _skewed_data(), key=0, num_steps=2, **QUIET),
        "sample": lambda: ebmppl.sample(energy, 0, num_samples=5, num_warmup=5, **QUIET),
        "compare": lambda: compare(target, ["mala"], key=0, num_samples=10, num_warmup=10, progress_bar=False),
        "log_partition": lambda: ebmppl.log_partition(energy, 0, num_chains=4, num_temperatures=4),
        "inpaint": lambda: inpaint(energy, 0, jnp.zeros((1, 2)), jnp.array([[True, False]]), num_steps=2),
    }
    for name, call in calls.items():
        with pytest.raises(TypeError, match=r"key must be a jax\.random key.*jax\.random\.key\(0\)"):
            call()
    # legacy uint32[2] keys still work
    out = ebmppl.sample(energy, jax.random.PRNGKey(0), sampler="mala", num_chains=2, num_samples=5, num_warmup=5,
                        **QUIET)
    assert out.positions.shape == (2, 5, 2)


def test_finding8_a_plain_function_gets_the_energy_hint_everywhere():
    def fn(p, x):
        return 0.5 * jnp.sum(x**2)

    calls = {
        "fit": lambda: ebmppl.fit(fn, _skewed_data(), key=jax.random.key(0), num_steps=2, **QUIET),
        "compare": lambda: compare(fn, ["mala"], key=jax.random.key(0), num_samples=10, num_warmup=10),
        "log_partition": lambda: ebmppl.log_partition(fn, jax.random.key(0)),
        "sample": lambda: ebmppl.sample(fn, jax.random.key(0)),
        "save": lambda: ebmppl.save("unused.ebm", fn),
    }
    for name, call in calls.items():
        with pytest.raises(TypeError, match=r"wrap it: ebmppl\.Energy\(fn, params, event_shape=\.\.\.\)"):
            call()


def test_finding8_unknown_sampler_params_are_rejected_with_the_valid_list():
    energy = _mlp()
    with pytest.raises(ValueError, match=r"unknown key 'stepsize'.*'noise_scale', 'step_size'"):
        ebmppl.fit(energy, _skewed_data(), key=jax.random.key(0), num_steps=2, sampler_params={"stepsize": 0.1},
                   **QUIET)
    with pytest.raises(ValueError, match=r"unknown key 'stepsize'.*'step_size'"):
        inpaint(targets.gaussian([0.0, 0.0], np.eye(2)).energy, jax.random.key(0), jnp.zeros((1, 2)),
                jnp.array([[True, False]]), sampler="mala", sampler_params={"stepsize": 0.1}, num_steps=2)


def test_finding8_energy_fn_without_params_is_named_as_such():
    with pytest.raises(TypeError, match=r"energy_fn must take \(params, x\)") as info:
        ebmppl.Energy(lambda x: 0.5 * jnp.sum(x**2), event_shape=(2,))
    assert "event_shape" not in str(info.value).split(";")[0]


# ---------------------------------------------------------------- finding 9: the fitting guide
def test_finding9_fitting_guide_passes_the_energy_to_training_health():
    text = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "guide" / "fitting.md").read_text()
    assert "TrainingHealth()" not in text
    assert "TrainingHealth(energy" in text
