"""Run the benchmark suite and write its tables into the docs (``docs/benchmarks/performance.md``).

Each benchmark is a plain script that writes ``benchmarks/results/<name>.json``;
this runs them one after another (so they do not compete for the cores),
then renders every table from the JSON files.

Usage::

    pip install -e ".[bench]"           # PyTorch (CPU) for the comparison
    python benchmarks/run_all.py         # all: about 10 minutes on 2 CPU cores
    python benchmarks/run_all.py --table-only
    python benchmarks/run_all.py --with-objectives   # also bench_objectives.py (~3 minutes more)

On a GPU/TPU, ``python benchmarks/run_gpu.py`` runs the same suite and writes
``docs/benchmarks/performance_gpu.md`` with this file's :func:`render`.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE / "results"
DOC = HERE.parent / "docs" / "benchmarks" / "performance.md"
SCRIPTS = ["bench_cd_steps.py", "bench_sampling.py", "bench_sharding.py", "bench_core_contention.py"]
LAX = "ebmppl (conv_impl='lax')"


def load(name: str, results: pathlib.Path = RESULTS) -> dict | None:
    path = pathlib.Path(results) / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def fmt(x: float, digits: int = 2) -> str:
    return f"{x:,.{digits}f}"


def _peaks(res: dict) -> str:
    text = (f"float32 matmul peak measured in every round beside the contenders: "
            f"**{fmt(res['matmul_peak_gflops'], 0)} GFLOP/s** (median; fractions are per-round ratios)")
    if res.get("matmul_peak_gflops_bf16"):
        text += f", bfloat16: **{fmt(res['matmul_peak_gflops_bf16'], 0)} GFLOP/s**"
    return text


def _torch_line(res: dict) -> str:
    infos = {name: row["torch"] for name, row in res["contenders"].items() if "torch" in row}
    if not infos:
        return ""
    info = next(iter(infos.values()))
    where = f"{info.get('threads', '?')} threads" if info.get("device") == "cpu" else info.get("name", "GPU")
    return (f" PyTorch {info.get('torch', '')} on {info.get('device', '?')} ({where}); "
            "`torch.compile` wraps the model (default inductor backend) where it works.")


def cd_table(res: dict, title: str) -> list[str]:
    n = res.get("ebmppl_devices", 1)
    lines = [f"## {title}", "",
             f"{res['steps']} steps per timed run, {res['repeats']} interleaved rounds (speeds: medians; "
             "ratios: median of the per-round ratios); "
             f"{res['flops_per_step'] / 1e9:.2f} GFLOP per CD step (XLA's count); {_peaks(res)}. "
             f"`ebmppl` is `fit` with its default devices ({n} device{'s' if n > 1 else ''}); the pure-JAX loop runs "
             "on one device." + _torch_line(res), "",
             "| implementation | devices | CD steps / s | ebmppl is × faster (quartiles over rounds) | "
             "achieved GFLOP/s | fraction of matmul peak |",
             "|---|---|---|---|---|---|"]
    for name, row in res["contenders"].items():
        sp = row["speedup_of_ebmppl"]
        spread = "" if name == "ebmppl" else f" ({fmt(sp['q1'])}–{fmt(sp['q3'])})"
        devices = row.get("devices", 1 if name == "pure JAX" else "")
        if "torch" in row:
            t = row["torch"]
            devices = f"{t.get('threads', '?')} threads" if t.get("device") == "cpu" else f"1 {t.get('device', '')}"
        lines.append(f"| {name} | {devices} | {fmt(row['steps_per_s'])} | {fmt(sp['median'])}{spread} | "
                     f"{fmt(row['gflops'], 1)} | {row['fraction_of_matmul_peak'] * 100:.1f} % |")
    return lines + [""]


def sharding_section(sh: dict) -> list[str]:
    forced = sh.get("device", {}).get("platform", "cpu") == "cpu"
    how = ("on CPU: `XLA_FLAGS=--xla_force_host_platform_device_count=N`, one device per core" if forced
           else sh.get("device", {}).get("device_kind", "accelerators"))
    if "sampling" not in sh:  # the earlier layout: ratios of medians
        return ["## Sharding across devices", "",
                f"{sh['devices']} devices ({how}). MALA, {sh['chains']} chains × {sh['draws']} draws, MLP energy "
                f"d = 16: sampling **{fmt(sh['sampling_speedup'])}×** faster on {sh['devices']} devices than on one, "
                f"draws identical: {sh['draws_identical']}. CD training (two moons, batch 256, K = 20): "
                f"**{fmt(sh['fit_speedup'])}×**.", ""]
    s = sh["sampling"]
    sp = s["speedup"]
    lines = ["## Sharding across devices", "",
             f"{sh['devices']} devices ({how}) against one, {sh['repeats']} interleaved rounds; speed-ups are the "
             "median (quartiles) of the per-round ratios.", "",
             "| workload | batch / chains | per device | one device | all devices | speed-up | |",
             "|---|---|---|---|---|---|---|",
             f"| sampling: MALA, MLP energy d = 16, {s['draws']} draws | {s['chains']} | "
             f"{s['chains'] // sh['devices']} | "
             f"{fmt(s['seconds']['1'], 3)} s | {fmt(s['seconds']['all'], 3)} s | **{fmt(sp['median'])}×** "
             f"({fmt(sp['q1'])}–{fmt(sp['q3'])}) | draws identical: {s['draws_identical']} |"]
    for f in sh["fit"].values():
        fs = f["speedup"]
        lines.append(f"| CD training: two moons MLP, K = 20, {f['steps']} steps | {f['batch']} | "
                     f"{f['per_device_batch']} | {fmt(f['steps_per_s']['1'], 1)} steps/s | "
                     f"{fmt(f['steps_per_s']['all'], 1)} steps/s | **{fmt(fs['median'])}×** "
                     f"({fmt(fs['q1'])}–{fmt(fs['q3'])}) | |")
    return lines + [""]


def contention_section(cc: dict) -> list[str]:
    """The ceiling of sharding on this machine: independent single-core processes (bench_core_contention.py)."""
    names = {"mala": "MALA, MLP energy d = 16, 1024 chains × 200 per share",
             "conv_score": "ConvNet score (Langevin), 64 images × 100 steps per share"}
    lines = ["## What two busy cores give (the ceiling of sharding here)", "",
             "The same program as one core's share, timed alone on one core (no intra-op threads) and as two "
             "processes at once on two cores; twice the work sharded over 2 XLA devices (ebmppl's default) and on "
             "one device with XLA's intra-op threads. Sharding cannot beat two independent processes: "
             "*one device ÷ two processes* is the largest speed-up over one device any sharding can show on this "
             "machine.", "",
             "| workload | one core alone | two processes at once | sharded, 2 devices | one device (threaded) | "
             "cores slow each other | sharded ÷ two processes | best possible speed-up over one device | "
             "sharded speed-up |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key, w in cc["workloads"].items():
        pair = max(w["pair_s"])
        lines.append(f"| {names.get(key, key)} | {fmt(w['solo_s'], 3)} s | {fmt(pair, 3)} s | "
                     f"{fmt(w['sharded_s'], 3)} s | {fmt(w['one_device_s'], 3)} s | {fmt(w['contention'])}× | "
                     f"{fmt(w['sharded_over_ceiling'])} | **{fmt(w['best_possible_speedup_over_one_device'])}×** | "
                     f"{fmt(w['sharded_speedup_over_one_device'])}× |")
    return lines + [""]


def render(results: pathlib.Path = RESULTS, title: str = "Performance", command: str = "python benchmarks/run_all.py",
           source: str = "benchmarks/results/*.json") -> str:
    """The Markdown page of every table found in ``results`` (one JSON file per benchmark)."""
    m = None
    load_ = lambda name: load(name, results)  # noqa: E731
    out = [f"# {title}", "",
           f"Generated by `{command}` from `{source}`. Every figure is measured "
           "side by side with its reference in the same run on the same machine (ratios, not absolute times).", ""]
    tiny = [load_(n) or {} for n in ("cd_steps_mlp", "sampling")]
    if any(r.get("smoke") or r.get("steps", 99) < 10 for r in tiny):
        out += ["**Smoke run** (tiny sizes, one round): it checks the pipeline; the sizes in the captions and every "
                "figure below do not apply.", ""]
    head = load_("cd_steps_mlp") or load_("cd_steps_conv")
    if head and head.get("device", {}).get("platform", "cpu") != "cpu":
        d = head["device"]
        out += [f"Device: **{d['device_kind']}** ({d['devices']} × {d['platform']}), JAX {d['jax']}; "
                f"{_peaks(head)}. Both frameworks at their default float32 precision (XLA may use TF32 for "
                "float32 matrix products on GPUs that have it; PyTorch keeps float32 for matrix products and "
                "allows TF32 in cuDNN convolutions).", ""]
    for model, title_ in (("mlp", "CD training, MLP energy (two moons, 2-128-128-128-1, batch 128, K = 20, "
                                  "replay buffer)"),
                          ("conv", "CD training, ConvNet energy (8x8 digits, ConvEnergy width 32, batch 128, K = 20, "
                                   "replay buffer)")):
        res = load_(f"cd_steps_{model}")
        if res:
            m = res["machine"]
            out += cd_table(res, title_)
    conv = load_("cd_steps_conv")
    if conv and LAX in conv["contenders"]:
        c = conv["contenders"]
        out += ["The ConvNet row `ebmppl (conv_impl='lax')` is the same model through XLA's convolution; "
                "`ebmppl` uses `conv_impl=\"auto\"`, which on CPU lowers each 3x3 convolution to one im2col "
                f"matrix product (`ebmppl.nn.conv2d`): **{fmt(c[LAX]['speedup_of_ebmppl']['median'], 1)}×** "
                "faster here. On accelerators `auto` keeps XLA's convolution. The pure-JAX reference for the ConvNet "
                "uses `lax.conv_general_dilated`, as a JAX user would write it.", ""]
    s = load_("sampling")
    if s:
        m = m or s["machine"]
        out += ["## Samplers against raw loops", "",
                "Fixed kernel parameters, 64 chains × 2000 draws, 10-D correlated Gaussian; `ebmppl.sample` (default "
                "devices) vs `jit(scan(vmap(blackjax kernel)))`.", "",
                "| sampler | ebmppl chain-steps / s | raw BlackJAX chain-steps / s | ebmppl / raw (quartiles) |", "|---|---|---|---|"]
        for name, row in s["against_raw_loops"].items():
            out.append(f"| {name} | {fmt(row['ebmppl']['chain_steps_per_s'], 0)} | "
                       f"{fmt(row['raw BlackJAX']['chain_steps_per_s'], 0)} | {fmt(row['ratio_ebmppl_over_raw'])}"
                       + (" ({}–{})".format(*map(fmt, row["ratio_quartiles"])) if "ratio_quartiles" in row else "")
                       + " |")
        out += ["", "## NUTS: ebmppl vs NumPyro", "",
                "Same 10-D target, 4 chains, 500 warm-up + 1000 draws. ESS per gradient is the hardware-free "
                "measure; NumPyro's `MCMC.run` traces and compiles again on every call, and its wall time "
                "includes that.", "",
                "| sampler | min bulk ESS | gradient evaluations | ESS per 1000 gradients | wall time (s) |",
                "|---|---|---|---|---|"]
        for name, row in s["nuts_vs_numpyro"].items():
            out.append(f"| {name} | {fmt(row['min_bulk_ess'], 0)} | {fmt(row['grad_evals_sampling'], 0)} | "
                       f"{fmt(row['ess_per_1000_grads'], 1)} | {fmt(row['wall_s'])} |")
        sc = s["scaling"]
        out += ["", "## Scaling", "", "MALA on an MLP energy (128-128), 200 draws, one device; compile time apart; "
                "memory is what XLA plans for the compiled program (arguments + outputs + temporaries).", "",
                "| chains (d = 16) | chain-steps / s | compile (s) | memory (MiB) |", "|---|---|---|---|"]
        for row in sc["chains"]:
            out.append(f"| {row['chains']} | {fmt(row['chain_steps_per_s'], 0)} | {fmt(row['compile_s'])} | "
                       f"{row['memory_bytes'] / 2**20:.2f} |")
        out += ["", "| dimension (256 chains) | chain-steps / s | compile (s) | memory (MiB) |", "|---|---|---|---|"]
        for row in sc["dimension"]:
            out.append(f"| {row['dim']} | {fmt(row['chain_steps_per_s'], 0)} | {fmt(row['compile_s'])} | "
                       f"{row['memory_bytes'] / 2**20:.2f} |")
        out += ["", "| K (CD, MLP recipe, `fit` default devices) | CD steps / s | compile (s) |", "|---|---|---|"]
        for row in sc["K"]:
            out.append(f"| {row['K']} | {fmt(row['cd_steps_per_s'], 1)} | {fmt(row['compile_s'])} |")
        out.append("")
    sh = load_("sharding")
    if sh:
        out += sharding_section(sh)
    cc = load_("core_contention")
    if cc and cc.get("workloads"):
        out += contention_section(cc)
    if m:
        out += [f"Machine: {m['cpu_count']} CPU cores ({m['machine']}), backend `{m['backend']}` "
                f"({m.get('device_kind', m['backend'])}, {m['devices']} device{'s' if m['devices'] > 1 else ''}), "
                f"JAX {m['jax']}, Python {m['python']}.", ""]
    return "\n".join(out)


def write_atomic(path: pathlib.Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--with-objectives", action="store_true")
    args = parser.parse_args()
    if not args.table_only:
        for script in SCRIPTS + (["bench_objectives.py"] if args.with_objectives else []):
            print(f"== {script}", flush=True)
            code = subprocess.run([sys.executable, str(HERE / script)], cwd=HERE).returncode
            if code:
                print(f"{script} failed with exit status {code}", file=sys.stderr)
                return code
    write_atomic(DOC, render())
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
