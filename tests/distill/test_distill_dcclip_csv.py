"""DC-CLIP's parallel captions from a user's CSV: the loader (default and named columns, empty
captions, missing columns, rank shards), plan-time errors, stage 1 trained from CSV rows of real
image files, and the shipped ``recipes/dcclip-multilingual.yaml`` built end to end with a tiny
AltCLIP teacher folder (written by transformers) and CSV captions, reporting per language."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from edgeclip.config import DataSource, DistillStage, load_recipe
from edgeclip.data.parallel import ParallelCsvLoader
from edgeclip.distill.dcclip import DcClipOptions, check, train_stage
from edgeclip.errors import ConfigError, EdgeclipError, InputError

from _checkpoints import tiny_altclip
from _tiny_configs import build_mini

ROOT = Path(__file__).resolve().parents[2]


def write_pairs(folder: Path, n: int, columns=("caption_en", "caption_zh"), sep=",", name="pairs.csv",
                blank_zh: tuple[int, ...] = ()) -> Path:
    """``n`` rendered embedded-world scenes as PNG files and a CSV of their English and Chinese captions."""
    from PIL import Image

    from edgeclip.data import SyntheticWorld

    folder.mkdir(parents=True, exist_ok=True)
    world = SyntheticWorld(seed=1, split="train", length=n, image_size=48)
    path = folder / name
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=sep)
        w.writerow(["filepath", *columns, "source_id"])
        for i in range(n):
            image, _, meta = world[i]
            Image.fromarray(image).save(folder / f"{i:03d}.png")
            zh = "" if i in blank_zh else meta["caption_zh"]
            w.writerow([f"{i:03d}.png", meta["caption_en"], zh, i])
    return path


def test_loader_reads_default_and_named_columns(tmp_path):
    path = write_pairs(tmp_path, 6)
    rows = list(ParallelCsvLoader(path, ("en", "zh")))
    assert len(rows) == 6 and rows[0][0].shape == (48, 48, 3) and rows[0][0].dtype == np.uint8
    assert set(rows[0][1]) == {"en", "zh"} and any("\u4e00" <= ch <= "\u9fff" for ch in rows[0][1]["zh"])
    named = write_pairs(tmp_path / "named", 4, columns=("english", "chinese"), sep="\t", name="p.tsv")
    got = list(ParallelCsvLoader(named, ("en", "zh"), {"en": "english", "zh": "chinese"}))
    assert [c for _, c in got] == [c for _, c in rows[:4]]  # same scenes, same captions
    # rank shards are disjoint and cover every row
    shards = [[c["en"] for _, c in ParallelCsvLoader(path, ("en", "zh"), rank=r, world_size=2)] for r in (0, 1)]
    assert sorted(shards[0] + shards[1]) == sorted(c["en"] for _, c in rows) and not set(shards[0]) & set(shards[1])


def test_loader_skips_or_fails_rows_with_an_empty_caption(tmp_path):
    path = write_pairs(tmp_path, 5, blank_zh=(1, 3))
    loader = ParallelCsvLoader(path, ("en", "zh"))
    assert len(list(loader)) == 3
    assert loader.stats.skipped == 2 and "empty caption column 'caption_zh'" in loader.stats.bad[0]
    with pytest.raises(InputError, match="bad row .*empty caption column 'caption_zh'"):
        list(ParallelCsvLoader(path, ("en", "zh"), on_bad_image="fail"))
    # the tokenizer's view: every usable row of the file, whatever the rank
    assert len(list(ParallelCsvLoader(path, ("en", "zh"), rank=1, world_size=2).captions())) == 3


def test_loader_errors_name_the_columns(tmp_path):
    path = write_pairs(tmp_path, 2, columns=("english", "chinese"))
    with pytest.raises(InputError, match=r"no caption column 'caption_en'.*columns found: 'filepath', 'english', "
                                         r"'chinese'.*captions: \{en: COLUMN, zh: COLUMN\}"):
        ParallelCsvLoader(path, ("en", "zh"), {"zh": "chinese"})
    with pytest.raises(ConfigError, match="'fr', which are not among languages"):
        ParallelCsvLoader(path, ("en", "zh"), {"fr": "french"})
    with pytest.raises(ConfigError, match="at least two languages"):
        ParallelCsvLoader(path, ("en",))


def test_plan_time_checks_the_parallel_source(tmp_path):
    stage = DistillStage(method="dcclip", student="builtin:tiny-vit")
    path = write_pairs(tmp_path, 2)

    class R:  # only what check() reads
        def __init__(self, train):
            self.data = type("D", (), {"train": train})()

    check(stage, R(DataSource(source="csv", path=str(path), languages=("en", "zh"))))
    for train, match in [
        (DataSource(source="folder", path=str(tmp_path), languages=("en", "zh")), "one caption per image: use source: csv"),
        (DataSource(source="csv", path=str(path), languages=("en",)), "at least two languages"),
        (DataSource(source="csv", path=str(path), languages=("en", "zh"), captions={"zh": "chinese"}),
         "no caption column 'chinese'"),
        (DataSource(source="csv", path=str(tmp_path / "none.csv"), languages=("en", "zh")), "not found"),
    ]:
        with pytest.raises(EdgeclipError, match=match):
            check(stage, R(train))
    with pytest.raises(ConfigError, match="parallel-caption columns of a csv source"):
        DataSource(source="synthetic", languages=("en", "zh"), captions={"zh": "x"})


def test_stage1_from_csv_pulls_chinese_captions_onto_the_teachers_english(tmp_path):
    from edgeclip.data import SyntheticWorld
    from edgeclip.models import build_builtin

    torch.set_num_threads(1)
    path = write_pairs(tmp_path, 96)
    teacher = build_builtin("tiny-vit", seed=3).eval()
    stage = DistillStage(method="dcclip", student="builtin:tiny-vit", steps=40, batch_size=16, lr=3e-3,
                         warmup_steps=2, weight_decay=0.0)
    src = DataSource(source="csv", path=str(path), languages=("en", "zh"))
    opts = DcClipOptions(tokenizer={"train": {"vocab_size": 400}})
    student, rec = train_stage(teacher, None, stage, opts, src, seed=0, progress=False)
    assert rec["data"]["columns"] == {"en": "caption_en", "zh": "caption_zh"}
    assert rec["data"]["rows"].startswith("96 samples, 0 skipped")
    assert rec["tokenizer"]["kind"] == "hf" and rec["tokenizer"]["vocab_size"] <= 400  # trained on the CSV
    metas = [SyntheticWorld(seed=5, split="heldout", length=16)[i][2] for i in range(16)]
    with torch.no_grad():
        t_en = teacher.encode_text([m["caption_en"] for m in metas])
        s_zh = student.encode_text([m["caption_zh"] for m in metas])
    assert (s_zh * t_en).sum(-1).mean() > 0.5, rec["parts"]
    assert rec["losses"][-1] < rec["losses"][0]


TINY_TARGET = """
version: 1
name: tiny-web
platform: web
towers: [image, text]
backends:
  - backend: onnx
    quant: [fp32, int8-dynamic]
"""


@pytest.mark.slow
def test_shipped_dcclip_recipe_builds_from_an_altclip_folder_and_csv(tmp_path, capsys):
    """The recipe file users copy, with only sizes shrunk: an AltCLIP teacher (XLM-R text) read from
    its save_pretrained folder, parallel captions from CSV, both stages, per-language accuracy."""
    torch.set_num_threads(1)
    tiny_altclip(tmp_path / "altclip")
    path = write_pairs(tmp_path / "pairs", 64)
    recipe = yaml.safe_load((ROOT / "recipes" / "dcclip-multilingual.yaml").read_text())
    recipe["teacher"] = f"hf:{tmp_path / 'altclip'}"
    recipe["data"] = {"train": {"source": "csv", "path": str(path), "languages": ["en", "zh"]},
                      "eval": [{"source": "synthetic", "split": "heldout", "samples": 12, "languages": ["en", "zh"]}]}
    recipe["quantization"] = {"calibration_samples": 4}
    for st, steps in zip(recipe["distill"], (12, 8)):
        st.update(steps=steps, batch_size=16, warmup_steps=2)
    recipe["distill"][0]["student"] = "builtin:tiny-vit"
    recipe["distill"][0]["options"]["tokenizer"] = {"train": {"vocab_size": 500}}
    load_recipe_text = yaml.safe_dump(recipe, allow_unicode=True)
    (tmp_path / "check.yaml").write_text(load_recipe_text)
    load_recipe(tmp_path / "check.yaml")  # the edited recipe is still a valid one
    out = build_mini(tmp_path, load_recipe_text, capsys, TINY_TARGET)

    manifest = json.loads((out / "manifest.json").read_text())
    assert [d["phase"] for d in manifest["model"]["distill"]] == ["features", "align"]
    records = sorted((tmp_path / ".cache").glob("distill-*/distill.json"), key=lambda p: p.stat().st_mtime)
    first, second = (json.loads(p.read_text()) for p in records)
    assert first["data"]["source"] == "csv" and first["data"]["columns"] == {"en": "caption_en", "zh": "caption_zh"}
    assert first["losses"][-1] < first["losses"][0]  # the student moves toward the AltCLIP teacher's embeddings
    assert manifest["model"]["distill"][0]["data"]["rows"].startswith("64 samples")  # what it trained on, shipped
    assert set(first["eval"]["teacher"]) == {"en", "zh", "gap_en_zh"}  # the AltCLIP teacher, per language
    assert set(second["eval"]["student"]) == {"en", "zh", "gap_en_zh"}
    report = (out / "report.md").read_text()
    assert "accuracy per language" in report and "| student | gap en−zh |" in report
    assert manifest["tokenizer"]["type"] == "hf"  # the student's trained multilingual BPE ships
    shipped = {(a["tower"], a["quant"]) for a in manifest["artifacts"]}
    assert {"image", "text"} <= {t for t, _ in shipped}
