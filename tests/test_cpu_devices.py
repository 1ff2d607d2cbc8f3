"""`import ebmppl` gives JAX one CPU device per usable core, unless the user chose; `devices="auto"` uses them.

Each case is a fresh interpreter (the device count is fixed once JAX's backend starts).
"""

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json, jax
import ebmppl
from ebmppl.sharding import AUTO_MIN_PER_DEVICE, cpu_devices_status, resolve_mesh, usable_cores
n = len(jax.devices())
auto = {size: (None if (m := resolve_mesh("auto", size=size)) is None else m.size)
        for size in (4, 2 * AUTO_MIN_PER_DEVICE, 3 * AUTO_MIN_PER_DEVICE, 6 * AUTO_MIN_PER_DEVICE)}
print("RESULT " + json.dumps({"devices": n, "cores": usable_cores(), "status": cpu_devices_status(),
                              "auto": {str(k): v for k, v in auto.items()}}))
"""


def probe(**env_changes):
    env = {k: v for k, v in os.environ.items() if k not in ("EBMPPL_CPU_DEVICES", "XLA_FLAGS")}
    env.update({"JAX_PLATFORMS": "cpu", **env_changes})
    run = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    if run.returncode:
        return run.stderr
    return json.loads(next(ln for ln in run.stdout.splitlines() if ln.startswith("RESULT "))[len("RESULT "):])


def test_one_device_per_usable_core_by_default():
    out = probe()
    assert out["devices"] == out["cores"], out
    assert "per usable core" in out["status"]


def test_auto_uses_the_most_devices_that_split_evenly_into_large_enough_blocks():
    out = probe(EBMPPL_CPU_DEVICES="3")
    assert out["devices"] == 3 and "EBMPPL_CPU_DEVICES" in out["status"]
    # 4 rows: one device; 64: 2 devices (3 does not divide it); 96: 3 devices; 192: 3 devices
    assert out["auto"] == {"4": None, "64": 2, "96": 3, "192": 3}


def test_the_opt_out_and_the_users_own_flags_win():
    assert probe(EBMPPL_CPU_DEVICES="1")["devices"] == 1
    forced = probe(XLA_FLAGS="--xla_force_host_platform_device_count=5")
    assert forced["devices"] == 5 and "XLA_FLAGS" in forced["status"]


@pytest.mark.parametrize("value", ["abc", "0"])
def test_a_bad_device_count_is_named_at_import(value):
    err = probe(EBMPPL_CPU_DEVICES=value)
    assert isinstance(err, str), err  # the import failed ...
    assert f"EBMPPL_CPU_DEVICES={value!r}" in err, err  # ... naming the variable and its value


IGNORED = """
import warnings, jax
jax.devices()  # the backend starts before ebmppl is imported: the device count is fixed
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import ebmppl
print("RESULT", len(jax.devices()), "|", " / ".join(str(w.message) for w in caught))
"""


def test_an_explicit_request_that_cannot_be_honoured_is_said_aloud():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", EBMPPL_CPU_DEVICES="3")
    run = subprocess.run([sys.executable, "-c", IGNORED], env=env, capture_output=True, text=True, timeout=300)
    line = next(ln for ln in run.stdout.splitlines() if ln.startswith("RESULT"))
    assert line.startswith("RESULT 1 |") and "EBMPPL_CPU_DEVICES=3 ignored" in line, run.stdout + run.stderr
    # the user's own XLA_FLAGS win over the variable, and the variable's request is named as ignored
    env.update(EBMPPL_CPU_DEVICES="1", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    run = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert "EBMPPL_CPU_DEVICES=1 ignored: XLA_FLAGS" in run.stderr, run.stderr


def test_devices_arguments_are_checked_by_name():
    import jax
    import numpy as np

    from ebmppl.sharding import resolve_mesh

    assert resolve_mesh(np.int64(1)).size == 1  # a numpy integer is a count
    for bad in (True, 2.0, "gpu"):
        with pytest.raises((TypeError, ValueError), match="devices"):
            resolve_mesh(bad)
    d = jax.devices()[0]
    with pytest.raises(ValueError, match="more than once"):
        resolve_mesh([d, d])
    with pytest.raises(ValueError, match="EBMPPL_CPU_DEVICES=N"):
        resolve_mesh(len(jax.devices()) + 1)
