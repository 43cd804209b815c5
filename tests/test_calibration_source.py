"""Static quantization calibrates on the recipe's data: a folder of real photos is used, recorded in
the report and changes the int8 artifact; too few readable images and evaluation data are refused."""
from __future__ import annotations

import hashlib
import json
import textwrap

import numpy as np
import pytest

from edgeclip.cli import main
from edgeclip.config import load_recipe
from edgeclip.errors import ConfigError

INT8_IMAGE = """
version: 1
name: int8
platform: web
towers: [image]
backends:
  - backend: onnx
    quant: [int8-static]
thresholds: {cosine_mean: 0.5, cosine_min: 0.0, psnr_db: 0.0, top1_agreement: 0.0, r1_agreement: 0.0}
"""


def _recipe(calibration: str = "") -> str:
    return textwrap.dedent("""
    version: 1
    name: calib
    teacher: builtin:tiny-vit
    data:
      eval:
        - {source: synthetic, split: heldout, samples: 8, languages: [en]}
    quantization:
      calibration_samples: 6
    """) + calibration  # indented under quantization:


def _photo_folder(path, names=("astronaut", "chelsea", "coffee", "rocket", "camera", "horse")):
    import skimage.data
    from PIL import Image
    path.mkdir()
    rows = []
    for n in names:
        img = np.asarray(getattr(skimage.data, n)())
        if img.ndim == 2:
            img = np.stack([img] * 3, -1)
        Image.fromarray(img.astype(np.uint8)[..., :3]).save(path / f"{n}.png")
        rows.append(f"{n}.png\ta photo of a {n}")
    (path / "captions.tsv").write_text("\n".join(rows) + "\n")
    return path


def _build(tmp_path, name: str, recipe_text: str, capsys) -> tuple[int, str]:
    (tmp_path / f"{name}.yaml").write_text(recipe_text)
    (tmp_path / "t.yaml").write_text(INT8_IMAGE)
    rc = main(["build", "--target", str(tmp_path / "t.yaml"), "--recipe", str(tmp_path / f"{name}.yaml"),
               "--out", str(tmp_path / name / "out")])
    cap = capsys.readouterr()
    return rc, cap.out + cap.err


def _artifact_sha(out) -> str:
    (a,) = [a for a in json.loads((out / "manifest.json").read_text())["artifacts"] if a["shipped"]]
    return hashlib.sha256((out / a["file"]).read_bytes()).hexdigest()


@pytest.mark.slow
@pytest.mark.toolchain
def test_a_folder_of_photos_calibrates_is_recorded_and_changes_the_artifact(tmp_path, capsys):
    photos = _photo_folder(tmp_path / "photos")
    rc, log = _build(tmp_path, "photos", _recipe(f"  calibration: {{source: folder, path: {photos}}}\n"), capsys)
    assert rc == 0, log
    out = tmp_path / "photos" / "out"
    info = json.loads((out / "report.json").read_text())["calibration"]
    assert info["source"] == "folder" and info["path"] == str(photos) and info["samples"] == 6
    assert info["chosen_by"] == "quantization.calibration"
    assert f"6 image-caption pairs from folder:{photos}" in (out / "report.md").read_text()

    rc, log = _build(tmp_path, "world", _recipe(), capsys)  # default: the embedded world's train scenes
    assert rc == 0, log
    world = json.loads((tmp_path / "world" / "out" / "report.json").read_text())["calibration"]
    assert world["source"] == "synthetic" and world["split"] == "train" and world["chosen_by"] == "default"
    assert world["sha256"] != info["sha256"]
    # other calibration data, other activation scales: another int8 artifact
    assert _artifact_sha(out) != _artifact_sha(tmp_path / "world" / "out")


def test_too_few_readable_images_fail_at_plan_time(tmp_path, capsys):
    photos = _photo_folder(tmp_path / "photos", names=("astronaut", "coffee"))
    (photos / "broken.png").write_bytes(b"not a png")
    with open(photos / "captions.tsv", "a") as f:
        f.write("broken.png\ta broken file\n")
    rc, log = _build(tmp_path, "few", _recipe(f"  calibration: {{source: folder, path: {photos}, samples: 5}}\n"),
                     capsys)
    assert rc == 2
    line = log.strip().splitlines()[-1]
    assert f"quantization.calibration: folder:{photos} has 2 readable image-caption pairs (1 bad images skipped)" in line
    assert "asks for 5" in line
    assert not (tmp_path / "few" / "out").exists()  # refused before any work


def test_evaluation_data_is_refused_as_calibration(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text(_recipe("  calibration: {source: synthetic, split: heldout}\n"))
    with pytest.raises(ConfigError, match="heldout split is evaluation data"):
        load_recipe(p)
    from edgeclip.build.calibration import check_calibration_source
    p.write_text(_recipe("  calibration: {source: synthetic}\n").replace(
        "- {source: synthetic, split: heldout, samples: 8, languages: [en]}", "- {source: photos}")
        .replace("calibration: {source: synthetic}", "calibration: {source: photos}"))
    with pytest.raises(ConfigError, match="photos is also in data.eval"):
        check_calibration_source(load_recipe(p))
