"""Reliability under bad input, faults and interruption (property-based where the input space is large).

Every public entry point either works — finite results of the documented
shape — or raises a documented error type (``ValueError``/``TypeError``, or
their subclasses such as ``CheckpointError``) whose message names the
argument. Faults (truncated and corrupted checkpoints, SIGINT during
training) never lose a run. The tallies in ``conftest.RELIABILITY`` are
printed at the end of the test run and quoted in the docs' reliability page.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import ebmppl
from conftest import RELIABILITY
from ebmppl import buffer, samplers
from ebmppl.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

pytestmark = pytest.mark.xla_optimized  # long-running programs: compiled with XLA's optimisations

PROPERTY = settings(max_examples=20, deadline=None, derandomize=True,
                    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target],  # no slow shrinking in CI
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
DOCUMENTED = (ValueError, TypeError)

# values that are wrong for a count: the valid ones are drawn from a small set so compiled programs are reused
bad_or_count = st.one_of(st.sampled_from([1, 2, 4]), st.integers(-3, 0), st.floats(allow_nan=True),
                         st.text(max_size=3), st.booleans(), st.none(), st.just(np.int64(2)))


def _expect_documented(call, names):
    """Run ``call``; a raised error must be documented and name one of ``names``. Returns the result or None."""
    try:
        return call()
    except DOCUMENTED as err:
        message = str(err)
        if not any(n in message for n in names):
            RELIABILITY["lost"] += 1
            raise AssertionError(f"error does not name the argument ({names}): {message!r}") from err
        return None


GAUSS = ebmppl.Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))


@PROPERTY
@given(num_chains=bad_or_count, num_samples=bad_or_count, num_warmup=bad_or_count, thinning=bad_or_count,
       sampler=st.sampled_from(["mala", "ula", "hmc", "nope", 3, None]))
def test_sample_works_or_names_the_argument(num_chains, num_samples, num_warmup, thinning, sampler):
    valid = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1
                for v in (num_chains, num_samples, thinning)) and \
        isinstance(num_warmup, (int, np.integer)) and not isinstance(num_warmup, bool) and num_warmup >= 0 and \
        sampler in ("mala", "ula", "hmc")
    RELIABILITY["bad inputs tried"] += not valid
    out = _expect_documented(
        lambda: ebmppl.sample(GAUSS, jax.random.key(0), sampler=sampler, num_chains=num_chains,
                              num_samples=num_samples, num_warmup=num_warmup, thinning=thinning, progress_bar=False),
        ("num_chains", "num_samples", "num_warmup", "thinning", "sampler"))
    if valid:
        assert out is not None, "valid arguments were refused"
        assert out.positions.shape == (int(num_chains), int(num_samples), 2)
        assert bool(jnp.all(jnp.isfinite(out.positions)))
    elif out is not None:
        RELIABILITY["lost"] += 1
        raise AssertionError("invalid arguments were accepted")


@PROPERTY
@given(shape=st.sampled_from([(2,), (3,), (2, 1), (1, 2)]),
       leading=st.sampled_from([4, 3]),
       dtype=st.sampled_from(["float32", "int32", "bool"]),
       poison=st.sampled_from([None, np.nan, np.inf]))
def test_sample_init_is_checked(shape, leading, dtype, poison):
    init = np.zeros((leading, *shape)).astype(dtype)
    if poison is not None and dtype == "float32":
        init.flat[0] = poison
    valid = shape == (2,) and leading == 4 and dtype == "float32" and poison is None
    RELIABILITY["bad inputs tried"] += not valid
    out = _expect_documented(lambda: ebmppl.sample(GAUSS, jax.random.key(0), sampler="mala", num_chains=4,
                                                   num_warmup=10, num_samples=10, init=init, progress_bar=False),
                             ("init",))
    assert (out is not None) == valid


@PROPERTY
@given(event_shape=st.sampled_from([(2,), (3,), (2, 2), 2, (), (0,), (-1,), "2", None]),
       output=st.sampled_from(["scalar", "vector", "nan", "int"]))
def test_energy_construction_works_or_names_the_argument(event_shape, output):
    fns = {
        "scalar": lambda p, x: jnp.sum(x**2),
        "vector": lambda p, x: x**2,
        "nan": lambda p, x: jnp.sum(x**2) * jnp.nan,
        "int": lambda p, x: jnp.sum(x**2).astype(jnp.int32),
    }
    ok_shape = event_shape in ((2,), (3,), (2, 2), 2)
    valid = ok_shape and output == "scalar"
    RELIABILITY["bad inputs tried"] += not valid
    e = _expect_documented(lambda: ebmppl.Energy(fns[output], None, event_shape=event_shape),
                           ("event_shape", "energy_fn"))
    if valid:
        shape = (event_shape,) if isinstance(event_shape, int) else event_shape
        x = jnp.ones((5, *shape))
        assert e.energy(x).shape == (5,) and e.score(x).shape == x.shape
        assert bool(jnp.all(jnp.isfinite(e.logdensity(x))))
    else:
        assert e is None


@PROPERTY
@given(batch_size=bad_or_count, num_steps=st.one_of(st.sampled_from([3]), st.integers(-2, 0), st.none()),
       objective=st.sampled_from(["cd", "dsm", "nce", "ssm", "bogus"]), alpha=st.sampled_from([0.1, -1.0, 0.0]),
       poison=st.booleans())
def test_fit_works_or_names_the_argument(batch_size, num_steps, objective, alpha, poison):
    data = np.random.default_rng(0).normal(size=(32, 2)).astype("float32")
    if poison:
        data[3, 1] = np.nan
    options = {"alpha": alpha, "sampler_params": {"step_size": 0.05, "noise_scale": 0.3}} if objective == "cd" else {}
    valid = (isinstance(batch_size, (int, np.integer)) and not isinstance(batch_size, bool) and batch_size >= 1
             and num_steps == 3 and objective != "bogus" and not poison and (objective != "cd" or alpha >= 0))
    RELIABILITY["bad inputs tried"] += not valid
    result = _expect_documented(
        lambda: ebmppl.fit(GAUSS, data, key=jax.random.key(0), num_steps=num_steps, batch_size=batch_size,
                           objective=objective, progress_bar=False, **options),
        ("batch_size", "num_steps", "objective", "alpha", "data"))
    if valid:
        assert result is not None and int(result.state.step) == 3
        assert all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree.leaves(result.state.params))
    else:
        assert result is None


@PROPERTY
@given(method=st.sampled_from(["ais", "importance", "grid", "exact"]), num_chains=bad_or_count,
       base_scale=st.sampled_from([1.0, 0.0, -2.0, float("nan")]),
       transition=st.sampled_from(["mala", "hmc", "gibs"]))
def test_log_partition_works_or_names_the_argument(method, num_chains, base_scale, transition):
    valid_count = isinstance(num_chains, (int, np.integer)) and not isinstance(num_chains, bool) and num_chains >= 1
    valid = method == "grid" or (method in ("ais", "importance") and valid_count and base_scale > 0
                                 and transition != "gibs")
    RELIABILITY["bad inputs tried"] += not valid
    est = _expect_documented(
        lambda: ebmppl.log_partition(GAUSS, jax.random.key(0), method=method, num_chains=num_chains,
                                     num_temperatures=20, base_scale=base_scale, transition=transition,
                                     limits=(-8, 8, -8, 8)),
        ("method", "num_chains", "base_scale", "transition"))
    if valid:
        assert est is not None and math.isfinite(est.log_z) and abs(est.log_z - math.log(2 * math.pi)) < 0.5
    else:
        assert est is None


@PROPERTY
@given(capacity=bad_or_count, reinit_prob=st.sampled_from([0.05, 0.0, 1.0, -0.1, 1.5, float("nan")]),
       step_size=st.sampled_from([0.1, 0.0, -1.0, float("nan"), float("inf")]))
def test_builders_name_the_argument(capacity, reinit_prob, step_size):
    valid_buffer = (isinstance(capacity, (int, np.integer)) and not isinstance(capacity, bool) and capacity >= 1
                    and 0.0 <= reinit_prob <= 1.0)
    RELIABILITY["bad inputs tried"] += (not valid_buffer) + (not (0 < step_size < float("inf")))
    made = _expect_documented(lambda: buffer.replay_buffer(capacity, reinit_prob), ("capacity", "reinit_prob"))
    assert (made is not None) == valid_buffer
    for builder in (samplers.mala, samplers.ula, samplers.hmc, samplers.langevin):
        made = _expect_documented(lambda b=builder: b(step_size=step_size), ("step_size",))
        assert (made is not None) == (0 < step_size < float("inf"))


# keys that are not one jax.random key: an int seed, floats, text, None, raw data of the wrong shape or dtype,
# a batch of keys. Each entry point must name ``key`` and say how to make one (issue 14, finding 8).
bad_key = st.one_of(st.integers(-2**31, 2**31), st.floats(allow_nan=True), st.text(max_size=3), st.none(),
                    st.booleans(), st.sampled_from([np.zeros(2, np.float32), np.zeros(3, np.uint32),
                                                    np.zeros((2, 2), np.uint32), np.zeros((), np.uint32)]),
                    st.just(jax.random.split(jax.random.key(0), 2)))
KEY_ENTRY_POINTS = {
    "sample": lambda key: ebmppl.sample(GAUSS, key, num_samples=5, num_warmup=5, progress_bar=False),
    "fit": lambda key: ebmppl.fit(GAUSS, jnp.zeros((8, 2)), key=key, num_steps=1, progress_bar=False),
    "log_partition": lambda key: ebmppl.log_partition(GAUSS, key, num_chains=4, num_temperatures=4),
    "inpaint": lambda key: __import__("ebmppl.conditional").conditional.inpaint(
        GAUSS, key, jnp.zeros((1, 2)), jnp.array([[True, False]]), num_steps=1),
    "compare": lambda key: ebmppl.diagnostics.compare(GAUSS, ["mala"], key=key, num_samples=5, num_warmup=5,
                                                      progress_bar=False),
}


@PROPERTY
@given(key=bad_key, entry=st.sampled_from(sorted(KEY_ENTRY_POINTS)))
def test_every_entry_point_names_a_bad_key(key, entry):
    RELIABILITY["bad inputs tried"] += 1
    with pytest.raises(TypeError, match=r"key must be a jax\.random key.*jax\.random\.key\(0\)"):
        KEY_ENTRY_POINTS[entry](key)
        RELIABILITY["lost"] += 1  # only reached when a bad key was accepted


@PROPERTY
@given(name=st.text(min_size=1, max_size=12).filter(lambda s: s not in ("step_size", "noise_scale")))
def test_unknown_sampler_params_are_named_with_the_valid_list(name):
    RELIABILITY["bad inputs tried"] += 1
    with pytest.raises(ValueError, match=r"unknown key.*'noise_scale', 'step_size'"):
        ebmppl.objectives.contrastive_divergence(GAUSS, __import__("optax").sgd(0.1), sampler_params={name: 0.1})
        RELIABILITY["lost"] += 1


# ------------------------------------------------------------------ checkpoints: injected faults


@pytest.fixture(scope="module")
def saved_energy(tmp_path_factory):
    path = tmp_path_factory.mktemp("energy") / "mlp.ebm"
    net = ebmppl.nn.MLPEnergy(2, (4,), base_scale=2.0, key=jax.random.key(0))
    ebmppl.save(path, ebmppl.Energy.from_equinox(net, event_shape=(2,)).with_temperature(0.5))
    return path


def _damage(data: bytes, fault: str, where: float, length: int) -> bytes:
    """``data`` truncated, with bytes flipped or zeroed at a relative position, or with garbage appended."""
    blob = bytearray(data)
    at = min(int(where * len(blob)), len(blob) - 1)
    if fault == "truncate":
        blob = blob[:at]
    elif fault == "flip":
        for i in range(at, min(at + length, len(blob))):
            blob[i] ^= 0xFF
    elif fault == "zero":
        blob[at:at + length] = bytes(len(blob[at:at + length]))
    else:
        blob += os.urandom(length)
    return bytes(blob)


@PROPERTY
@given(fault=st.sampled_from(["truncate", "flip", "zero", "append"]), where=st.floats(0.0, 1.0),
       length=st.integers(1, 64))
def test_damaged_energy_files_are_always_detected(saved_energy, tmp_path_factory, fault, where, length):
    """``ebmppl.load`` of a saved energy: header and payload both checksummed, so no damage loads as good."""
    blob = _damage(saved_energy.read_bytes(), fault, where, length)
    damaged = tmp_path_factory.mktemp("bad") / "mlp.ebm"
    damaged.write_bytes(blob)
    RELIABILITY["faults injected"] += 1
    if blob == saved_energy.read_bytes():
        return
    with pytest.raises(CheckpointError):
        ebmppl.load(damaged)
        RELIABILITY["lost"] += 1


@pytest.fixture(scope="module")
def saved_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "state.ebm"
    state = {"w": jnp.arange(12.0).reshape(3, 4), "b": jnp.ones(4), "key": jax.random.key(3)}
    save_checkpoint(path, state, {"step": 10}, extras={"loss": np.arange(10.0)})
    return path, state


@PROPERTY
@given(fault=st.sampled_from(["truncate", "flip", "zero", "append"]), where=st.floats(0.0, 1.0),
       length=st.integers(1, 64))
def test_damaged_checkpoints_are_always_detected(saved_checkpoint, tmp_path_factory, fault, where, length):
    path, state = saved_checkpoint
    blob = _damage(path.read_bytes(), fault, where, length)
    damaged = tmp_path_factory.mktemp("bad") / "state.ebm"
    damaged.write_bytes(blob)
    RELIABILITY["faults injected"] += 1
    if blob == path.read_bytes():  # zeroing zeros changes nothing: a no-op fault
        return
    with pytest.raises(CheckpointError):
        load_checkpoint(damaged, state)
        RELIABILITY["lost"] += 1  # only reached when a damaged file loaded as good


def test_checkpoint_format_version_and_shape_mismatch(saved_checkpoint, tmp_path):
    path, state = saved_checkpoint
    with pytest.raises(CheckpointError, match="differently shaped|arrays"):
        load_checkpoint(path, {**state, "w": jnp.zeros((3, 5))})
    blob = path.read_bytes()
    other = blob.replace(b'"format_version": 1', b'"format_version": 99', 1)
    assert other != blob, "the header no longer spells format_version as expected: update this test"
    (tmp_path / "v99.ebm").write_bytes(other)
    with pytest.raises(CheckpointError, match="format"):
        load_checkpoint(tmp_path / "v99.ebm", state)
    RELIABILITY["faults injected"] += 2


# ------------------------------------------------------------------ the command line


CLI_BAD = [
    ["fit", "--steps", "0"], ["fit", "--steps", "ten"], ["fit", "--batch-size", "-3"], ["fit", "--lr", "-1"],
    ["fit", "--lr", "nan"], ["fit", "--alpha", "-0.5"], ["fit", "--widths", "a,b"], ["fit", "--widths", "0,4"],
    ["fit", "--dataset", "mnist"], ["fit", "--sampler", "gibs"], ["fit", "--init", "fresh"],
    ["fit", "--step-size", "0"], ["fit", "--noise-scale", "inf"], ["fit", "--seed", "-1"],
    ["sample", "--chains", "0"], ["sample", "--target", "cat"], ["sample", "--sampler", "x"],
    ["sample", "--warmup", "-1"], ["compare", "--samplers", "mala,nope", "--out", "{tmp}/c"],
    ["compare", "--checkpoint", "{tmp}/no-such-run"], ["compare", "--checkpoint", "{tmp}/broken"],
    ["sample", "--target", "gaussian", "--sampler", "mala", "--num-warmup", "10", "--num-samples", "10",
     "--out", "{tmp}/a-file/sub"],
    ["fit", "--steps", "5", "--quiet", "--out", "{tmp}/a-file"], ["frobnicate"], [],
]


def _setup_paths(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"dataset": "two_moons", "steps": 10}))
    (broken / "checkpoint.ebm").write_bytes(b"EBMPPL-CKPT garbage")


@pytest.mark.parametrize("argv", CLI_BAD, ids=lambda a: " ".join(a)[:40] or "empty")
def test_cli_user_errors_exit_2_with_one_line(argv, tmp_path, capsys):
    from ebmppl.cli import main

    _setup_paths(tmp_path)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    RELIABILITY["bad inputs tried"] += 1
    with pytest.raises(SystemExit) as exc:  # any other exception would be a traceback for the user
        main(argv)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    if exc.value.code != 2 or len(lines) != 1:
        RELIABILITY["lost"] += 1
    assert exc.value.code == 2
    assert len(lines) == 1 and lines[0].startswith("ebmppl") and "error" in lines[0], lines


@pytest.mark.parametrize("argv", [["fit", "--dataset", "mnist"], ["compare", "--checkpoint", "{tmp}/broken"]])
def test_cli_errors_in_a_real_process_have_no_traceback(argv, tmp_path):
    _setup_paths(tmp_path)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    run = subprocess.run([sys.executable, "-m", "ebmppl.cli", *argv], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "MPLBACKEND": "Agg"})
    RELIABILITY["bad inputs tried"] += 1
    lines = [ln for ln in run.stderr.splitlines() if ln.strip() and "Warning" not in ln and "warn(" not in ln]
    assert run.returncode == 2 and "Traceback" not in run.stderr and len(lines) == 1, run.stderr[-2000:]


@PROPERTY
@given(option=st.sampled_from(["--steps", "--batch-size", "--mcmc-steps", "--lr", "--alpha", "--step-size",
                               "--noise-scale", "--seed", "--widths"]),
       value=st.one_of(st.text(max_size=6), st.integers(-5, 5).map(str), st.floats().map(str)))
def test_cli_option_values_parse_or_exit_2_with_one_line(option, value, capsys):
    from ebmppl.cli import _parser

    if value.startswith("-") and not value[1:2].isdigit():  # argparse would read it as another option
        value = " " + value
    try:
        _parser().parse_args(["fit", option, value])
    except SystemExit as exc:
        RELIABILITY["bad inputs tried"] += 1
        err = capsys.readouterr().err
        assert exc.code == 2 and len(err.strip().splitlines()) == 1 and option in err, err


# ------------------------------------------------------------------ interruption


@pytest.mark.slow
def test_sigint_during_fit_leaves_a_checkpoint_that_resume_continues(tmp_path):
    """A real `ebmppl fit` process, Ctrl-C'd mid-training, then resumed: the result equals an uninterrupted run."""
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    common = ["--dataset", "eight_gaussians", "--steps", "1000", "--quiet"]
    run_dir = tmp_path / "run"
    # Ctrl-C raises KeyboardInterrupt in the child even where this test runs in a background job: a shell's
    # `cmd &` starts it with SIGINT ignored, which Python keeps, and the interrupt would be lost
    cli = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
           "sys.argv[0] = 'ebmppl'; runpy.run_module('ebmppl.cli', run_name='__main__')")
    proc = subprocess.Popen([sys.executable, "-c", cli, "fit", *common, "--out", str(run_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 240
    while not (run_dir / "checkpoint.ebm").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)  # the first periodic checkpoint (step 500) shows training is under way
    assert proc.poll() is None, "training finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    RELIABILITY["faults injected"] += 1
    assert proc.returncode == 130, err[-2000:]
    assert "--resume" in err and "Traceback" not in err
    state_meta = ebmppl.checkpoint.read_metadata(run_dir / "checkpoint.ebm")
    interrupted_at = state_meta["step"]
    assert 500 <= interrupted_at < 1000
    # resume to the end; that a resumed run equals an uninterrupted one bit for bit is
    # tests/test_fit.py::test_kill_and_resume_is_bit_identical
    resumed = subprocess.run([sys.executable, "-m", "ebmppl.cli", "fit", *common, "--out", str(run_dir), "--resume"],
                             capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    assert evaluation["steps"] == 1000 and math.isfinite(evaluation["test_log_likelihood"])
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    if len(lines) != 1000:
        RELIABILITY["lost"] += 1
    assert len(lines) == 1000 and json.loads(lines[-1])["step"] == 1000
