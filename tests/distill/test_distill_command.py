"""`edgeclip distill` under torchrun: 2 gloo ranks at global batch B follow one process at batch
B, a rank killed mid-stage resumes to the uninterrupted result, and a build afterwards reuses the
stage from the cache."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from edgeclip.cli import main

from _tiny_configs import MINI_TARGET, stage_log

STEPS = 60
RECIPE = f"""
version: 1
name: ddp
teacher: builtin:tiny-vit
seed: 0
distill:
  - method: tinyclip
    name: half
    steps: {STEPS}
    batch_size: 16
    lr: 0.001
    warmup_steps: 5
    options: {{inherit: manual, image: {{width: 32, heads: 2}}, text: {{layers: 1}}, evaluate: false}}
data:
  train: {{source: synthetic, samples: 256, languages: [en]}}
  eval:
    - {{source: synthetic, split: heldout, samples: 8, languages: [en]}}
"""


def _distill(recipe: Path, out: Path, ranks: int, wait: bool = True):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    if ranks == 1:
        cmd = [sys.executable, "-m", "edgeclip", "distill", "--recipe", str(recipe), "--out", str(out), "--device", "cpu"]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={ranks}", "--standalone",
               "-m", "edgeclip", "distill", "--recipe", str(recipe), "--out", str(out), "--device", "cpu"]
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def _record(out: Path) -> tuple[dict, Path]:
    (folder,) = [p for p in (out / ".cache").glob("distill-*") if (p / ".complete").exists()]
    return json.loads((folder / "distill.json").read_text()), folder


def _weights(folder: Path) -> dict:
    from safetensors.numpy import load_file
    return load_file(str(folder / "model.safetensors"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill-cmd")
    recipe = root / "ddp.yaml"
    recipe.write_text(textwrap.dedent(RECIPE))
    one = _distill(recipe, root / "one", 1)
    two = _distill(recipe, root / "two", 2)
    return {"root": root, "recipe": recipe, "one": one, "two": two}


@pytest.mark.slow
def test_two_ranks_follow_one_process_at_the_same_global_batch(runs):
    one, _ = _record(runs["root"] / "one")
    two, _ = _record(runs["root"] / "two")
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert one["device"] == two["device"] == "cpu" and two["precision"] == "fp32"
    assert two["samples_per_s"] > 0
    a, b = np.array(one["losses"]), np.array(two["losses"])
    assert len(a) == len(b) == STEPS
    # the same global batches, gathered features, averaged gradients: only float summation order
    # differs, and its rounding grows with the steps (measured: 1e-6 for 20 steps, 0.4% at step 55)
    np.testing.assert_allclose(b[:20], a[:20], rtol=1e-4)
    np.testing.assert_allclose(b, a, rtol=1e-2)
    assert a[-1] < a[0]  # and it learned something
    assert "2" in runs["two"].stdout.split("ranks")[1]  # rank 0's table says how many ranks trained
    for name in ("one", "two"):   # a published stage drops its resume checkpoint (weights + optimizer)
        assert not list((runs["root"] / name / ".cache").glob("ckpt-*")), name


@pytest.mark.slow
def test_a_build_afterwards_reuses_the_distilled_stage(runs, capsys):
    root = runs["root"] / "two"
    target = runs["root"] / "mini.yaml"
    target.write_text(MINI_TARGET)
    assert main(["build", "--target", str(target), "--recipe", str(runs["recipe"]), "--out", str(root / "mini")]) == 0
    capsys.readouterr()
    status = {e["stage"]: e["status"] for e in stage_log(root / "mini") if e["stage"] in ("teacher", "distill")}
    assert status == {"teacher": "cached", "distill": "cached"}


def _worker_pids(launcher: int) -> list[int]:
    """The torchrun workers: descendants of the launcher running edgeclip (torchrun starts them in
    their own sessions, so they are found by parentage)."""
    out = subprocess.run(["ps", "-o", "pid=,ppid=,args=", "-e"], capture_output=True, text=True).stdout
    rows = [ln.split(None, 2) for ln in out.splitlines() if ln.strip()]
    parent = {int(pid): int(ppid) for pid, ppid, _ in rows}
    args = {int(pid): a for pid, _, a in rows}

    def below(pid):
        while pid in parent and pid != launcher:
            pid = parent[pid]
        return pid == launcher
    return [p for p in parent if p != launcher and below(p) and "edgeclip" in args[p]
            and "torch.distributed.run" not in args[p]]


@pytest.mark.slow
def test_a_rank_killed_mid_stage_resumes_to_the_uninterrupted_result(runs):
    out = runs["root"] / "killed"
    proc = _distill(runs["recipe"], out, 2, wait=False)
    state = None
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        state = next(out.glob(".cache/ckpt-distill-*/state.pt"), None)
        if state is not None:
            break
        time.sleep(0.05)
    assert state is not None, "no checkpoint appeared: " + (proc.communicate()[1] or "")[-2000:]
    workers = _worker_pids(proc.pid)
    assert len(workers) == 2, workers
    os.kill(max(workers), signal.SIGKILL)  # one rank dies; torchrun then stops the other
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0, "the run finished before the kill landed"
    assert not any((p / ".complete").exists() for p in (out / ".cache").glob("distill-*"))
    from edgeclip.distill._state import load_state
    killed_at = load_state(state)["step"]
    assert 0 < killed_at < STEPS

    _distill(runs["recipe"], out, 2)  # the same command again: resumes from the checkpoint
    rec, folder = _record(out)
    uninterrupted = _weights(_record(runs["root"] / "two")[1])
    resumed = _weights(folder)
    assert resumed.keys() == uninterrupted.keys()
    for k in resumed:
        np.testing.assert_allclose(resumed[k], uninterrupted[k], rtol=0, atol=1e-6, err_msg=k)
    assert rec["steps"] == STEPS
    assert killed_at <= rec["resumed_at_step"] < STEPS  # it went on from the last checkpoint, not from 0
    assert _record(runs["root"] / "two")[0]["resumed_at_step"] == 0  # the uninterrupted run started afresh


def test_bad_stage_and_missing_distill_are_one_line_errors(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(textwrap.dedent(RECIPE))
    assert main(["distill", "--recipe", str(recipe), "--stage", "3", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--stage 3" in err and "1..1" in err
    plain = tmp_path / "plain.yaml"
    plain.write_text(textwrap.dedent(RECIPE.split("distill:")[0] + "data:" + RECIPE.split("data:")[1]))
    assert main(["distill", "--recipe", str(plain), "--out", str(tmp_path / "o")]) == 2
    assert "no distill stages" in capsys.readouterr().err
