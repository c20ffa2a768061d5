"""Serves LiteRT model calls to the Kotlin core over stdin/stdout (the JVM side of tests/android).

Usage: ``python tests/android/litert_server.py MODEL.tflite [MODEL.tflite ...]`` (or a tile
manifest, whose pass models are served in pass order; or ``--segments MANIFEST``: its segment
models, in the order of the Kotlin ``TileManifest.segmentModels``). Request ``model`` k runs the
k-th model.
The protocol (little-endian) is documented in
``android_demo/core/src/test/kotlin/io/isptf/core/PipeModelRunner.kt``: tensors cross the pipe
as the model takes them (int8/uint8 already quantised by the Kotlin core), so this helper sets
and reads raw tensors, as the Android ``Interpreter`` does.
"""
import json
import pathlib
import struct
import sys

import numpy as np

from isp_tf.runtime.session import LiteRtSession

DTYPES = [np.float32, np.int8, np.uint8]
LOG = None  # a list to record the requests in (debugging)


def _read(stream, n):
    data = stream.read(n)
    if len(data) != n:
        raise EOFError
    return data


def segment_models(manifest: pathlib.Path) -> list:
    """The segment model files of a tile manifest in ``TileManifest.segmentModels`` order: segment by
    segment, its local model, then its statistics models that have one; the per-frame model last."""
    m = json.loads(pathlib.Path(manifest).read_text())
    names = []
    for seg in m["segments"]:
        names += [part["model"] for part in [seg.get("local")] + seg["stats"] if part and part.get("model")]
    if m.get("per_frame"):
        names.append(m["per_frame"]["model"])
    return [pathlib.Path(manifest).parent / n for n in names]


def _models(args):
    paths = []
    segments = False
    for arg in args:
        if arg == "--segments":
            segments = True
            continue
        p = pathlib.Path(arg)
        if segments:
            paths += segment_models(p)
            segments = False
        elif p.name.endswith(".tiling.json"):
            paths += [p.parent / pass_["model"] for pass_ in json.loads(p.read_text())["passes"]]
        else:
            paths.append(p)
    return paths


def serve(paths, stdin, stdout):
    sessions = {}
    while True:
        try:
            model, count = struct.unpack("<ii", _read(stdin, 8))
        except EOFError:
            return
        if model < 0:
            return
        arrays = []
        for _ in range(count):
            dtype, rank = struct.unpack("<ii", _read(stdin, 8))
            shape = struct.unpack(f"<{rank}i", _read(stdin, 4 * rank))
            _scale, _zero = struct.unpack("<di", _read(stdin, 12))
            dt = np.dtype(DTYPES[dtype]).newbyteorder("<")
            n = int(np.prod(shape))
            arrays.append(np.frombuffer(_read(stdin, n * dt.itemsize), dt).reshape(shape).astype(DTYPES[dtype]))
        if LOG is not None:
            LOG.append((model, [a.copy() for a in arrays]))
        try:
            if model >= len(paths):
                raise ValueError(f"model {model} of {len(paths)}")
            if model not in sessions:
                sessions[model] = LiteRtSession(str(paths[model]), threads=1, runtime="builtin")
            session = sessions[model]
            if len(arrays) != len(session.inputs):
                raise ValueError(f"{paths[model].name} takes {len(session.inputs)} inputs, got {len(arrays)}")
            for d, a in zip(session.inputs, arrays):
                if np.dtype(d["dtype"]) != a.dtype:
                    raise ValueError(f"input {d['name']} is {np.dtype(d['dtype']).name}, got {a.dtype.name}")
            session.resize(*(a.shape for a in arrays))
            it = session.interpreter
            for d, a in zip(session.inputs, arrays):
                it.set_tensor(d["index"], a)
            it.invoke()
            outs = [(d, it.get_tensor(d["index"])) for d in session.outputs]
        except Exception as exc:  # noqa: BLE001 - reported to the Kotlin side
            msg = f"{type(exc).__name__}: {exc}".encode()
            stdout.write(struct.pack("<ii", 1, len(msg)) + msg)
            stdout.flush()
            continue
        reply = [struct.pack("<ii", 0, len(outs))]
        for d, y in outs:
            scale, zero = d.get("quantization", (0.0, 0)) or (0.0, 0)
            reply.append(struct.pack("<ii", DTYPES.index(y.dtype.type), y.ndim) + struct.pack(f"<{y.ndim}i", *y.shape))
            reply.append(struct.pack("<di", float(scale), int(zero)))
            reply.append(np.ascontiguousarray(y, y.dtype.newbyteorder("<")).tobytes())
        stdout.write(b"".join(reply))
        stdout.flush()


if __name__ == "__main__":
    serve(_models(sys.argv[1:]), sys.stdin.buffer, sys.stdout.buffer)
