"""Kotlin snippets for Android: LiteRT (``org.tensorflow.lite.Interpreter``) and ExecuTorch
(``org.pytorch.executorch.Module``). Shared parts: constants, preprocessing, label ranking."""
from __future__ import annotations

from ._text import bundle_values, fill, header, label_block, shape_text

_COMMON = '''
object EdgeClipBundle {
    // Preprocessing@@PREDOC@@
    const val IMAGE_SIZE = @@S@@
    const val RESIZE_MODE = "@@RESIZE@@"
    val MEAN = floatArrayOf(@@MEAN@@)
    val STD = floatArrayOf(@@STD@@)
    const val EMBED_DIM = @@DIM@@
    const val LOGIT_SCALE = @@SCALE@@f  // logits = LOGIT_SCALE * cosine, then softmax
    // Tokenizer (@@TOKTYPE@@): @@TOKFILES@@. tokenizer.json is the Hugging Face tokenizers file:
    // EdgeClipTokenizer reads it with DJL. Ids are int32 [1, @@CTX@@]: start-of-text, tokens,
    // end-of-text, padded with PAD_ID to CONTEXT_LENGTH (longer text: truncated, end-of-text kept
    // last). @@TESTVEC@@ holds text -> ids pairs to check the app's tokenizer with once.
    const val CONTEXT_LENGTH = @@CTX@@
    const val PAD_ID = @@PAD@@
    const val EOT_ID = @@EOT@@
    val TOKENIZER_FILES = listOf(@@TOKLIST@@)
@@LABELCONST@@
    /** Tokenizer ids -> exactly CONTEXT_LENGTH ids: truncated with end-of-text kept last, padded. */
    fun frame(ids: LongArray): IntArray {
        val out = IntArray(CONTEXT_LENGTH) { PAD_ID }
        for (i in 0 until minOf(ids.size, CONTEXT_LENGTH)) out[i] = ids[i].toInt()
        if (ids.size > CONTEXT_LENGTH) out[CONTEXT_LENGTH - 1] = EOT_ID
        return out
    }
}

fun assetFile(context: Context, path: String): String {
    val file = File(context.filesDir, path)
    if (!file.exists()) {
        file.parentFile?.mkdirs()
        context.assets.open(path).use { input -> file.outputStream().use { input.copyTo(it) } }
    }
    return file.absolutePath
}

/** The bundle's tokenizer through DJL's Hugging Face tokenizers binding (it reads tokenizer.json). */
class EdgeClipTokenizer(context: Context) : AutoCloseable {
    private val tok: HuggingFaceTokenizer

    init {
        val files = EdgeClipBundle.TOKENIZER_FILES.map { assetFile(context, it) }  // DJL reads files, not assets
        tok = HuggingFaceTokenizer.newInstance(Paths.get(files.first { it.endsWith("tokenizer.json") }))
    }

    /** Text -> int32 ids for the text tower. */
    fun ids(text: String): IntArray = EdgeClipBundle.frame(tok.encode(text).ids)

    override fun close() = tok.close()
}

object EdgeClipPreprocess {
    /** Bitmap -> @@PIXDOC@@, the bundle's preprocessing. */
    fun pixels(src: Bitmap): @@PIXTYPE@@ {
        val s = EdgeClipBundle.IMAGE_SIZE
        var bmp = src
        if (EdgeClipBundle.RESIZE_MODE == "shortest" && bmp.width != bmp.height) {
            val side = minOf(bmp.width, bmp.height)
            val left = Math.rint((bmp.width - side) / 2.0).toInt()
            val top = Math.rint((bmp.height - side) / 2.0).toInt()
            bmp = Bitmap.createBitmap(bmp, left, top, side, side)
        }
        val scaled = Bitmap.createScaledBitmap(bmp, s, s, true)  // filter = true: bilinear
        val argb = IntArray(s * s)
        scaled.getPixels(argb, 0, s, 0, 0, s, s)
@@PIXLOOP@@
    }
}

object EdgeClipRank {
    fun cosine(a: FloatArray, b: FloatArray): Float {
        var dot = 0.0f
        var na = 0.0f
        var nb = 0.0f
        for (i in a.indices) {
            dot += a[i] * b[i]
            na += a[i] * a[i]
            nb += b[i] * b[i]
        }
        return dot / (sqrt(na) * sqrt(nb) + 1e-12f)
    }

    fun softmax(logits: FloatArray): FloatArray {
        val m = logits.maxOrNull() ?: 0.0f
        val e = FloatArray(logits.size) { exp(logits[it] - m) }
        val sum = e.sum()
        return FloatArray(e.size) { e[it] / sum }
    }

    /** Probabilities of each label: softmax(LOGIT_SCALE * cosine(image, label)). */
    fun rank(imageEmbedding: FloatArray, labelEmbeddings: Array<FloatArray>): FloatArray =
        softmax(FloatArray(labelEmbeddings.size) { EdgeClipBundle.LOGIT_SCALE * cosine(imageEmbedding, labelEmbeddings[it]) })

    /** A float32 little-endian C-order 2-D .npy (labels/label_embeddings.npy) -> rows. */
    fun loadNpy(bytes: ByteArray): Array<FloatArray> {
        val buf = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN)
        val v1 = bytes[6].toInt() == 1
        val headerLen = if (v1) (buf.getShort(8).toInt() and 0xFFFF) else buf.getInt(8)
        val start = (if (v1) 10 else 12) + headerLen
        val head = String(bytes, start - headerLen, headerLen, Charsets.ISO_8859_1)
        require(head.contains("'<f4'") && head.contains("'fortran_order': False")) { "expected float32 C-order .npy" }
        val dims = Regex("\\\\((\\\\d+), (\\\\d+)\\\\)").find(head)!!.groupValues
        val rows = dims[1].toInt()
        val cols = dims[2].toInt()
        buf.position(start)
        return Array(rows) { FloatArray(cols) { buf.getFloat() } }
    }

    /** labels/labels.json -> the label names, in the order of the embedding rows and head logits. */
    fun loadLabels(json: String): List<String> {
        val arr = JSONObject(json).getJSONArray("labels")
        return List(arr.length()) { arr.getString(it) }
    }
}

fun assetBytes(context: Context, path: String): ByteArray =
    context.assets.open(path).use { it.readBytes() }
'''

_PRE_FLOAT = (''' (the artifacts take already preprocessed pixels, NCHW float32):
    // RGB (composite transparent pixels over white); resize mode "@@RESIZE@@" (squash: resize the
    // whole image to @@S@@x@@S@@; shortest: first center-crop the largest square, offsets rounded
    // half-to-even); bilinear resize without antialiasing; then (value / 255 - MEAN[c]) / STD[c].''',
              "float32 [1, 3, @@S@@, @@S@@] in NCHW order", "FloatArray", '''        val out = FloatArray(3 * s * s)
        for (i in 0 until s * s) {
            val p = argb[i]
            val rgb = intArrayOf((p shr 16) and 0xFF, (p shr 8) and 0xFF, p and 0xFF)
            for (c in 0 until 3) {
                out[c * s * s + i] = (rgb[c] / 255.0f - EdgeClipBundle.MEAN[c]) / EdgeClipBundle.STD[c]
            }
        }
        return out''')
_PRE_RAW = (''' in the graph: the image artifacts take RGB pixels 0..255, NHWC uint8
    // [1, @@S@@, @@S@@, 3], and normalize them themselves (MEAN/STD below are for reading). The app only
    // resizes: resize mode "@@RESIZE@@" (squash: the whole image to @@S@@x@@S@@; shortest: first
    // center-crop the largest square, offsets rounded half-to-even), bilinear, RGB over white.''',
            "uint8 [1, @@S@@, @@S@@, 3] RGB in NHWC order", "ByteArray", '''        val out = ByteArray(3 * s * s)
        for (i in 0 until s * s) {
            val p = argb[i]
            out[3 * i] = ((p shr 16) and 0xFF).toByte()
            out[3 * i + 1] = ((p shr 8) and 0xFF).toByte()
            out[3 * i + 2] = (p and 0xFF).toByte()
        }
        return out''')

_LABELCONST = '''    // Label set: @@K@@ labels (@@LJSON@@), embeddings float32 [@@K@@, @@DIM@@] (@@LNPY@@), one row per
    // label: the mean over the templates @@TEMPLATES@@ of the fp32 text embeddings, L2-normalized.
    const val LABELS_JSON = "@@LJSON@@"
    const val LABEL_EMBEDDINGS = "@@LNPY@@"
'''

_NO_LABELS = '''    // No label set in this bundle: rebuild with `edgeclip build ... --labels labels.txt` to ship
    // labels/label_embeddings.npy, or embed your labels' prompts with the text tower below.
'''


def _common(manifest: dict) -> str:
    p, t = manifest["preprocessing"], manifest["tokenizer"]
    predoc, pixdoc, pixtype, pixloop = _PRE_RAW if p.get("in_graph") else _PRE_FLOAT
    text = _COMMON.replace("@@PREDOC@@", predoc).replace("@@PIXDOC@@", pixdoc).replace(
        "@@PIXTYPE@@", pixtype).replace("@@PIXLOOP@@", pixloop)
    return fill(text, {**bundle_values(manifest, number=lambda v: f"{float(v)!r}f"),
                       "TOKLIST": ", ".join(f'"{f}"' for f in t["files"]),
                       "LABELCONST": label_block(manifest, _LABELCONST, _NO_LABELS)})


def _kotlin_array(shape) -> str:
    """A Kotlin array literal holding a float32 tensor of ``shape`` (nested by dimension)."""
    inner = f"FloatArray({int(shape[-1])})"
    for d in reversed(shape[:-1]):
        inner = f"Array({int(d)}) {{ {inner} }}"
    return inner


def _first_row(shape) -> str:
    return "out" + "[0]" * (len(shape) - 1)


_LITERT_TOWER = '''
    /** @@DOC@@ */
    fun @@FN@@(@@ARG@@): FloatArray {
        val input = ByteBuffer.allocateDirect(@@BYTES@@).order(ByteOrder.nativeOrder())  // @@IN@@ @@INDTYPE@@ [@@INSHAPE@@]
        input.@@PUT@@
        input.rewind()
        val out = @@OUTARRAY@@  // @@OUT@@ @@OUTDTYPE@@ [@@OUTSHAPE@@]
        @@VAR@@.runSignature(mapOf("@@IN@@" to input), mapOf("@@OUT@@" to out), "serving_default")
        return @@ROW@@
    }
'''

_ET_TOWER = '''
    /** @@DOC@@ */
    fun @@FN@@(@@ARG@@): FloatArray {
        // input 0 is "@@IN@@" @@INDTYPE@@ [@@INSHAPE@@]; output 0 is "@@OUT@@" @@OUTDTYPE@@ [@@OUTSHAPE@@]
        val x = Tensor.fromBlob(@@DATA@@, longArrayOf(@@INSHAPE@@))
        return @@VAR@@.forward(EValue.from(x))[0].toTensor().dataAsFloatArray
    }
'''

_TOWER_DOC = {"image": ("embedImage", "bitmap: Bitmap", "Image -> L2-normalized embedding.",
                        "EdgeClipPreprocess.pixels(bitmap)"),
              "text": ("embedText", "ids: IntArray", "Token ids (EdgeClipTokenizer.ids(text)) -> L2-normalized embedding.",
                       "ids"),
              "zero-shot-head": ("headLogits", "bitmap: Bitmap",
                                 "Image -> logits over the bundle's labels (already scaled): softmax them.",
                                 "EdgeClipPreprocess.pixels(bitmap)")}
_VAR = {"image": "image", "text": "text", "zero-shot-head": "head"}


def _tower_fn(template: str, tower: str, a: dict) -> str:
    fn, arg, doc, data = _TOWER_DOC[tower]
    i, o = a["inputs"][0], a["outputs"][0]
    n = 1
    for d in i["shape"]:
        n *= int(d)
    itemsize = 4 if i["dtype"] in ("float32", "int32") else 1
    put = {"int32": f"asIntBuffer().put({data})", "uint8": f"put({data})"}.get(i["dtype"], f"asFloatBuffer().put({data})")
    if template is _ET_TOWER and i["dtype"] == "uint8":  # a Java byte[] is signed: say the bytes are uint8
        template = template.replace("Tensor.fromBlob(", "Tensor.fromBlobUnsigned(")
    return fill(template, {"DOC": doc, "FN": fn, "ARG": arg, "BYTES": n * itemsize, "IN": i["name"],
                           "INDTYPE": i["dtype"], "INSHAPE": shape_text(i["shape"]), "PUT": put,
                           "OUTARRAY": _kotlin_array(o["shape"]), "OUT": o["name"], "OUTDTYPE": o["dtype"],
                           "OUTSHAPE": shape_text(o["shape"]), "VAR": _VAR[tower], "ROW": _first_row(o["shape"]),
                           "DATA": data})


def _classify(manifest: dict, towers: dict) -> str:
    if not manifest.get("labels"):
        return ""
    out = '''
    private val labels = EdgeClipRank.loadLabels(String(assetBytes(context, EdgeClipBundle.LABELS_JSON), Charsets.UTF_8))
    private val labelEmbeddings = EdgeClipRank.loadNpy(assetBytes(context, EdgeClipBundle.LABEL_EMBEDDINGS))

    /** (label, probability), most likely first: stored label embeddings, no text tower run. */
    fun classify(bitmap: Bitmap): List<Pair<String, Float>> {
        val p = EdgeClipRank.rank(embedImage(bitmap), labelEmbeddings)
        return labels.indices.sortedByDescending { p[it] }.map { labels[it] to p[it] }
    }
'''
    if "zero-shot-head" in towers:
        out += '''
    /** The same ranking from the fused zero-shot head artifact (image -> label logits). */
    fun classifyWithHead(bitmap: Bitmap): List<Pair<String, Float>> {
        val p = EdgeClipRank.softmax(headLogits(bitmap))
        return labels.indices.sortedByDescending { p[it] }.map { labels[it] to p[it] }
    }
'''
    return out


def _tower_order(towers: dict) -> list[str]:
    return [t for t in ("image", "text", "zero-shot-head") if t in towers]


def litert_kt(manifest: dict, towers: dict) -> str:
    arts = [towers[t] for t in _tower_order(towers)]
    loads = "\n".join(f'    private val {_VAR[t]} = Interpreter(mapAsset(context, "{towers[t]["file"]}"), options)'
                      for t in _tower_order(towers))
    fns = "".join(_tower_fn(_LITERT_TOWER, t, towers[t]) for t in _tower_order(towers))
    return (header(manifest, arts, "LiteRT.kt") + '''
// Gradle: implementation("com.google.ai.edge.litert:litert:1.+") (LiteRT keeps the org.tensorflow.lite
// package), and for the tokenizer implementation("ai.djl.huggingface:tokenizers:0.+") with
// implementation("ai.djl.android:tokenizer-native:0.+") (DJL's Android build of Hugging Face tokenizers). Copy the bundle's artifacts/, labels/ and tokenizer/ into src/main/assets/ keeping their paths,
// and keep .tflite files uncompressed: androidResources { noCompress += "tflite" }.
package edgeclip.litert

import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer
import android.content.Context
import android.graphics.Bitmap
import org.json.JSONObject
import org.tensorflow.lite.Interpreter
import java.io.File
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel
import java.nio.file.Paths
import kotlin.math.exp
import kotlin.math.sqrt
''' + _common(manifest) + '''
fun mapAsset(context: Context, path: String): MappedByteBuffer {
    val fd = context.assets.openFd(path)
    FileInputStream(fd.fileDescriptor).use { stream ->
        return stream.channel.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
    }
}

class EdgeClipLiteRT(context: Context, threads: Int = @@THREADS@@) {
    private val options = Interpreter.Options().setNumThreads(threads)  // XNNPACK is on by default
@@LOADS@@
@@FNS@@@@CLASSIFY@@
    fun close() {
@@CLOSES@@
    }
}
''').replace("@@THREADS@@", str(manifest.get("bench", {}).get("threads", 2))).replace(
        "@@LOADS@@", loads).replace("@@FNS@@", fns).replace("@@CLASSIFY@@", _classify(manifest, towers)).replace(
        "@@CLOSES@@", "\n".join(f"        {_VAR[t]}.close()" for t in _tower_order(towers)))


def executorch_kt(manifest: dict, towers: dict) -> str:
    arts = [towers[t] for t in _tower_order(towers)]
    loads = "\n".join(f'    private val {_VAR[t]} = Module.load(assetFile(context, "{towers[t]["file"]}"))'
                      for t in _tower_order(towers))
    fns = "".join(_tower_fn(_ET_TOWER, t, towers[t]) for t in _tower_order(towers))
    return (header(manifest, arts, "ExecuTorch.kt") + '''
// Gradle: implementation("org.pytorch:executorch-android:1.+"), and for the tokenizer
// implementation("ai.djl.huggingface:tokenizers:0.+") with implementation("ai.djl.android:tokenizer-native:0.+"). Copy the bundle's artifacts/, labels/ and
// tokenizer/ into src/main/assets/ keeping their paths; Module.load needs a file path, so each .pte is
// copied from the assets to filesDir once. Inputs and outputs are positional in a .pte: the names below
// are the manifest's, for reading.
package edgeclip.executorch

import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer
import android.content.Context
import android.graphics.Bitmap
import org.json.JSONObject
import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.file.Paths
import kotlin.math.exp
import kotlin.math.sqrt
''' + _common(manifest) + '''
class EdgeClipExecuTorch(context: Context) {
@@LOADS@@
@@FNS@@@@CLASSIFY@@
    fun close() {
@@CLOSES@@
    }
}
''').replace("@@LOADS@@", loads).replace("@@FNS@@", fns).replace(
        "@@CLASSIFY@@", _classify(manifest, towers)).replace(
        "@@CLOSES@@", "\n".join(f"        {_VAR[t]}.destroy()" for t in _tower_order(towers)))
