"""Two processes under ``jax.distributed`` on this machine against one process.

Every run is ``tests/scripts/distributed_fit.py``: a CD fit of an MLP energy on
two moons (batch 64, 40 steps, replay buffer, ``devices="all"``), then 8 MALA
chains on the banana with a fixed step (``sample(devices="all")``). The
two-process runs use gloo CPU collectives, one CPU device per process
(``EBMPPL_CPU_DEVICES=1``), and a checkpoint folder per process
(``<ckpt>/p0``, ``<ckpt>/p1``: hosts without a shared filesystem).

Tolerances. The two processes and one process on two forced devices compute the
same sharded program, and an all-reduce over two shards is one (commutative)
addition: the same bits are expected and checked. One process on one device
sums the batch gradient in another order. float32 addition is not
associative, so parameters may differ by a few ulps per step, carried through
40 Adam steps and the persistent chains: measured ≤ 1e-7 absolute (parameters
of size ≤ 1); the test allows 1e-5. Draws with a fixed step are the same bits (every chain's key is split
from one key on the full chain axis). A killed and resumed run draws its
batches and keys from the checkpointed state, so it is bit-identical to the
uninterrupted one.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import SUITE_XLA_FLAGS
from ebmppl.checkpoint import CheckpointError, read_metadata

pytestmark = pytest.mark.slow  # ≈ 7 process starts: over a minute on 2 cores

SCRIPT = pathlib.Path(__file__).parent / "scripts" / "distributed_fit.py"
STEPS = 40
TIMEOUT = 240  # per run; a hung collective fails the test instead of the suite
PARAM_ATOL = 1e-5


def _env(devices: int, cache: pathlib.Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", EBMPPL_CPU_DEVICES=str(devices), PYTHONUNBUFFERED="1",
               XLA_FLAGS=SUITE_XLA_FLAGS,  # no forced device count; the suite's compile flags
               # later runs load the programs the first ones compiled: a run's cost is then mostly its import
               JAX_COMPILATION_CACHE_DIR=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launch(out: pathlib.Path, nproc: int, *extra: str, devices: int = 1) -> list[subprocess.Popen]:
    out.mkdir(parents=True, exist_ok=True)
    cache = out.parent / "compilation-cache"
    port, procs = _free_port(), []
    for pid in range(nproc):
        log = open(out / f"log_p{pid}.txt", "w")  # noqa: SIM115 (closed with the process)
        procs.append(subprocess.Popen(
            [sys.executable, str(SCRIPT), str(out), "--nproc", str(nproc), "--pid", str(pid), "--port", str(port),
             "--steps", str(STEPS), *extra],
            env=_env(devices, cache), stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        log.close()
    return procs


def _kill(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    for p in procs:
        p.wait(timeout=30)


def _finish(procs: list[subprocess.Popen], out: pathlib.Path) -> list[dict[str, np.ndarray]]:
    deadline = time.monotonic() + TIMEOUT
    try:
        for p in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        _kill(procs)
    logs = "\n".join((out / f"log_p{i}.txt").read_text()[-3000:] for i in range(len(procs)))
    assert all(p.returncode == 0 for p in procs), f"a process failed:\n{logs}"
    results = []
    for i in range(len(procs)):
        with np.load(out / f"result_p{i}.npz") as f:
            r = {k: f[k] for k in f.files}
        r["info"] = json.loads(str(r["info"]))
        results.append(r)
    return results


def _params(result: dict, prefix: str = "") -> list[np.ndarray]:
    return [result[k] for k in sorted(result) if k.startswith(prefix + "param_")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted two-process run and one process on two forced devices (also fitting on one), side by side."""
    root = tmp_path_factory.mktemp("distributed")
    two = _launch(root / "two", 2, "--ckpt", str(root / "two" / "ckpt"))
    one = _launch(root / "one", 1, "--one-device-too", devices=2)
    try:
        return {"two": _finish(two, root / "two"), "one": _finish(one, root / "one")[0], "root": root}
    finally:
        _kill(two + one)


def test_two_processes_fit_like_one(reference):
    p0, p1 = reference["two"]
    one = reference["one"]
    assert p0["info"]["devices"] == 2 and p0["info"]["local_devices"] == 1
    assert one["info"]["devices"] == 2 and one["info"]["local_devices"] == 2
    for a, b in zip(_params(p0), _params(p1), strict=True):  # replicated: the same bits on both processes
        np.testing.assert_array_equal(a, b)
    # the same sharded program: an all-reduce over two shards is one addition, whatever its order
    for a, b in zip(_params(p0), _params(one), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(p0["loss"], one["loss"])
    # one device sums the batch in another order: float32 rounding only
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(_params(p0), _params(one, "one_"), strict=True))
    assert diff <= PARAM_ATOL, f"2 processes vs 1 process on 1 device: parameters differ by {diff:.3g}"
    np.testing.assert_array_equal(p0["step"], np.arange(1, STEPS + 1))


def test_device_count_spans_every_process(reference):
    for p in reference["two"]:  # devices=2 under 2 processes: one device of each; a mesh missing one: an error
        assert p["info"]["mesh_processes"] == [0, 1]
        assert len(p["info"]["mesh_errors"]) == 2 and all("process" in e for e in p["info"]["mesh_errors"])
    assert reference["one"]["info"]["mesh_processes"] == [0]


def test_exactly_one_checkpoint_writer(reference):
    p0, p1 = reference["two"]
    ckpt = reference["root"] / "two" / "ckpt"
    assert p1["info"]["writes"] == [], p1["info"]["writes"]
    assert not (ckpt / "p1").exists()
    assert p0["info"]["writes"] and all(str(ckpt / "p0") in w for w in p0["info"]["writes"])
    assert read_metadata(ckpt / "p0" / "checkpoint.ebm")["step"] == STEPS


def test_two_processes_sample_like_one(reference):
    p0, p1 = reference["two"]
    np.testing.assert_array_equal(p0["draws"], reference["one"]["draws"])
    np.testing.assert_array_equal(p0["draws"], p1["draws"])


def test_kill_and_resume_two_processes(reference):
    root = reference["root"]  # beside the reference runs: the same compilation cache
    ckpt = root / "kill-ckpt"
    path = ckpt / "p0" / "checkpoint.ebm"
    procs = _launch(root / "killed", 2, "--ckpt", str(ckpt), "--no-sample", "--sleep", "1.5")
    try:  # SIGKILL both as soon as a checkpoint short of the end is on disk
        deadline, step = time.monotonic() + TIMEOUT, None
        while time.monotonic() < deadline and all(p.poll() is None for p in procs):
            try:
                step = read_metadata(path)["step"]
                break
            except CheckpointError:  # not written yet
                time.sleep(0.05)
    finally:
        _kill(procs)
    assert step is not None and 0 < step < STEPS, f"no checkpoint short of the end to resume from (step {step})"
    assert not (ckpt / "p1").exists()

    resumed = _finish(_launch(root / "resumed", 2, "--ckpt", str(ckpt), "--no-sample", "--resume"), root / "resumed")
    uninterrupted = reference["two"][0]
    for r in resumed:  # process 1 has no checkpoint on its disk: it got process 0's state by broadcast
        for a, b in zip(_params(r), _params(uninterrupted), strict=True):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(r["loss"], uninterrupted["loss"])
    assert resumed[1]["info"]["writes"] == [] and not (ckpt / "p1").exists()
    assert read_metadata(path)["step"] == STEPS
