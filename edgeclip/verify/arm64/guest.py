"""Runs inside the ARM64 twin: aarch64 python3 under qemu-user, with only numpy and the runtimes'
aarch64 wheels on its path (no torch, no edgeclip). Started as a script by ``arm64.run``.

``guest.py MODEL INPUTS.npy BATCH MODE OUT.npy``: loads an ``.onnx`` (ONNX Runtime, CPU, one
thread) or ``.tflite`` (ai-edge-litert's interpreter with its default XNNPACK delegate, one
thread) model and runs its first batch once (memory planning, weight packing: part of loading).
MODE ``outputs`` then runs every BATCH rows of INPUTS and writes the outputs; MODE k (0, 1, ...)
runs the first batch k more times and writes nothing, so that (count at k - count at 0) / k is
the instruction count of one inference.
One thread: the counting plugin's counter is exact only for a single guest thread, and a
second thread's spinning would add instructions that are not the model's.
"""
import gc
import os
import sys

import numpy as np


def _session(path):
    if path.endswith(".onnx"):
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return lambda x: sess.run(None, {name: x})[0]
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=path, num_threads=1)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]

    def run(x):
        it.set_tensor(inp, x)
        it.invoke()
        return it.get_tensor(out).copy()
    return run


def main(argv):
    model, inputs, batch, mode, out = argv[1], argv[2], int(argv[3]), argv[4], argv[5]
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    rows = np.load(inputs)
    run = _session(model)
    first = np.ascontiguousarray(rows[:batch])
    run(first)  # the first call plans memory and packs weights: part of loading, counted at k = 0 too
    gc.collect()
    gc.disable()  # a collection inside the counted runs would be counted as the model's
    if mode != "outputs":
        for _ in range(int(mode)):
            run(first)
        return 0
    outs = []  # verify.run.run_rows' padding, repeated here: the guest cannot import edgeclip
    for i in range(0, len(rows), batch):
        chunk = rows[i:i + batch]
        k = len(chunk)
        if k < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - k, axis=0)])
        outs.append(np.asarray(run(np.ascontiguousarray(chunk)), np.float32).reshape(batch, -1)[:k])
    np.save(out, np.concatenate(outs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
