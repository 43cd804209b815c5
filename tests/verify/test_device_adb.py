"""`edgeclip bench BUNDLE --device adb:SERIAL`: output parsing and what it says when something is missing.

This machine has no adb and no phone. The missing-adb case runs for real. The device-not-listed,
binary-missing and full-run cases use a stand-in `adb` script (written below; it only answers the
few adb calls edgeclip makes) and a bundle whose .pte/.tflite are placeholder bytes, since only
the phone would run them. The parsers are tested on sample outputs composed from the binaries'
own log statements (sources cited at each sample).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from edgeclip.bundle import write_manifest
from edgeclip.cli import main
from edgeclip.errors import InputError, ToolchainMissing
from edgeclip.verify.device_adb import parse_benchmark_model, parse_device, parse_executor_runner

# executor_runner of executorch 1.4 (examples/portable/executor_runner/executor_runner.cpp: "Model loaded
# in %f ms.", "Iteration %u of %u: %f ms", "Model executed successfully %u time(s) in %f ms.") through the
# posix PAL (runtime/platform/default/posix.cpp: "%c %02u:%02u:%02u.%06lu executorch:%s:%zu] %s"), the
# build docs/source/backends/vulkan/tutorials/etvk-profiling-tutorial.md uses on Android; 2 warmup + 6 runs
ET_STDERR = """\
I 00:00:00.000391 executorch:executor_runner.cpp:340] Resetting threadpool with num threads = 2
I 00:00:00.001207 executorch:executor_runner.cpp:476] Model file /data/local/tmp/edgeclip/executorch-image-fp32.pte is loaded.
I 00:00:00.001219 executorch:executor_runner.cpp:486] Using method forward
I 00:00:00.001230 executorch:executor_runner.cpp:557] Setting up CPU planned buffer 0, size 1204224.
I 00:00:00.047318 executorch:executor_runner.cpp:625] Model loaded in 46.093750 ms.
I 00:00:00.091802 executorch:executor_runner.cpp:780] Iteration 1 of 8: 44.120117 ms
I 00:00:00.113190 executorch:executor_runner.cpp:780] Iteration 2 of 8: 21.302734 ms
I 00:00:00.133915 executorch:executor_runner.cpp:780] Iteration 3 of 8: 20.651855 ms
I 00:00:00.154774 executorch:executor_runner.cpp:780] Iteration 4 of 8: 20.794922 ms
I 00:00:00.175221 executorch:executor_runner.cpp:780] Iteration 5 of 8: 20.381836 ms
I 00:00:00.197330 executorch:executor_runner.cpp:780] Iteration 6 of 8: 22.041992 ms
I 00:00:00.217948 executorch:executor_runner.cpp:780] Iteration 7 of 8: 20.553955 ms
I 00:00:00.238866 executorch:executor_runner.cpp:780] Iteration 8 of 8: 20.854004 ms
I 00:00:00.238881 executorch:executor_runner.cpp:790] Model executed successfully 8 time(s) in 210.701172 ms.
I 00:00:00.238889 executorch:executor_runner.cpp:798] 1 outputs: 
OutputX 0: tensor(sizes=[1, 64], [
  0.0412331, -0.117021, 0.0254874, 0.0859511, -0.0301237, 0.162944, -0.0843262, 0.00513871, 0.0694105, -0.129902,
  ...,
])
"""
# the same runner built with the android PAL (runtime/platform/default/android.cpp) logs to logcat under
# the tag "ExecuTorch", message only; `adb logcat -d -s ExecuTorch` (threadtime format)
ET_LOGCAT = """\
--------- beginning of main
11-28 21:40:01.204  9113  9113 I ExecuTorch: Model loaded in 38.500000 ms.
11-28 21:40:01.236  9113  9113 I ExecuTorch: Iteration 1 of 3: 31.000000 ms
11-28 21:40:01.255  9113  9113 I ExecuTorch: Iteration 2 of 3: 18.000000 ms
11-28 21:40:01.275  9113  9113 I ExecuTorch: Iteration 3 of 3: 19.000000 ms
11-28 21:40:01.275  9113  9113 I ExecuTorch: Model executed successfully 3 time(s) in 68.000000 ms.
"""
# executor_runner of executorch <= 1.2 logs only the total (the line quoted in
# docs/source/using-executorch-building-from-source.md)
ET_OLD = "I 00:00:00.043703 executorch:executor_runner.cpp:379] Model executed successfully 1 time(s) in 15.013292 ms.\n"

# LiteRT benchmark_model (google-ai-edge/LiteRT tflite/tools/benchmark/benchmark_model.cc: "Running
# benchmark for at least ...", StatWithPercentiles::OutputToStream "count= first= curr= min= max= avg= std=
# p5= median= p95=", OnBenchmarkEnd "Inference timings in us: Init: ..."; benchmark_tflite_model.cc:
# "Loaded model", "Created TensorFlow Lite XNNPACK delegate for CPU."), TFLITE_LOG's "INFO: " prefix
TFL_OUT = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Min num runs: [20]
INFO: Num threads: [2]
INFO: Min warmup runs: [3]
INFO: Graph: [/data/local/tmp/edgeclip/litert-image-fp32.tflite]
INFO: Loaded model /data/local/tmp/edgeclip/litert-image-fp32.tflite
INFO: Initialized TensorFlow Lite runtime.
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: The input model file size (MB): 0.843126
INFO: Initialized session in 21.873ms.
INFO: Running benchmark for at least 3 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=41 first=19044 curr=11870 min=11602 max=19044 avg=12217.4 std=1127 p5=11655 median=11948 p95=13310

INFO: Running benchmark for at least 20 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=84 first=11921 curr=11794 min=11571 max=14208 avg=11905.2 std=402 p5=11604 median=11812 p95=12647

INFO: Inference timings in us: Init: 21873, First inference: 19044, Warmup (avg): 12217.4, Inference (avg): 11905.2
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=3.62891 overall=4.91016
"""
# a TensorFlow-era benchmark_model: plain Stat::OutputToStream, no percentiles
TFL_OLD = TFL_OUT.replace(" p5=11604 median=11812 p95=12647", "").replace(" p5=11655 median=11948 p95=13310", "")


def test_executor_runner_iterations_after_warmup():
    t = parse_executor_runner(ET_STDERR, warmup=2)
    assert t.runs == 6 and t.load_ms == pytest.approx(46.09375)
    assert t.min_ms == pytest.approx(20.381836)
    assert t.p50_ms == pytest.approx((20.651855 + 20.794922) / 2)
    assert t.p90_ms > t.p50_ms and t.p90_ms < 22.041992 + 1e-6


def test_executor_runner_logcat_and_old_runner():
    t = parse_executor_runner(ET_LOGCAT, warmup=1)
    assert t.runs == 2 and t.p50_ms == pytest.approx(18.5) and t.load_ms == pytest.approx(38.5)
    with pytest.raises(ToolchainMissing, match=r"executorch >= 1.3"):
        parse_executor_runner(ET_OLD)


def test_benchmark_model_measured_runs_not_warmup():
    t = parse_benchmark_model(TFL_OUT)
    assert t.runs == 84 and t.p50_ms == pytest.approx(11.812) and t.min_ms == pytest.approx(11.571)
    assert t.p95_ms == pytest.approx(12.647) and t.load_ms == pytest.approx(21.873) and t.p90_ms is None
    same = TFL_OUT.replace("count=84 first=11921 curr=11794 min=11571 max=14208 avg=11905.2 std=402 p5=11604 "
                           "median=11812 p95=12647", "count=1 curr=11900")
    assert parse_benchmark_model(same).p50_ms == pytest.approx(11.9)
    with pytest.raises(ToolchainMissing, match="no median"):
        parse_benchmark_model(TFL_OLD)


def test_device_argument():
    assert parse_device("adb:emulator-5554") == "emulator-5554"
    for bad in ("adb:", "usb:123", "emulator-5554"):
        with pytest.raises(InputError, match="adb:SERIAL"):
            parse_device(bad)


# --- the CLI ---------------------------------------------------------------------------------

def _tensor(name, shape, dtype):
    return [{"name": name, "shape": shape, "dtype": dtype}]


@pytest.fixture
def bundle(tmp_path) -> Path:
    """A valid manifest over placeholder .tflite/.pte bytes (only a phone would run them)."""
    d = tmp_path / "bundle"
    (d / "artifacts").mkdir(parents=True)
    arts = []
    for backend, tower, ext in (("litert", "image", ".tflite"), ("executorch", "text", ".pte")):
        f = f"artifacts/{backend}-{tower}-fp32{ext}"
        (d / f).write_bytes(os.urandom(2048))
        ins = (_tensor("pixels", [1, 3, 64, 64], "float32") if tower == "image"
               else _tensor("input_ids", [1, 32], "int32"))
        arts.append({"file": f, "backend": backend, "tower": tower, "quant": "fp32", "inputs": ins,
                     "outputs": _tensor("embedding", [1, 64], "float32"), "size_bytes": 2048, "shipped": True})
    write_manifest(d, {
        "edgeclip_version": "0",
        "model": {"recipe": "tiny", "uri": "builtin:tiny-vit", "embed_dim": 64, "logit_scale": 14.3},
        "target": {"name": "android", "platform": "android"},
        "preprocessing": {"image_size": 64, "mean": [0.5] * 3, "std": [0.5] * 3, "resize_mode": "shortest",
                          "input_layout": "NCHW", "input_dtype": "float32"},
        "tokenizer": {"type": "byte", "context_length": 32, "files": []}, "artifacts": arts,
        "bench": {"warmup": 2, "runs": 6, "threads": 2}, "versions": {}})
    return d


FAKE_ADB = '''#!{python}
# stand-in for Android's adb (none on this machine): answers the calls edgeclip makes, logs them
import json, os, sys
state = json.load(open(os.environ["FAKE_ADB_STATE"]))
with open(state["log"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
args = sys.argv[1:]
if args == ["devices"]:
    print("List of devices attached")
    for serial, st in state["devices"].items():
        print(serial + "\\t" + st)
    print()
    sys.exit(0)
assert args[0] == "-s" and args[1] in state["devices"], args
cmd = args[2:]
if cmd[0] == "push":
    assert os.path.isfile(cmd[1]), cmd
    print(cmd[1] + ": 1 file pushed, 0 skipped.")
elif cmd[0] == "shell":
    line = cmd[1]
    if line.startswith("[ -x "):
        print("present" if line.split()[2].rsplit("/", 1)[-1] in state["binaries"] else "missing")
    elif line.startswith("getprop"):
        print("Google\\nPixel 8\\nTensor G3\\nzuma\\n15\\narm64-v8a\\n9")
    elif "/executor_runner " in line:
        sys.stderr.write(state["outputs"]["executor_runner"])
    elif "/benchmark_model " in line:
        sys.stdout.write(state["outputs"]["benchmark_model"])
'''


@pytest.fixture
def fake_adb(tmp_path, monkeypatch):
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    adb = bin_dir / "adb"
    adb.write_text(FAKE_ADB.replace("{python}", sys.executable))
    adb.chmod(0o755)
    state = {"log": str(tmp_path / "adb-log.jsonl"), "devices": {"emulator-5554": "device"},
             "binaries": ["executor_runner", "benchmark_model"],
             "outputs": {"executor_runner": ET_STDERR, "benchmark_model": TFL_OUT}}

    def configure(**kw):
        state.update(kw)
        (tmp_path / "state.json").write_text(json.dumps(state))
    configure()
    monkeypatch.setenv("FAKE_ADB_STATE", str(tmp_path / "state.json"))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("EDGECLIP_ADB", raising=False)
    monkeypatch.delenv("EDGECLIP_DEVICE_BINARY_DIR", raising=False)
    return configure


def _bench(bundle, *extra):
    return main(["bench", str(bundle), "--device", "adb:emulator-5554", *extra])


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_no_adb_on_path_says_how_to_get_it(bundle, tmp_path, monkeypatch, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("EDGECLIP_ADB", raising=False)
    assert _bench(bundle) == 2
    line = _one_error_line(capsys)
    assert "adb not found on PATH" in line and "platform-tools" in line and "EDGECLIP_ADB" in line
    monkeypatch.setenv("EDGECLIP_ADB", str(tmp_path / "nope" / "adb"))
    assert _bench(bundle) == 2
    assert "EDGECLIP_ADB=" in _one_error_line(capsys)


def test_device_not_listed_or_unauthorized(bundle, fake_adb, capsys):
    fake_adb(devices={"R58M1234ABC": "device"})
    assert _bench(bundle) == 2
    line = _one_error_line(capsys)
    assert "emulator-5554 is not listed by `adb devices`" in line and "R58M1234ABC (device)" in line
    fake_adb(devices={"emulator-5554": "unauthorized"})
    assert _bench(bundle) == 2
    assert "'unauthorized'" in _one_error_line(capsys)


def test_missing_binaries_named_with_where_and_how(bundle, fake_adb, capsys):
    fake_adb(binaries=["executor_runner"])
    assert _bench(bundle) == 2
    line = _one_error_line(capsys)
    assert line.startswith("edgeclip: error: benchmark_model not found") and "in /data/local/tmp:" in line
    assert "--device-binary-dir" in line and "EDGECLIP_DEVICE_BINARY_DIR" in line
    assert "adb -s emulator-5554 push" in line
    assert _bench(bundle, "--device-binary-dir", "/data/local/tmp/bins") == 2
    assert "in /data/local/tmp/bins" in _one_error_line(capsys)


def test_full_run_writes_device_records(bundle, fake_adb, tmp_path, capsys):
    assert _bench(bundle, "--out", str(tmp_path / "dev")) == 0
    report = json.loads((tmp_path / "dev" / "report.json").read_text())
    rec = {(r["backend"], r["metric"]): r for r in report["results"]}
    assert rec[("litert", "latency_p50_ms")]["value"] == pytest.approx(11.812)
    assert rec[("litert", "latency_p50_ms")]["runner"] == "adb:emulator-5554/benchmark_model"
    assert rec[("executorch", "load_ms")]["value"] == pytest.approx(46.09375)
    assert rec[("executorch", "latency_p50_ms")]["runner"] == "adb:emulator-5554/executor_runner"
    assert report["machine"]["device"] == "adb:emulator-5554" and "Pixel 8" in report["machine"]["cpu"]
    argvs = [json.loads(x) for x in (tmp_path / "adb-log.jsonl").read_text().splitlines()]
    calls = [" ".join(x) for x in argvs]
    assert any("benchmark_model --graph=/data/local/tmp/edgeclip/litert-image-fp32.tflite --num_threads=2 "
               "--warmup_runs=2 --num_runs=6" in c for c in calls), calls
    assert any("executor_runner --model_path=/data/local/tmp/edgeclip/executorch-text-fp32.pte "
               "--num_executions=8" in c for c in calls), calls
    assert sum(x[2:3] == ["push"] for x in argvs) == 2
    printed = capsys.readouterr().out
    assert "adb:emulator-5554/benchmark_model" in printed and "Pixel 8" in printed


def test_bundle_without_pte_or_tflite_is_refused(bundle, capsys):
    manifest = json.loads((bundle / "manifest.json").read_text())
    for a in manifest["artifacts"]:
        a["shipped"] = False
    write_manifest(bundle, {k: v for k, v in manifest.items() if k not in ("files", "schema")})
    assert _bench(bundle) == 2
    assert "no shipped .pte or .tflite artifact" in _one_error_line(capsys)


def test_device_needs_a_bundle_folder(tmp_path, capsys):
    (tmp_path / "r.json").write_text("{}")
    assert main(["bench", str(tmp_path / "r.json"), "--device", "adb:x"]) == 2
    assert "is not a bundle folder" in _one_error_line(capsys)

