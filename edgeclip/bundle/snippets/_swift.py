"""The Swift snippet for CoreML bundles: load the compiled models, preprocess, embed, rank."""
from __future__ import annotations

from pathlib import Path

from ._text import (bundle_values, fill, header, label_block, pixel_shape, shape_text, tensor_values,
                    tower_order)

_SWIFT = '''
// Add each .mlpackage under artifacts/ to the Xcode target: Xcode compiles it into <name>.mlmodelc inside
// the app bundle, which is what is loaded below. A .mlpackage downloaded at run time must be compiled
// first: `let url = try await MLModel.compileModel(at: packageURL)`. Add labels/ and tokenizer/ as
// folder references (blue folders) so their paths stay as in the bundle. The tokenizer comes from
// swift-transformers (Swift Package https://github.com/huggingface/swift-transformers, product Tokenizers),
// which reads tokenizer/tokenizer.json and tokenizer_config.json.
import CoreGraphics
import CoreML
import Foundation
import Tokenizers

enum EdgeClipBundle {
    // Preprocessing@@PREDOC@@
    static let imageSize = @@S@@
    static let resizeMode = "@@RESIZE@@"
    static let mean: [Float] = [@@MEAN@@]
    static let std: [Float] = [@@STD@@]
    static let embedDim = @@DIM@@
    static let logitScale: Float = @@SCALE@@  // logits = logitScale * cosine, then softmax
    // Tokenizer (@@TOKTYPE@@): @@TOKFILES@@. tokenizer.json is the Hugging Face tokenizers file;
    // EdgeClipTokenizer loads it with swift-transformers. Ids are int32 [1, @@CTX@@]: start-of-text,
    // tokens, end-of-text, padded with padId to contextLength (longer text: truncated, end-of-text kept
    // last). @@TESTVEC@@ holds text -> ids pairs to check the app's tokenizer with once.
    static let contextLength = @@CTX@@
    static let padId: Int32 = @@PAD@@
    static let eotId: Int32 = @@EOT@@
@@LABELCONST@@
    /// Tokenizer ids -> exactly contextLength ids: truncated with end-of-text kept last, padded.
    static func frame(_ ids: [Int]) -> [Int32] {
        var out = [Int32](repeating: padId, count: contextLength)
        for i in 0..<min(ids.count, contextLength) { out[i] = Int32(ids[i]) }
        if ids.count > contextLength { out[contextLength - 1] = eotId }
        return out
    }
}

/// The bundle's tokenizer through swift-transformers (tokenizer/ added as a folder reference).
struct EdgeClipTokenizer {
    let tokenizer: any Tokenizer

    static func load() async throws -> EdgeClipTokenizer {
        let folder = Bundle.main.resourceURL!.appendingPathComponent("tokenizer")
        return EdgeClipTokenizer(tokenizer: try await AutoTokenizer.from(modelFolder: folder))
    }

    /// Text -> int32 ids for the text model.
    func ids(_ text: String) -> [Int32] { EdgeClipBundle.frame(tokenizer.encode(text: text)) }
}

enum EdgeClipPreprocess {
    /// CGImage -> MLMultiArray @@PIXDOC@@: the bundle's preprocessing.
    static func pixels(_ image: CGImage) throws -> MLMultiArray {
        let s = EdgeClipBundle.imageSize
        var src = image
        if EdgeClipBundle.resizeMode == "shortest" && src.width != src.height {
            let side = min(src.width, src.height)
            let left = (Double(src.width - side) / 2).rounded(.toNearestOrEven)
            let top = (Double(src.height - side) / 2).rounded(.toNearestOrEven)
            src = src.cropping(to: CGRect(x: left, y: top, width: Double(side), height: Double(side)))!
        }
        var rgba = [UInt8](repeating: 255, count: s * s * 4)
        let space = CGColorSpaceCreateDeviceRGB()
        rgba.withUnsafeMutableBytes { buf in
            let ctx = CGContext(data: buf.baseAddress, width: s, height: s, bitsPerComponent: 8, bytesPerRow: 4 * s,
                                space: space, bitmapInfo: CGImageAlphaInfo.premultipliedLast.rawValue)!
            ctx.interpolationQuality = .medium  // bilinear; the reference does not antialias
            ctx.draw(src, in: CGRect(x: 0, y: 0, width: s, height: s))
        }
@@PIXLOOP@@
    }
}

enum EdgeClipRank {
    static func floats(_ a: MLMultiArray) -> [Float] {
        (0..<a.count).map { a[$0].floatValue }
    }

    static func softmax(_ logits: [Float]) -> [Float] {
        let m = logits.max() ?? 0
        let e = logits.map { exp($0 - m) }
        let sum = e.reduce(0, +)
        return e.map { $0 / sum }
    }

    static func cosine(_ a: [Float], _ b: [Float]) -> Float {
        var dot: Float = 0
        var na: Float = 0
        var nb: Float = 0
        for i in 0..<a.count {
            dot += a[i] * b[i]
            na += a[i] * a[i]
            nb += b[i] * b[i]
        }
        return dot / (na.squareRoot() * nb.squareRoot() + 1e-12)
    }

    /// A float32 little-endian C-order 2-D .npy (labels/label_embeddings.npy) -> rows.
    static func loadNpy(_ data: Data) -> [[Float]] {
        let bytes = [UInt8](data)
        let v1 = bytes[6] == 1
        let headerLen = v1 ? Int(bytes[8]) | Int(bytes[9]) << 8
            : Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
        let start = (v1 ? 10 : 12) + headerLen
        let head = String(decoding: bytes[(start - headerLen)..<start], as: UTF8.self)
        precondition(head.contains("'<f4'") && head.contains("'fortran_order': False"), "expected float32 C-order .npy")
        let dims = head.split(separator: "(")[1].split(separator: ")")[0].split(separator: ",")
        let rows = Int(dims[0].trimmingCharacters(in: .whitespaces))!
        let cols = Int(dims[1].trimmingCharacters(in: .whitespaces))!
        let floats: [Float] = bytes[start...].withUnsafeBytes { raw in
            (0..<(rows * cols)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
        }
        return (0..<rows).map { Array(floats[($0 * cols)..<(($0 + 1) * cols)]) }
    }
}

final class EdgeClipCoreML {
@@PROPS@@
    init(configuration: MLModelConfiguration = MLModelConfiguration()) throws {  // computeUnits .all by default
@@LOADS@@
    }

    static func compiledModel(_ name: String) -> URL {
        guard let url = Bundle.main.url(forResource: name, withExtension: "mlmodelc") else {
            fatalError("\\(name).mlmodelc is not in the app bundle: add the .mlpackage to the target")
        }
        return url
    }

    static func resource(_ path: String) throws -> Data {
        try Data(contentsOf: Bundle.main.resourceURL!.appendingPathComponent(path))  // a folder reference keeps the path
    }
@@FNS@@@@CLASSIFY@@}
'''

_PRE_FLOAT = (''' (the models take already preprocessed pixels, NCHW float32 [1, 3, @@S@@, @@S@@]):
    // RGB (composite transparent pixels over white); resize mode "@@RESIZE@@" (squash: resize the whole
    // image to @@S@@x@@S@@; shortest: first center-crop the largest square, offsets rounded half-to-even);
    // bilinear resize without antialiasing; then (value / 255 - mean[c]) / std[c].''',
              "float32 [1, 3, @@S@@, @@S@@] (NCHW)", '''        let array = try MLMultiArray(shape: [@@PIXSHAPE@@], dataType: .float32)
        let ptr = array.dataPointer.bindMemory(to: Float.self, capacity: 3 * s * s)
        for i in 0..<(s * s) {
            for c in 0..<3 {
                ptr[c * s * s + i] = (Float(rgba[4 * i + c]) / 255 - EdgeClipBundle.mean[c]) / EdgeClipBundle.std[c]
            }
        }
        return array''')
# CoreML has no uint8 tensor inputs (coremltools casts them to int32): raw pixels go in as int32
_PRE_RAW = (''' in the model: it takes RGB pixels 0..255 as int32 NHWC [1, @@S@@, @@S@@, 3] and
    // normalizes them itself (mean/std below are for reading). The app only resizes: resize mode
    // "@@RESIZE@@" (squash: the whole image to @@S@@x@@S@@; shortest: first center-crop the largest square,
    // offsets rounded half-to-even), bilinear, RGB over white.''',
            "int32 [1, @@S@@, @@S@@, 3] RGB 0..255 (NHWC)", '''        let array = try MLMultiArray(shape: [@@PIXSHAPE@@], dataType: .int32)
        let ptr = array.dataPointer.bindMemory(to: Int32.self, capacity: 3 * s * s)
        for i in 0..<(s * s) {
            for c in 0..<3 {
                ptr[3 * i + c] = Int32(rgba[4 * i + c])
            }
        }
        return array''')

_LABELCONST = '''    // Label set: @@K@@ labels (@@LJSON@@), embeddings float32 [@@K@@, @@DIM@@] (@@LNPY@@), one row
    // per label: the mean over the templates @@TEMPLATES@@ of the fp32 text embeddings, L2-normalized.
    static let labelsJSON = "@@LJSON@@"
    static let labelEmbeddings = "@@LNPY@@"
'''

_NO_LABELS = '''    // No label set in this bundle: rebuild with `edgeclip build ... --labels labels.txt` to ship
    // labels/label_embeddings.npy, or embed your labels' prompts with the text model below.
'''

_TOWER = '''
    /// @@DOC@@
    func @@FN@@(@@ARG@@) throws -> [Float] {
@@MAKE@@        let input = try MLDictionaryFeatureProvider(dictionary: ["@@IN@@": x])  // @@INDTYPE@@ [@@INSHAPE@@]
        let out = try self.@@VAR@@.prediction(from: input)
        return EdgeClipRank.floats(out.featureValue(for: "@@OUT@@")!.multiArrayValue!)  // @@OUTDTYPE@@ [@@OUTSHAPE@@]
    }
'''

_DOCS = {"image": ("embedImage", "_ image: CGImage", "Image -> L2-normalized embedding.",
                   "        let x = try EdgeClipPreprocess.pixels(image)\n"),
         "text": ("embedText", "ids: [Int32]", "Token ids (EdgeClipTokenizer.ids(text)) -> L2-normalized embedding.",
                  "        let x = try MLMultiArray(shape: [@@INSHAPE@@], dataType: .int32)\n"
                  "        for (i, id) in ids.enumerated() { x[i] = NSNumber(value: id) }\n"),
         "zero-shot-head": ("headLogits", "_ image: CGImage",
                            "Image -> logits over the bundle's labels (already scaled): softmax them.",
                            "        let x = try EdgeClipPreprocess.pixels(image)\n")}
_VAR = {"image": "image", "text": "text", "zero-shot-head": "head"}


def _classify(manifest: dict, towers: dict) -> str:
    if not manifest.get("labels"):
        return ""
    out = '''
    /// (label, probability), most likely first: stored label embeddings, no text model run.
    func classify(_ image: CGImage) throws -> [(String, Float)] {
        let doc = try JSONSerialization.jsonObject(with: Self.resource(EdgeClipBundle.labelsJSON)) as! [String: Any]
        let labels = doc["labels"] as! [String]
        let rows = EdgeClipRank.loadNpy(try Self.resource(EdgeClipBundle.labelEmbeddings))
        let emb = try embedImage(image)
        let p = EdgeClipRank.softmax(rows.map { EdgeClipBundle.logitScale * EdgeClipRank.cosine(emb, $0) })
        return zip(labels, p).sorted { $0.1 > $1.1 }
    }
'''
    if "zero-shot-head" in towers:
        out += '''
    /// The same ranking from the fused zero-shot head model (image -> label logits).
    func classifyWithHead(_ image: CGImage) throws -> [(String, Float)] {
        let doc = try JSONSerialization.jsonObject(with: Self.resource(EdgeClipBundle.labelsJSON)) as! [String: Any]
        let p = EdgeClipRank.softmax(try headLogits(image))
        return zip(doc["labels"] as! [String], p).sorted { $0.1 > $1.1 }
    }
'''
    return out


def coreml_swift(manifest: dict, towers: dict) -> str:
    order = tower_order(towers)
    p = manifest["preprocessing"]
    fns = ""
    for tw in order:
        fn, arg, doc, make = _DOCS[tw]
        vals = tensor_values(towers[tw])
        fns += fill(_TOWER, {**vals, "DOC": doc, "FN": fn, "ARG": arg, "VAR": _VAR[tw],
                             "MAKE": make.replace("@@INSHAPE@@", vals["INSHAPE"])})
    predoc, pixdoc, pixloop = _PRE_RAW if p.get("in_graph") else _PRE_FLOAT
    text = _SWIFT.replace("@@PREDOC@@", predoc).replace("@@PIXDOC@@", pixdoc).replace("@@PIXLOOP@@", pixloop)
    body = fill(text, {
        **bundle_values(manifest), "LABELCONST": label_block(manifest, _LABELCONST, _NO_LABELS),
        "PIXSHAPE": shape_text(pixel_shape(manifest, towers)),
        "PROPS": "\n".join(f"    let {_VAR[x]}: MLModel  // {towers[x]['file']}" for x in order),
        "LOADS": "\n".join(f'        {_VAR[x]} = try MLModel(contentsOf: '
                           f'Self.compiledModel("{Path(towers[x]["file"]).stem}"), configuration: configuration)'
                           for x in order),
        "FNS": fns, "CLASSIFY": _classify(manifest, towers)})
    return header(manifest, [towers[x] for x in order], "CoreML.swift") + body
