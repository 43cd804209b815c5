"""Run a bundle on the host: ``edgeclip predict`` and ``edgeclip inspect``.

Only the bundle is used — manifest, tokenizer files, artifacts — exactly as an app would use
it, so a prediction here checks the bundle itself, not the model it came from.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .bundle import load_manifest
from .errors import InputError

__all__ = ["BundleRunner", "predict", "inspect_text"]


class BundleRunner:
    def __init__(self, bundle_dir: Path, backend: str | None = None, threads: int = 2):
        from .bundle import artifact_from_entry
        from .verify.run import open_runner
        self.dir = Path(bundle_dir)
        self.manifest = load_manifest(self.dir)
        shipped = [a for a in self.manifest["artifacts"] if a["shipped"]]
        if backend:
            shipped = [a for a in shipped if a["backend"] == backend]
        self.runners = {}
        for tower in ("image", "text"):
            cands = [a for a in shipped if a["tower"] == tower]
            if not cands:
                raise InputError(f"{self.dir}: no shipped {tower} artifact"
                                 + (f" for backend {backend}" if backend else "")
                                 + f"; backends here: {sorted({a['backend'] for a in shipped}) or 'none'}")
            for a in cands:
                r = open_runner(artifact_from_entry(self.dir, a), threads)  # MIL interpreter off macOS
                if r is not None:
                    self.runners[tower] = (a, r)
                    break
            else:
                raise InputError(f"{self.dir}: no {tower} artifact can run on this OS "
                                 f"({', '.join(a['backend'] for a in cands)}); a CoreML-delegated "
                                 ".pte needs an Apple device")
        from .models.tokenizers import load_tokenizer
        self.tokenizer = load_tokenizer(self.dir / "tokenizer")

    def _rows(self, tower: str, batch: np.ndarray) -> np.ndarray:
        _a, r = self.runners[tower]
        return np.concatenate([np.asarray(r(np.ascontiguousarray(batch[i:i + 1]))).reshape(1, -1)
                               for i in range(len(batch))])

    def encode_images(self, paths: list[str]) -> np.ndarray:
        from .data import decode_image
        from .models._preprocess import preprocess_images
        p = self.manifest["preprocessing"]
        imgs = []
        for path in paths:
            if not Path(path).is_file():
                raise InputError(f"image {path!r} does not exist")
            imgs.append(decode_image(path))
        px = preprocess_images(imgs, p["image_size"], p["mean"], p["std"], p["resize_mode"]).numpy()
        return self._rows("image", px)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return self._rows("text", self.tokenizer.encode(texts).astype(np.int32))


def predict(bundle_dir: Path, images: list[str], texts: list[str], backend: str | None = None) -> dict:
    """Per image, texts ranked by probability (softmax of logit_scale x cosine)."""
    if not texts:
        raise InputError("give --labels 'a cat,a dog' or --text ... to rank against")
    br = BundleRunner(bundle_dir, backend)
    img = br.encode_images(images)
    txt = br.encode_texts(texts)
    img = img / np.linalg.norm(img, axis=1, keepdims=True)
    txt = txt / np.linalg.norm(txt, axis=1, keepdims=True)
    logits = br.manifest["model"]["logit_scale"] * img @ txt.T
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    out = []
    for i, path in enumerate(images):
        order = np.argsort(-probs[i])
        out.append({"image": path, "ranking": [
            {"text": texts[j], "probability": float(probs[i, j]), "cosine": float(img[i] @ txt[j])}
            for j in order]})
    return {"bundle": str(bundle_dir), "image_artifact": br.runners["image"][0]["file"],
            "text_artifact": br.runners["text"][0]["file"], "results": out}


def inspect_text(bundle_dir: Path) -> str:
    m = load_manifest(Path(bundle_dir))
    p, t = m["preprocessing"], m["tokenizer"]
    lines = [f"bundle      {bundle_dir}", f"model       {m['model']['uri']} (recipe {m['model']['recipe']}, "
             f"embed {m['model']['embed_dim']})", f"target      {m['target']['name']} ({m['target']['platform']})",
             f"image input {p['input_layout']} {p['input_dtype']} {p['image_size']}x{p['image_size']}, "
             f"mean {p['mean']}, std {p['std']}, resize {p['resize_mode']}",
             f"tokenizer   {t['type']}, context {t['context_length']}, files {', '.join(t['files'])}", "",
             f"{'artifact':<44} {'tower':<6} {'quant':<13} {'MB':>7} {'p50 ms':>8} {'cosine':>8}  shipped"]
    for a in m["artifacts"]:
        met = a.get("metrics", {})
        p50 = f"{met['latency_p50_ms']:.2f}" if met.get("latency_p50_ms") is not None else "-"
        cos = f"{met['cosine_mean']:.5f}" if met.get("cosine_mean") is not None else "-"
        lines.append(f"{a['file']:<44} {a['tower']:<6} {a['quant']:<13} {a['size_bytes'] / 1e6:>7.2f} "
                     f"{p50:>8} {cos:>8}  {'yes' if a['shipped'] else 'no: ' + str(a.get('why_not_shipped'))}")
    return "\n".join(lines)
