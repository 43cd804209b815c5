"""Issue #12, items 2, 3 and 5 (and the skip side of item 1) on real builds of one tiny recipe:
``pretrain`` of ``builtin:tiny-vit`` on the synthetic world, evaluation on synthetic scenes plus a
CSV holding one corrupt image (``on_bad_image: skip``), the MINI target (ONNX fp32) cut to the image
tower to keep the battery within its time budget (the text tower's ONNX export is as byte-stable:
checked by hand when this battery was written; ``test_pipeline.py`` builds both towers).

Three build folders, each under its own root (so each has its own ``<root>/.cache``):

- ``a``: one uninterrupted build, in this process.
- ``d``: the same build as a ``python -m edgeclip`` child; while it holds the output folder a
  second child builds into the same folder and must be refused by the lock (item 5). The two
  finished builds ``a`` and ``d`` must agree byte for byte (item 3).
- ``c``: killed (SIGKILL) in the middle of pretraining, rerun and killed again during the ONNX
  export, then rerun to the end (item 2).

Determinism (item 3), measured here: the teacher's ``model.safetensors``, the ONNX files, the
reference outputs and the tokenizer files are byte-identical across processes; what differs between
two builds is exactly what records time, the machine or a path (``report.json``/``.md``/``.png``
with latencies, ``manifest.json`` with latencies and the hashes of those reports, ``bench.json``,
the lock file) — ``test_same_recipe_and_seed_give_byte_identical_files`` pins that list. (The
teacher's safetensors header was not: it held two metadata entries, which safetensors writes in
hash-map order, random per process; ``save_model`` now writes one.)
Threads: the children run with ``OMP_NUM_THREADS=1`` and the in-process builds under
``one_thread``: fp32 GEMM reductions depend on the thread count, so the *teacher's* bytes are only
reproducible for the same machine and thread count (the ONNX export is byte-stable either way).

A build killed mid-*training* resumes from the pretraining checkpoint (written ten times per
stage), not from step 0: ``test_killed_pretraining_left_a_checkpoint_to_resume_from``.

Covered elsewhere: ``tests/test_pipeline.py`` (``BuildLock`` refuses a second holder in-process;
a ``StageCache`` stage interrupted by an exception leaves nothing; reruns hit the cache).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from edgeclip.cli import main
from edgeclip.errors import InputError

from _reliability import (MINI_IMAGE, STAGE_DIR, kill_group, lookalikes, one_error_line,
                          one_thread, run_cli, start_cli, tqdm_step, wait_for, write_image_dataset)

pytestmark = [pytest.mark.slow, pytest.mark.toolchain]

STEPS = 30
KILL_AT = STEPS // 5  # well inside training, past where a periodic checkpoint would be
RECIPE = f"""
version: 1
name: rel
teacher: builtin:tiny-vit
seed: 0
pretrain: {{steps: {STEPS}, batch_size: 8, warmup_steps: 2}}
data:
  train: {{source: synthetic, samples: 16}}
  eval:
    - {{source: synthetic, split: heldout, samples: 8}}
    - {{source: csv, path: 'CSV', on_bad_image: skip}}
quantization:
  calibration_samples: 2
"""


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("rel-inputs")
    csv = write_image_dataset(d / "eval", "csv")
    recipe = d / "rel.yaml"
    recipe.write_text(textwrap.dedent(RECIPE).replace("CSV", str(csv)))
    (d / "mini.yaml").write_text(MINI_IMAGE)
    return SimpleNamespace(recipe=recipe, target=d / "mini.yaml", csv=csv)


def _args(inputs, out: Path) -> list[str]:
    return ["build", "--target", str(inputs.target), "--recipe", str(inputs.recipe), "--out", str(out)]


def _log(out: Path) -> list[dict]:
    p = out / "stage-log.jsonl"
    return [json.loads(x) for x in p.read_text().splitlines() if x.strip()] if p.exists() else []


def _stage(root: Path, stage: str) -> Path:
    """The one finished folder of ``stage`` in ``root/.cache``."""
    found = [p for p in (root / ".cache").iterdir() if p.name.startswith(f"{stage}-") and STAGE_DIR.match(p.name)]
    assert len(found) == 1, found
    return found[0]


def _tmp(root: Path, stage: str = "") -> list[Path]:
    return sorted(p for p in root.rglob(f".tmp-{stage}*"))


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def build_a(inputs, tmp_path_factory):
    root = tmp_path_factory.mktemp("a")
    with one_thread():
        assert main(_args(inputs, root / "out")) == 0
    return root / "out"


@pytest.fixture(scope="module")
def lock_race(inputs, tmp_path_factory):
    """``first`` builds into ``out``; once it holds the lock, ``second`` tries the same folder."""
    root = tmp_path_factory.mktemp("d")
    out, err = root / "out", root / "first.stderr"
    first = start_cli(*_args(inputs, out), stderr_path=err)
    try:
        lock = out / ".edgeclip.lock"
        wait_for(lambda: lock.is_file() and lock.read_text().strip() == str(first.pid),
                 "the first build to hold the lock", proc=first, log=err)
        second = run_cli(*_args(inputs, out), timeout=240)
        first_running = first.poll() is None
        rc = first.wait(timeout=600)
    finally:
        if first.poll() is None:
            kill_group(first)
    return SimpleNamespace(out=out, second=second, first_rc=rc, first_err=err.read_text(errors="replace"),
                           first_running_when_refused=first_running)


@pytest.fixture(scope="module")
def interrupted(inputs, tmp_path_factory):
    """Kill during pretraining, rerun and kill during export, rerun to the end; what each step left."""
    root = tmp_path_factory.mktemp("c")
    out, obs = root / "out", SimpleNamespace()
    args = _args(inputs, out)

    err1 = root / "run1.stderr"
    p1 = start_cli(*args, stderr_path=err1)
    try:
        wait_for(lambda: tqdm_step(err1.read_text(errors="replace"), "pretrain") >= KILL_AT,
                 f"pretraining to pass step {KILL_AT}", proc=p1, log=err1)
    finally:
        kill_group(p1)
    obs.kill1_lookalikes = lookalikes(root, out, allow_tmp=True)
    obs.kill1_teacher_done = any(p.name.startswith("teacher-") for p in (root / ".cache").iterdir())
    obs.kill1_teacher_tmp = _tmp(root, "teacher")
    obs.kill1_log = _log(out)
    state = next((root / ".cache").glob("ckpt-teacher-*/state.pt"), None)
    if state is not None:
        import torch
        obs.kill1_checkpoint_step = int(torch.load(state, weights_only=True)["step"])
    else:
        obs.kill1_checkpoint_step = None

    err2 = root / "run2.stderr"
    p2 = start_cli(*args, stderr_path=err2)
    try:
        wait_for(lambda: bool(_tmp(root / ".cache", "export")), "the ONNX export to start", proc=p2, log=err2)
    finally:
        kill_group(p2)
    obs.kill2_lookalikes = lookalikes(root, out, allow_tmp=True)
    obs.kill2_export_tmp = _tmp(root / ".cache", "export")
    obs.kill2_log = _log(out)

    with one_thread():
        obs.rerun_rc = main(args)
    obs.rerun_log = _log(out)[len(obs.kill2_log):]
    obs.after_tmp = _tmp(root)
    obs.root, obs.out = root, out
    return obs


# ---------------------------------------------------------------- item 1: skipped and counted

def test_corrupt_eval_image_is_skipped_and_counted(build_a):
    from edgeclip.bundle import load_manifest
    manifest = load_manifest(build_a)
    counts = manifest["reference"]["counts"]
    assert counts["skipped_images"] == 1
    assert counts["images"] == 8 + 2          # 8 synthetic + the 2 good CSV rows
    info = json.loads((build_a / "reference" / "reference.json").read_text())
    (group, skipped), = info["skipped"].items()
    assert group.startswith("csv:") and skipped["skipped"] == 1 and "bad.jpg" in skipped["first"][0]


# ---------------------------------------------------------------- item 3: determinism, hashes

def test_same_recipe_and_seed_give_byte_identical_files(build_a, lock_race):
    out_d = lock_race.out
    assert lock_race.first_rc == 0, lock_race.first_err[-3000:]
    teacher_a, teacher_d = (_stage(o.parent, "teacher") / "model.safetensors" for o in (build_a, out_d))
    assert teacher_a.read_bytes() == teacher_d.read_bytes(), "teacher weights differ between two identical builds"
    ma, md = (json.loads((o / "manifest.json").read_text()) for o in (build_a, out_d))
    onnx = [a["file"] for a in ma["artifacts"]]
    assert sorted(onnx) == sorted(a["file"] for a in md["artifacts"]) and onnx
    for f in onnx:
        assert (build_a / f).read_bytes() == (out_d / f).read_bytes(), f"{f} differs between two identical builds"
    assert {a["file"]: a["sha256"] for a in ma["artifacts"]} == {a["file"]: a["sha256"] for a in md["artifacts"]}
    # every other bundle file is identical too, except those that record time or the machine
    assert ma["files"].keys() == md["files"].keys()
    differ = {f for f in ma["files"] if ma["files"][f] != md["files"][f]}
    assert differ <= {"report.json", "report.md", "report.png"}, differ
    assert any(f.startswith("reference/") for f in ma["files"]) and any(f.startswith("tokenizer/") for f in ma["files"])


def test_manifest_records_the_sha256_of_every_file(build_a, tmp_path):
    from edgeclip.bundle import load_manifest
    manifest = json.loads((build_a / "manifest.json").read_text())
    on_disk = {}
    for p in build_a.rglob("*"):
        rel = p.relative_to(build_a)
        if p.is_file() and rel.parts[0] != ".cache" and rel.name not in ("manifest.json", ".edgeclip.lock",
                                                                         "stage-log.jsonl"):
            on_disk[str(rel)] = _sha(p)
    assert manifest["files"] == on_disk
    for a in manifest["artifacts"]:
        assert a["sha256"] == _sha(build_a / a["file"])
    # and the check that reads them catches a flipped byte
    copy = tmp_path / "copy"
    shutil.copytree(build_a, copy, ignore=shutil.ignore_patterns(".cache"))
    art = copy / manifest["artifacts"][0]["file"]
    data = bytearray(art.read_bytes())
    data[len(data) // 2] ^= 0xFF
    art.write_bytes(bytes(data))
    with pytest.raises(InputError, match="does not match its sha256"):
        load_manifest(copy)


# ---------------------------------------------------------------- item 5: one build per folder

def test_second_build_into_the_same_folder_is_refused(lock_race):
    assert lock_race.first_running_when_refused, "the first build ended before the second tried: no race tested"
    assert lock_race.second.returncode == 2, lock_race.second.stderr
    line = one_error_line(lock_race.second.stderr)
    assert "another edgeclip build is writing to" in line and str(lock_race.out) in line
    assert "wait for it to finish or choose another --out" in line


def test_first_build_finishes_intact(lock_race):
    from edgeclip.bundle import load_manifest
    assert lock_race.first_rc == 0, lock_race.first_err[-3000:]
    manifest = load_manifest(lock_race.out)          # schema + every file's sha256
    assert {a["tower"] for a in manifest["artifacts"] if a["shipped"]} == {"image"}
    log = _log(lock_race.out)
    # one build's stages, each run once: nothing from the refused build, nothing interleaved
    assert [e["status"] for e in log] == ["ran"] * len(log)
    assert sorted(e["stage"] for e in log) == sorted(["teacher", "reference", "export", "verify", "bench", "rounds"])
    assert len({(e["stage"], e["key"]) for e in log}) == len(log)


# ---------------------------------------------------------------- item 2: interruption, resume

def test_kill_during_training_leaves_nothing_complete(interrupted):
    assert not interrupted.kill1_teacher_done, "pretraining finished before the kill: raise STEPS"
    assert interrupted.kill1_teacher_tmp, "the kill did not land inside the teacher stage"
    assert interrupted.kill1_lookalikes == []
    assert interrupted.kill1_log == []


def test_kill_during_export_leaves_nothing_complete(interrupted):
    assert interrupted.kill2_export_tmp, "the kill did not land inside the export stage"
    assert interrupted.kill2_lookalikes == []
    done = {(e["stage"], e["status"]) for e in interrupted.kill2_log}
    assert done == {("teacher", "ran"), ("reference", "ran")}, interrupted.kill2_log


def test_rerun_resumes_from_the_last_finished_stage(interrupted):
    assert interrupted.rerun_rc == 0
    status = [(e["stage"], e["status"]) for e in interrupted.rerun_log]
    assert status[:2] == [("teacher", "cached"), ("reference", "cached")], status
    assert ("export", "ran") in status and ("teacher", "ran") not in status and ("reference", "ran") not in status
    # the temporary folders the killed builds left were removed by the reruns
    assert interrupted.after_tmp == []
    assert lookalikes(interrupted.root) == []


def test_resumed_build_equals_an_uninterrupted_one(interrupted, build_a):
    from edgeclip.bundle import load_manifest
    teacher_c, teacher_a = (_stage(r, "teacher") / "model.safetensors" for r in (interrupted.root, build_a.parent))
    assert teacher_c.read_bytes() == teacher_a.read_bytes()
    mc, ma = load_manifest(interrupted.out), load_manifest(build_a)
    image = [a["sha256"] for m in (mc, ma) for a in m["artifacts"] if a["tower"] == "image"]
    assert len(image) == 2 and image[0] == image[1]


def test_killed_pretraining_left_a_checkpoint_to_resume_from(interrupted):
    assert interrupted.kill1_checkpoint_step is not None and interrupted.kill1_checkpoint_step > 0


def test_kill_while_the_bundle_is_rewritten_leaves_no_stale_manifest(inputs, build_a, tmp_path, monkeypatch,
                                                                     capsys):
    """A rebuild rewrites the bundle in place. Interrupted before its new manifest is written
    (Ctrl-C here: exit 130), the folder must not keep the old manifest vouching for new files."""
    import edgeclip.bundle.manifest
    root = tmp_path / "copy"
    shutil.copytree(build_a.parent, root)
    out = root / build_a.name
    assert (out / "manifest.json").is_file()
    before = len(_log(out))

    def interrupted_write(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(edgeclip.bundle.manifest, "write_manifest", interrupted_write)
    with one_thread():
        rc = main(_args(inputs, out))
    assert rc == 130 and "edgeclip: interrupted" in capsys.readouterr().err
    assert not (out / "manifest.json").exists()
    assert [e["status"] for e in _log(out)[before:]] == ["cached"] * 6  # only the bundle stage ran
