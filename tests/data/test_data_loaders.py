"""CSV and folder loaders on files the tests write: good, corrupt and missing images."""
from __future__ import annotations

import io
import json
import logging

import numpy as np
import pytest
from PIL import Image

from edgeclip.data import CsvLoader, FolderLoader, decode_image, open_dataset
from edgeclip.errors import ConfigError, InputError


def _photo(i: int, h: int = 20, w: int = 28) -> np.ndarray:
    import skimage.data

    a = skimage.data.astronaut()
    return np.ascontiguousarray(a[40 * i: 40 * i + h, 30 * i: 30 * i + w])


@pytest.fixture
def files(tmp_path):
    """img/ holds a0.png, a1.png, a2.jpg (good), bad.jpg (truncated JPEG), junk.png (not an
    image); gone.png is named but missing."""
    d = tmp_path / "img"
    d.mkdir()
    for i in range(2):
        Image.fromarray(_photo(i)).save(d / f"a{i}.png")
    Image.fromarray(_photo(2)).save(d / "a2.jpg", quality=95)
    buf = io.BytesIO()
    Image.fromarray(_photo(3, 64, 64)).save(buf, "JPEG")
    (d / "bad.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (d / "junk.png").write_bytes(b"this is not a png")
    rows = [("img/a0.png", "first"), ("img/bad.jpg", "truncated"), ("img/a1.png", "second"),
            ("img/gone.png", "missing"), ("img/junk.png", "junk"), ("img/a2.jpg", "third")]
    return tmp_path, rows


def _write_csv(path, rows, header=("filepath", "caption"), sep=","):
    lines = [sep.join(header)] + [sep.join((f, c, f"id{i}")[: len(header)]) for i, (f, c) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_csv_skip_counts_bad_and_yields_exact_pixels(files, caplog):
    root, rows = files
    csv = _write_csv(root / "data.csv", rows, header=("filepath", "caption", "uid"))
    loader = CsvLoader(csv)
    with caplog.at_level(logging.INFO, logger="edgeclip.data"):
        items = list(loader)
    assert [c for _, c, _ in items] == ["first", "second", "third"]
    assert np.array_equal(items[0][0], _photo(0)) and np.array_equal(items[1][0], _photo(1))
    img, _, meta = items[2]
    assert img.shape == (20, 28, 3) and img.dtype == np.uint8 and img.flags.c_contiguous
    assert np.abs(img.astype(int) - _photo(2)).mean() < 6  # JPEG: close, not equal
    assert meta["uid"] == "id5" and meta["source"] == "csv" and meta["row"] == 5
    assert loader.stats.yielded == 3 and loader.stats.skipped == 3
    bad = " ".join(loader.stats.bad)
    assert "bad.jpg" in bad and "gone.png" in bad and "file not found" in bad and "junk.png" in bad
    assert any("3 skipped" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert len(list(loader)) == 3 and loader.stats.skipped == 3  # stats are per pass


def test_csv_fail_names_the_first_bad_file(files):
    root, rows = files
    loader = CsvLoader(_write_csv(root / "data.csv", rows), on_bad_image="fail")
    it = iter(loader)
    assert next(it)[1] == "first"
    with pytest.raises(InputError, match=r"bad\.jpg.*cannot decode") as e:
        next(it)
    assert isinstance(e.value.__cause__.__cause__, OSError)  # the PIL error is kept as cause
    missing_only = CsvLoader(_write_csv(root / "m.csv", [rows[3]]), on_bad_image="fail")
    with pytest.raises(InputError, match="gone.png.*file not found"):
        list(missing_only)


def test_csv_missing_columns_list_what_was_found(tmp_path):
    path = _write_csv(tmp_path / "x.csv", [("a.png", "cap")], header=("img", "caption"))
    with pytest.raises(InputError, match=r"no image column \(tried filepath.*found: 'img', 'caption'"):
        CsvLoader(path)
    with pytest.raises(InputError, match=r"no image column 'picture' and no caption column 'label'"):
        CsvLoader(path, image_col="picture", caption_col="label")
    assert CsvLoader(path, image_col="img").image_col == "img"


def test_tsv_custom_columns_and_absolute_paths(files):
    root, rows = files
    good = [(str(root / rows[0][0]), "abs path"), (rows[2][0], "rel path")]
    tsv = _write_csv(root / "d.tsv", good, header=("image", "title"), sep="\t")
    items = list(CsvLoader(tsv))  # tab from the suffix; "image"/"title" found automatically
    assert [c for _, c, _ in items] == ["abs path", "rel path"]
    assert np.array_equal(items[0][0], _photo(0))


def test_folder_jsonl_and_tsv(files):
    root, rows = files
    d = root / "img"
    lines = [json.dumps({"file": f.split("/")[1], "caption": c, "lang": "en"}) for f, c in rows]
    lines.insert(2, "{not json")
    lines.insert(3, json.dumps({"file": "a0.png"}))  # no caption
    (d / "captions.jsonl").write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    loader = FolderLoader(d)
    items = list(loader)
    assert [c for _, c, _ in items] == ["first", "second", "third"]
    assert items[0][2]["lang"] == "en" and items[0][2]["line"] == 1
    assert loader.stats.skipped == 5
    assert any("invalid JSON" in b for b in loader.stats.bad)
    (d / "only.jsonl").write_text(lines[0] + "\n{not json\n", encoding="utf-8")
    strict = FolderLoader(d, captions="only.jsonl", on_bad_image="fail")
    with pytest.raises(InputError, match=r"bad captions line .*only\.jsonl:2: invalid JSON"):
        list(strict)
    assert strict.stats.yielded == 1

    (d / "captions.jsonl").unlink()
    tsv = "file\tcaption\n" + "".join(f"{f.split('/')[1]}\t{c}\n" for f, c in rows)
    (d / "captions.tsv").write_text(tsv, encoding="utf-8")
    tsv_loader = open_dataset(d)
    assert isinstance(tsv_loader, FolderLoader)
    assert [c for _, c, _ in tsv_loader] == ["first", "second", "third"]
    assert tsv_loader.stats.skipped == 3
    (d / "captions.tsv").unlink()
    with pytest.raises(InputError, match="captions.jsonl or captions.tsv"):
        FolderLoader(d)


def test_ranks_split_rows_disjointly_and_cover_all(files):
    root, rows = files
    good = [r for r in rows if r[0].endswith(("a0.png", "a1.png", "a2.jpg"))] * 3
    path = _write_csv(root / "g.csv", good)
    parts = [[m["row"] for _, _, m in CsvLoader(path, rank=r, world_size=2)] for r in range(2)]
    assert sorted(parts[0] + parts[1]) == list(range(9)) and not set(parts[0]) & set(parts[1])
    with pytest.raises(ConfigError, match="rank 2"):
        CsvLoader(path, rank=2, world_size=2)
    with pytest.raises(ConfigError, match="on_bad_image"):
        CsvLoader(path, on_bad_image="ignore")


def test_dataloader_workers_read_each_row_once(files):
    from torch.utils.data import DataLoader

    from edgeclip.data import as_torch_dataset, collate

    root, rows = files
    good = [rows[0], rows[2]] * 4  # a0.png, a1.png
    ds = as_torch_dataset(CsvLoader(_write_csv(root / "w.csv", good)))
    seen = [m["row"] for _, _, metas in DataLoader(ds, batch_size=2, num_workers=2,
                                                   collate_fn=collate) for m in metas]
    assert sorted(seen) == list(range(8))


def test_decode_exif_rotation_and_alpha(tmp_path):
    img = _photo(0, 10, 30)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": how phones store portrait photos
    Image.fromarray(img).save(tmp_path / "r.jpg", exif=exif, quality=95)
    assert decode_image(tmp_path / "r.jpg").shape == (30, 10, 3)
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 255  # top half opaque red, bottom half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = decode_image((tmp_path / "a.png").read_bytes())
    assert out[0, 0].tolist() == [200, 0, 0] and out[3, 0].tolist() == [255, 255, 255]


def test_open_dataset_dispatch(files, tmp_path):
    root, rows = files
    assert isinstance(open_dataset(_write_csv(root / "o.csv", rows[:1])), CsvLoader)
    with pytest.raises(InputError, match="matched no files"):
        open_dataset(str(tmp_path / "nope-*.tar"))
    with pytest.raises(InputError, match="cannot tell"):
        open_dataset(tmp_path / "weird.bin")
