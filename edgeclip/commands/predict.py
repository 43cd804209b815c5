"""``edgeclip predict``: run a bundle on the host.

Only the bundle is used — manifest, tokenizer files, artifacts, label set — exactly as an app
would use it, so a prediction here checks the bundle itself, not the model it came from. A
bundle may be a folder or its ``.zip`` (extracted safely, every sha256 checked first).

Without ``--labels``/``--text``, images are ranked against the bundle's label set with its stored
label embeddings (no text tower runs); ``--labels`` are embedded with the bundle's text artifact
through the bundle's prompt templates (so the same labels rank the same way), ``--text`` as given.
Probabilities are ``softmax(logit_scale * cosine)`` with the bundle's logit scale.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..bundle import load_manifest, open_bundle
from ..errors import InputError

__all__ = ["BundleRunner", "predict", "parse_labels_arg", "main"]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class BundleRunner:
    """A bundle's shipped artifacts, opened on first use (image first; text only when needed)."""

    def __init__(self, bundle_dir: Path, backend: str | None = None, threads: int = 2):
        self.source = Path(bundle_dir)
        self.dir = open_bundle(self.source)
        self.manifest = load_manifest(self.dir, where=str(self.source))
        self.backend, self.threads = backend, threads
        self.shipped = [a for a in self.manifest["artifacts"] if a["shipped"]
                        and (not backend or a["backend"] == backend)]
        self.runners: dict[str, tuple[dict, object, int]] = {}  # tower -> (entry, runner, fixed batch)
        self._tokenizer = None
        self.runner("image")

    def runner(self, tower: str):
        if tower in self.runners:
            return self.runners[tower][1]
        from ..bundle import artifact_from_entry
        from ..verify.run import batch_of, open_runner
        cands = [a for a in self.shipped if a["tower"] == tower]
        if not cands:
            raise InputError(f"{self.source}: no shipped {tower} artifact"
                             + (f" for backend {self.backend}" if self.backend else "")
                             + f"; backends here: {sorted({a['backend'] for a in self.shipped}) or 'none'}")
        for a in cands:
            art = artifact_from_entry(self.dir, a)
            r = open_runner(art, self.threads)  # MIL interpreter off macOS
            if r is not None:
                self.runners[tower] = (a, r, batch_of(art))
                return r
        raise InputError(f"{self.source}: no {tower} artifact can run on this OS "
                         f"({', '.join(a['backend'] for a in cands)}); a CoreML-delegated .pte needs an Apple device")

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from ..models import load_tokenizer
            self._tokenizer = load_tokenizer(self.dir / "tokenizer")
        return self._tokenizer

    def _rows(self, tower: str, batch: np.ndarray) -> np.ndarray:
        from ..verify.run import run_rows
        r = self.runner(tower)
        return run_rows(r, batch, self.runners[tower][2])

    def encode_images(self, paths: list[str]) -> np.ndarray:
        from ..data import BadImage, decode_image
        from ..models import preprocess_images
        p = self.manifest["preprocessing"]
        imgs = []
        for path in paths:
            if not Path(path).is_file():
                raise InputError(f"image {path!r} does not exist")
            try:
                imgs.append(np.array(decode_image(path)))  # a writable copy: torch warns on read-only arrays
            except BadImage as e:  # not an image, truncated, a decompression bomb: the input's fault
                raise InputError(f"image {path!r}: {e}; pass a JPEG, PNG or another image file Pillow "
                                 "can decode") from e
        self.runner("image")
        entry = self.runners["image"][0]
        if entry.get("in_graph_preprocess"):  # the artifact normalizes: hand it resized 0..255 RGB, NHWC
            raw = preprocess_images(imgs, p["image_size"], (0.0,) * 3, (1 / 255.0,) * 3, p["resize_mode"]).numpy()
            px = np.clip(np.rint(raw), 0, 255).transpose(0, 2, 3, 1).astype(entry["inputs"][0]["dtype"])
        else:
            px = preprocess_images(imgs, p["image_size"], p["mean"], p["std"], p["resize_mode"]).numpy()
        return self._rows("image", np.ascontiguousarray(px))

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return self._rows("text", self.tokenizer.encode(texts).astype(np.int32))

    def embed_labels(self, labels: list[str]) -> tuple[np.ndarray, list[str]]:
        """Labels through the bundle's prompt templates, averaged per label, normalized."""
        from ..bundle.labels import DEFAULT_TEMPLATES
        templates = list((self.manifest.get("labels") or {}).get("templates") or DEFAULT_TEMPLATES)
        emb = _unit(self.encode_texts([t.format(lbl) for lbl in labels for t in templates]))
        return _unit(emb.reshape(len(labels), len(templates), -1).mean(1)), templates


def parse_labels_arg(value: str) -> list[str]:
    """``--labels``: a labels file (one per line, UTF-8) when such a file exists, else comma-separated."""
    from ..bundle.labels import check_labels, read_labels_file
    if Path(value).is_file():
        return list(read_labels_file(value))
    return list(check_labels([x for x in value.split(",") if x.strip()], "--labels"))


def predict(bundle_dir: Path, images: list[str], texts: list[str] | None = None,
            labels: list[str] | None = None, backend: str | None = None) -> dict:
    """Per image, candidates ranked by probability (softmax of the bundle's logit_scale x cosine)."""
    texts, labels = list(texts or []), list(labels or [])
    br = BundleRunner(bundle_dir, backend)
    img = _unit(br.encode_images(images).astype(np.float64))
    info: dict = {}
    if texts or labels:
        parts, names = [], []
        if labels:
            emb, templates = br.embed_labels(labels)
            parts.append(emb)
            names += labels
            info["templates"] = templates
        if texts:
            parts.append(_unit(br.encode_texts(texts)))
            names += texts
        cand = np.concatenate(parts).astype(np.float64)
        info["candidates_from"] = "arguments"
    else:
        from ..bundle.labels import load_bundle_labels
        names, templates, emb = load_bundle_labels(br.dir, br.manifest)
        cand = _unit(emb.astype(np.float64))
        info.update(candidates_from="bundle labels", templates=templates)
    scale = float(br.manifest["model"]["logit_scale"])
    cos = img @ cand.T
    logits = scale * cos
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    out = []
    for i, path in enumerate(images):
        order = np.argsort(-probs[i], kind="stable")
        out.append({"image": path, "ranking": [
            {"text": names[j], "probability": float(probs[i, j]), "cosine": float(cos[i, j])} for j in order]})
    text_art = br.runners["text"][0]["file"] if "text" in br.runners else None
    return {"bundle": str(bundle_dir), "image_artifact": br.runners["image"][0]["file"],
            "text_artifact": text_art, "logit_scale": scale, **info, "results": out}


def main(args) -> int:
    """``edgeclip predict BUNDLE --image ... [--labels L | --text T ...] [--json]``."""
    import json
    labels = parse_labels_arg(args.labels) if args.labels else []
    out = predict(Path(args.bundle), args.image, texts=args.text, labels=labels, backend=args.backend)
    if args.json:
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    text = out["text_artifact"] or f"none ({out['candidates_from']}: stored label embeddings)"
    print(f"image artifact {out['image_artifact']}, text artifact {text}, logit scale {out['logit_scale']:.4g}")
    for r in out["results"]:
        print(f"\n{r['image']}")
        for i, row in enumerate(r["ranking"][:args.top], 1):
            print(f"  {i:>2}. {row['probability']:6.1%}  {row['text']}")
    return 0
