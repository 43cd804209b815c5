"""The JavaScript snippet for web bundles: onnxruntime-web sessions, Tokenizers.js (the tokenizer
library of transformers.js, ``@huggingface/tokenizers``) for the bundle's tokenizer.json."""
from __future__ import annotations

from ._text import (bundle_values, fill, header, label_block, pixel_shape, shape_text, tensor_values,
                    tower_order)

_JS = '''
// npm install onnxruntime-web @huggingface/tokenizers. Serve the bundle folder as static files
// (artifacts/, tokenizer/ and labels/ keep their paths); `base` is its URL, ending in "/".
// onnxruntime-web runs the .onnx artifacts (WASM, SIMD and threads where the page is cross-origin
// isolated); Tokenizers.js (the tokenizer of transformers.js, no dependencies) reads
// tokenizer/tokenizer.json, the Hugging Face tokenizers file.
import * as ort from "onnxruntime-web";
import { Tokenizer } from "@huggingface/tokenizers";

export const EdgeClipBundle = {
  // Preprocessing@@PREDOC@@
  imageSize: @@S@@,
  resizeMode: "@@RESIZE@@",
  mean: [@@MEAN@@],
  std: [@@STD@@],
  embedDim: @@DIM@@,
  logitScale: @@SCALE@@,  // logits = logitScale * cosine, then softmax
  // Tokenizer (@@TOKTYPE@@): @@TOKFILES@@. Ids are int32 [1, @@CTX@@]: start-of-text, tokens,
  // end-of-text, padded with padId to contextLength (longer text: truncated, end-of-text kept last).
  // @@TESTVEC@@ holds text -> ids pairs to check the tokenizer with once.
  contextLength: @@CTX@@,
  padId: @@PAD@@,
  eotId: @@EOT@@,
@@LABELCONST@@};

/** Tokenizer ids -> exactly contextLength int32 ids: truncated with end-of-text kept last, padded. */
export function frame(ids) {
  const n = EdgeClipBundle.contextLength;
  const out = new Int32Array(n).fill(EdgeClipBundle.padId);
  for (let i = 0; i < Math.min(ids.length, n); i++) out[i] = ids[i];
  if (ids.length > n) out[n - 1] = EdgeClipBundle.eotId;
  return out;
}

/** The bundle's tokenizer through Tokenizers.js: text -> framed int32 ids. */
export async function loadTokenizer(base = "./") {
  const get = (path) => fetch(base + path).then((r) => r.json());
  const tokenizer = new Tokenizer(await get("tokenizer/tokenizer.json"), await get("tokenizer/tokenizer_config.json"));
  return (text) => frame(tokenizer.encode(text).ids);
}

function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** An ImageBitmap, HTMLImageElement or canvas -> the image artifact's input, @@PIXDOC@@. */
export function pixels(image) {
  const s = EdgeClipBundle.imageSize;
  let [sx, sy, sw, sh] = [0, 0, image.width, image.height];
  if (EdgeClipBundle.resizeMode === "shortest" && sw !== sh) {
    const side = Math.min(sw, sh);
    [sx, sy, sw, sh] = [roundHalfEven((sw - side) / 2), roundHalfEven((sh - side) / 2), side, side];
  }
  const ctx = new OffscreenCanvas(s, s).getContext("2d");
  ctx.fillStyle = "white";  // transparent pixels composite over white
  ctx.fillRect(0, 0, s, s);
  ctx.imageSmoothingQuality = "low";  // bilinear; the reference does not antialias
  ctx.drawImage(image, sx, sy, sw, sh, 0, 0, s, s);
  const rgba = ctx.getImageData(0, 0, s, s).data;
@@PIXLOOP@@
}

function cosine(a, b) {
  let [dot, na, nb] = [0, 0, 0];
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / (Math.sqrt(na) * Math.sqrt(nb) + 1e-12);
}

function softmax(logits) {
  const m = Math.max(...logits);
  const e = logits.map((v) => Math.exp(v - m));
  const sum = e.reduce((x, y) => x + y, 0);
  return e.map((v) => v / sum);
}

/** A float32 little-endian C-order 2-D .npy (labels/label_embeddings.npy) -> rows. */
function loadNpy(buffer) {
  const bytes = new Uint8Array(buffer);
  const view = new DataView(buffer);
  const v1 = bytes[6] === 1;
  const headerLen = v1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = (v1 ? 10 : 12) + headerLen;
  const head = new TextDecoder("latin1").decode(bytes.slice(start - headerLen, start));
  if (!head.includes("'<f4'") || !head.includes("'fortran_order': False")) throw new Error("expected float32 C-order .npy");
  const [rows, cols] = head.match(/\\((\\d+), (\\d+)\\)/).slice(1).map(Number);
  const data = new Float32Array(buffer.slice(start, start + 4 * rows * cols));
  return Array.from({ length: rows }, (_, r) => data.subarray(r * cols, (r + 1) * cols));
}

export class EdgeClipOnnx {
  static async create(base = "./", options = { executionProviders: ["wasm"] }) {
    const m = new EdgeClipOnnx();
    m.base = base;
@@LOADS@@
    m.tokenize = await loadTokenizer(base);
    return m;
  }
@@FNS@@@@CLASSIFY@@}
'''

_PRE_FLOAT = (''' (the artifacts take already preprocessed pixels, NCHW float32):
  // RGB (composite transparent pixels over white); resize mode "@@RESIZE@@" (squash: resize the whole
  // image to @@S@@x@@S@@; shortest: first center-crop the largest square, offsets rounded half-to-even);
  // bilinear resize without antialiasing; then (value / 255 - mean[c]) / std[c].''',
              "float32 [@@PIXSHAPE@@] in NCHW order", '''  const out = new Float32Array(3 * s * s);
  for (let i = 0; i < s * s; i++) {
    for (let c = 0; c < 3; c++) {
      out[c * s * s + i] = (rgba[4 * i + c] / 255 - EdgeClipBundle.mean[c]) / EdgeClipBundle.std[c];
    }
  }
  return new ort.Tensor("float32", out, [@@PIXSHAPE@@]);''')
_PRE_RAW = (''' in the graph: the image artifacts take RGB pixels 0..255, NHWC uint8
  // [@@PIXSHAPE@@], and normalize them themselves (mean/std below are for reading). The page only
  // resizes: resize mode "@@RESIZE@@" (squash: the whole image to @@S@@x@@S@@; shortest: first center-crop
  // the largest square, offsets rounded half-to-even), bilinear, RGB over white.''',
            "uint8 [@@PIXSHAPE@@] RGB in NHWC order", '''  const out = new Uint8Array(3 * s * s);
  for (let i = 0; i < s * s; i++) {
    for (let c = 0; c < 3; c++) out[3 * i + c] = rgba[4 * i + c];
  }
  return new ort.Tensor("uint8", out, [@@PIXSHAPE@@]);''')

_LABELCONST = '''  // Label set: @@K@@ labels (@@LJSON@@), embeddings float32 [@@K@@, @@DIM@@] (@@LNPY@@), one row per
  // label: the mean over the templates @@TEMPLATES@@ of the fp32 text embeddings, L2-normalized.
  labelsJSON: "@@LJSON@@",
  labelEmbeddings: "@@LNPY@@",
'''
_NO_LABELS = '''  // No label set in this bundle: rebuild with `edgeclip build ... --labels labels.txt` to ship
  // labels/label_embeddings.npy, or embed your labels' prompts with embedText below.
'''

_TOWER = '''
  /** @@DOC@@ */
  async @@FN@@(@@ARG@@) {
    const results = await this.@@VAR@@.run({ "@@IN@@": @@FEED@@ });  // @@INDTYPE@@ [@@INSHAPE@@]
    return results["@@OUT@@"].data;  // @@OUTDTYPE@@ [@@OUTSHAPE@@]
  }
'''
_DOCS = {"image": ("embedImage", "image", "Image -> L2-normalized embedding (Float32Array).", "pixels(image)"),
         "text": ("embedText", "text", "Text -> L2-normalized embedding (Float32Array).",
                  'new ort.Tensor("int32", this.tokenize(text), [@@INSHAPE@@])'),
         "zero-shot-head": ("headLogits", "image", "Image -> logits over the bundle's labels (already scaled).",
                            "pixels(image)")}
_VAR = {"image": "image", "text": "text", "zero-shot-head": "head"}


def _classify(manifest: dict, towers: dict) -> str:
    if not manifest.get("labels"):
        return ""
    out = '''
  /** [label, probability] pairs, most likely first: stored label embeddings, no text model run. */
  async classify(image) {
    const labels = (await fetch(this.base + EdgeClipBundle.labelsJSON).then((r) => r.json())).labels;
    const rows = loadNpy(await fetch(this.base + EdgeClipBundle.labelEmbeddings).then((r) => r.arrayBuffer()));
    const emb = await this.embedImage(image);
    const p = softmax(rows.map((row) => EdgeClipBundle.logitScale * cosine(emb, row)));
    return labels.map((name, i) => [name, p[i]]).sort((a, b) => b[1] - a[1]);
  }
'''
    if "zero-shot-head" in towers:
        out += '''
  /** The same ranking from the fused zero-shot head artifact (image -> label logits). */
  async classifyWithHead(image) {
    const labels = (await fetch(this.base + EdgeClipBundle.labelsJSON).then((r) => r.json())).labels;
    const p = softmax(Array.from(await this.headLogits(image)));
    return labels.map((name, i) => [name, p[i]]).sort((a, b) => b[1] - a[1]);
  }
'''
    return out


def onnx_web_js(manifest: dict, towers: dict) -> str:
    order = tower_order(towers)
    p = manifest["preprocessing"]
    fns = ""
    for tw in order:
        fn, arg, doc, feed = _DOCS[tw]
        vals = tensor_values(towers[tw])
        fns += fill(_TOWER, {**vals, "DOC": doc, "FN": fn, "ARG": arg, "VAR": _VAR[tw],
                             "FEED": feed.replace("@@INSHAPE@@", vals["INSHAPE"])})
    predoc, pixdoc, pixloop = _PRE_RAW if p.get("in_graph") else _PRE_FLOAT
    text = _JS.replace("@@PREDOC@@", predoc).replace("@@PIXDOC@@", pixdoc).replace("@@PIXLOOP@@", pixloop)
    body = fill(text, {
        **bundle_values(manifest), "LABELCONST": label_block(manifest, _LABELCONST, _NO_LABELS),
        "PIXSHAPE": shape_text(pixel_shape(manifest, towers)),
        "LOADS": "\n".join(f'    m.{_VAR[x]} = await ort.InferenceSession.create(base + "{towers[x]["file"]}", options);'
                           for x in order),
        "FNS": fns, "CLASSIFY": _classify(manifest, towers)})
    return header(manifest, [towers[x] for x in order], "EdgeClip.js") + body
