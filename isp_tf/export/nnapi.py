"""Would the TFLite NNAPI delegate run every op of a ``.tflite`` at Android API 29?

Android 10 ships NNAPI 1.2.  The TFLite NNAPI delegate decides, op by op, what
it hands to NNAPI (``NNAPIDelegateKernel::Validate`` in
``tensorflow/lite/delegates/nnapi/nnapi_delegate.cc``); everything it refuses
runs on the CPU, splits the graph into partitions and costs copies.  This module
re-implements those checks for API 29 on the parsed flatbuffer, so a model can
be proven delegable on a machine without a phone::

    report = check_nnapi("microisp.tflite")
    print(report.format_table())
    report.ok        # True only when every op would be delegated

Each problem is a :class:`Finding` naming the op, its version and the *rule*
broken (a short id from :data:`RULES`).  The table follows the delegate source
where it and ``shared/NNAPI12.md`` disagree: CONV_2D is accepted up to version 3
(not 5) and TILE accepts int8 (the delegate converts it to uint8).  Delegate
behaviour that the table models beyond single ops:

* constant fp16 weights behind a DEQUANTIZE (FP16 export) are folded to fp32
  by the delegate, so those DEQUANTIZE ops are accepted;
* a tensor with an open dimension (-1 in the shape signature) is never
  delegated (``dynamic-shape``); neither is one of rank above 4 (``rank``).

Import cost: numpy and the flatbuffer schema only (no TensorFlow).
"""
from __future__ import annotations

import dataclasses
import json
from typing import Callable, Dict, List, Optional, Sequence

from isp_tf.export.flatbuffer import Operator, Tensor, TFLiteGraph, read_tflite

API_LEVEL = 29

#: rule id -> what it means (shown by ``check_nnapi.py --rules``).
RULES: Dict[str, str] = {
    "unsupported-op": "the delegate has no mapping for this op at this API level",
    "op-version": "op version above the highest the delegate accepts",
    "input-type": "input tensor type the op does not take at this API level",
    "output-type": "output tensor type the op does not produce at this API level",
    "int8-at-api29": "int8 tensors are not accepted by this op before API 30",
    "rank": "tensor of rank above 4",
    "dynamic-shape": "tensor with an open dimension (-1 in the shape signature)",
    "resize-flags": "resize with align_corners or half_pixel_centers set",
    "constant-input": "shape/size/permutation/axis operand must be a constant",
    "conv-bias": "CONV_2D without a bias operand",
    "fused-activation": "fused activation on an op that may not have one",
    "quantize-output": "QUANTIZE must output uint8 before API 30",
    "dequantize-zero-point": "DEQUANTIZE of int8 needs zero point 0 at API 29",
    "mul-quant-scale": "quantized MUL with input1*input2/output scale >= 1 (op v3)",
    "mean-quant-params": "quantized MEAN needs the same scale and zero point in and out",
    "pool-filter-area": "quantized AVERAGE_POOL_2D filter area above 256",
    "scalar-output": "op would produce a scalar",
    "strided-slice-mask": "STRIDED_SLICE with ellipsis or new-axis mask",
    "batch-to-space-crops": "BATCH_TO_SPACE_ND with non-zero crops",
    "keep-num-dims": "FULLY_CONNECTED with keep_num_dims (API 30)",
    "empty-tensor": "tensor with no elements",
    "scalar-operand": "non-constant scalar operand",
}

F32, F16, I32, U8, I8, BOOL = "float32", "float16", "int32", "uint8", "int8", "bool"
FLOAT_Q8 = (F32, U8, I8)


@dataclasses.dataclass(frozen=True)
class Finding:
    """One reason why op ``op_index`` (``op`` v``version``) stays on the CPU."""

    op_index: int
    op: str
    version: int
    rule: str
    message: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class NNAPIReport:
    """Verdict for one model.  ``ok`` is true when no op has a finding."""

    source: str
    api_level: int
    ops: List[Operator]
    findings: List[Finding]

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def rejected_ops(self) -> List[int]:
        return sorted({f.op_index for f in self.findings})

    def ops_used(self) -> Dict[str, int]:
        used: Dict[str, int] = {}
        for op in self.ops:
            used[op.name] = max(op.version, used.get(op.name, 0))
        return dict(sorted(used.items()))

    def rules_broken(self) -> List[str]:
        return sorted({f.rule for f in self.findings})

    def summary(self) -> str:
        n, bad = len(self.ops), len(self.rejected_ops)
        if self.ok:
            return f"NNAPI API {self.api_level}: all {n} ops would be delegated"
        return (f"NNAPI API {self.api_level}: {bad} of {n} ops would stay on the CPU "
                f"(rules broken: {', '.join(self.rules_broken())})")

    def format_table(self, all_ops: bool = False) -> str:
        """A per-op text table: every op with ``all_ops``, else only the rejected ones."""
        by_op: Dict[int, List[Finding]] = {}
        for f in self.findings:
            by_op.setdefault(f.op_index, []).append(f)
        rows = [("#", "op", "ver", "verdict", "rule", "detail")]
        for op in self.ops:
            found = by_op.get(op.index, [])
            if not found and not all_ops:
                continue
            if not found:
                rows.append((str(op.index), op.name, str(op.version), "NNAPI", "", ""))
            for j, f in enumerate(found):
                rows.append((str(op.index) if j == 0 else "", op.name if j == 0 else "",
                             str(op.version) if j == 0 else "", "CPU" if j == 0 else "",
                             f.rule, f.message))
        for f in by_op.get(-1, []):  # model-level findings (control flow)
            rows.append(("-", f.op, "", "CPU", f.rule, f.message))
        widths = [max(len(r[c]) for r in rows) for c in range(5)]
        lines = ["  ".join(r[c].ljust(widths[c]) for c in range(5)) + "  " + r[5] for r in rows]
        lines.insert(1, "-" * min(120, sum(widths) + 10 + max(len(r[5]) for r in rows)))
        if len(rows) == 1:
            lines = []
        return "\n".join([self.summary()] + lines)

    def to_dict(self) -> dict:
        return {"source": self.source, "api_level": self.api_level, "ok": self.ok,
                "num_ops": len(self.ops), "rejected_ops": self.rejected_ops,
                "rules_broken": self.rules_broken(), "ops_used": self.ops_used(),
                "findings": [f.to_dict() for f in self.findings]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


# ---------------------------------------------------------------------------
# the per-op table
# ---------------------------------------------------------------------------
class _Ctx:
    """Collects findings for one op; small helpers keep the rule table readable."""

    def __init__(self, op: Operator, api: int, graph: TFLiteGraph, folded=frozenset()):
        self.op, self.api, self.graph = op, api, graph
        self.folded = folded  # fp32 outputs of DEQUANTIZE(constant fp16): constants to the delegate
        self.findings: List[Finding] = []

    def is_const(self, t: Optional[Tensor]) -> bool:
        return t is not None and (t.constant or t.index in self.folded)

    def fail(self, rule: str, message: str):
        self.findings.append(Finding(self.op.index, self.op.name, self.op.version, rule, message))

    def expect(self, cond: bool, rule: str, message: str):
        if not cond:
            self.fail(rule, message)

    def max_version(self, v: int):
        self.expect(self.op.version <= v, "op-version",
                    f"{self.op.name} v{self.op.version} but the delegate accepts up to v{v}")

    def min_api(self, level: int, why: str = ""):
        self.expect(self.api >= level, "unsupported-op",
                    f"{self.op.name} is delegated from API {level}, not at {self.api}"
                    + (f"; {why}" if why else ""))

    def in_type(self, types: Sequence[str], i: int = 0, what: str = "input"):
        t = self.op.input(i)
        if t is None:
            return
        if t.dtype not in types:
            rule = "int8-at-api29" if t.dtype == I8 and self.api < 30 else "input-type"
            self.fail(rule, f"{what} {t.describe()} is {t.dtype}; accepted: {', '.join(types)}")

    def const(self, i: int, what: str):
        t = self.op.input(i)
        self.expect(self.is_const(t), "constant-input",
                    f"{what} operand must be a constant tensor"
                    + ("" if t is None else f", got {t.describe()}"))

    def no_activation(self, opts):
        act = getattr(opts, "fusedActivationFunction", 0) if opts is not None else 0
        self.expect(act == 0, "fused-activation",
                    f"{self.op.name} with a fused activation (code {act}) is not delegated")

    def non_scalar_output(self):
        out = self.op.outputs[0]
        self.expect(out.rank > 0, "scalar-output", f"{self.op.name} output {out.describe()} is a scalar")


def _same_quant(a: Tensor, b: Tensor) -> bool:
    return tuple(a.scale[:1]) == tuple(b.scale[:1]) and tuple(a.zero_point[:1]) == tuple(b.zero_point[:1])


def _q(t: Tensor) -> str:
    scale = t.scale[0] if t.scale else 0.0
    zp = t.zero_point[0] if t.zero_point else 0
    return f"{scale:.6g} zero point {zp}"


def _float_or_q8(c: _Ctx, v: int):
    c.max_version(v)
    c.in_type(FLOAT_Q8)


def _check_add(c):
    _float_or_q8(c, 2)


def _check_mul(c):
    c.max_version(2)
    c.in_type(FLOAT_Q8)
    a, b, out = c.op.input(0), c.op.input(1), c.op.outputs[0]
    if a is not None and b is not None and a.quantized and b.quantized and out.quantized:
        ratio = a.scale[0] * b.scale[0] / out.scale[0]
        c.expect(ratio < 1.0, "mul-quant-scale",
                 f"input scales {a.scale[0]:.4g} * {b.scale[0]:.4g} / output scale "
                 f"{out.scale[0]:.4g} = {ratio:.3g} >= 1 needs MUL v3, which the delegate "
                 "takes only with a named accelerator")


def _check_avg_pool(c):
    _float_or_q8(c, 2)
    o = c.op.options
    t = c.op.input(0)
    if t is not None and t.dtype in (U8, I8) and o is not None:
        area = o.filterWidth * o.filterHeight
        c.expect(area <= 256, "pool-filter-area",
                 f"quantized filter {o.filterHeight}x{o.filterWidth} = {area} > 256 overflows "
                 "the reference CPU path; the delegate refuses it without a named accelerator")


def _check_conv(c):
    c.max_version(3)
    bias = c.op.input(2)
    c.expect(len(c.op.inputs) >= 3 and bias is not None, "conv-bias",
             "CONV_2D with omitted bias is not delegated (give the layer a bias)")


def _check_depthwise(c):
    c.max_version(3)


def _check_fc(c):
    c.max_version(5)
    out = c.op.outputs[0]
    c.expect(out.dtype != "int16", "output-type", "int16 output")
    if getattr(c.op.options, "keepNumDims", False):
        c.expect(c.api >= 30, "keep-num-dims", "FULLY_CONNECTED keep_num_dims=True needs API 30")


def _check_hard_swish(c):
    c.in_type(FLOAT_Q8)


def _check_softmax(c):
    c.max_version(2)
    c.in_type(FLOAT_Q8)
    t = c.op.input(0)
    c.expect(t is None or t.rank <= 4, "rank", "SOFTMAX input rank above 4")


def _check_reshape(c):
    c.max_version(1)
    c.in_type(FLOAT_Q8)
    if len(c.op.inputs) >= 2 and c.op.input(1) is not None:
        c.const(1, "new shape")
    c.non_scalar_output()


def _check_resize(c, nearest: bool):
    c.max_version(3)
    if nearest:
        c.min_api(29)
    t = c.op.input(0)
    if not nearest:
        c.expect(t is None or t.rank == 4, "rank", "RESIZE_BILINEAR input must have rank 4")
    c.in_type(FLOAT_Q8)
    c.expect(len(c.op.inputs) >= 2, "constant-input", "resize without a size operand")
    if len(c.op.inputs) >= 2:
        c.const(1, "size")
    o = c.op.options
    if c.api <= 29 and o is not None:
        c.expect(not o.alignCorners, "resize-flags",
                 "align_corners=True is not delegated at API 29: resize with both flags false "
                 "(isp_tf.export.keras_rewrites.ResizeBilinear) or use depth_to_space")
        c.expect(not o.halfPixelCenters, "resize-flags",
                 "half_pixel_centers=True (TF2 tf.image.resize / Keras UpSampling2D default) is "
                 "not delegated at API 29: use isp_tf.export.keras_rewrites.ResizeBilinear or "
                 "depth_to_space")


def _check_concat(c):
    c.max_version(2)
    c.no_activation(c.op.options)
    t = c.op.input(0)
    c.expect(t is None or t.rank <= 4, "rank", "CONCATENATION input rank above 4")
    c.in_type((F16, F32, U8, I8))


def _check_dequantize(c):
    t = c.op.input(0)
    if t is not None and t.dtype == F16 and t.constant:
        return  # FP16 weights: the delegate folds them to fp32 constants
    c.expect(c.op.version in (1, 2), "op-version", f"DEQUANTIZE v{c.op.version}: only v1 and v2")
    if t is None:
        return
    if t.dtype == F16:
        c.expect(c.api >= 30, "input-type", "DEQUANTIZE of a non-constant fp16 tensor needs API 30")
        return
    if t.dtype not in (U8, I8):
        c.fail("input-type", f"DEQUANTIZE input {t.describe()}: only uint8/int8")
    elif t.dtype == I8 and c.api == 29:
        zp = t.zero_point[0] if t.zero_point else 0
        c.expect(zp == 0, "dequantize-zero-point",
                 f"int8 DEQUANTIZE with zero point {zp} stays on the CPU at API 29 "
                 "(export with --io int8 so the model has no DEQUANTIZE)")


def _check_quantize(c):
    c.max_version(2)
    c.min_api(29)
    t, out = c.op.input(0), c.op.outputs[0]
    if t is not None:
        c.expect(t.dtype in FLOAT_Q8, "input-type", f"QUANTIZE input {t.describe()}")
    allowed = (U8,) if c.api < 30 else (U8, I8)
    c.expect(out.dtype in allowed, "quantize-output",
             f"QUANTIZE to {out.dtype} is not delegated at API {c.api} (only uint8 output); "
             "a full-int8 model with --io int8 needs no QUANTIZE op")


def _check_tanh(c):
    c.max_version(2)
    t = c.op.input(0)
    if t is not None:
        c.expect(t.dtype == F32 or (t.dtype in (U8, I8) and c.api >= 29), "input-type",
                 f"TANH input {t.describe()}")


def _check_sub(c):
    c.max_version(3)
    t = c.op.input(0)
    if t is not None:
        ok = (t.dtype == F32 and c.api >= 28) or (t.dtype in (U8, I8) and c.api >= 29) or \
             (t.dtype == I32 and c.api >= 30)
        c.expect(ok, "input-type", f"SUB input {t.describe()}")
    for i in (0, 1):
        u = c.op.input(i)
        c.expect(u is None or u.rank <= 4, "rank", f"SUB input {i} rank above 4")


def _check_div(c):
    c.max_version(1)
    c.min_api(28)
    c.in_type((F32,))


def _check_pad(c):
    c.max_version(2)
    c.in_type(FLOAT_Q8)
    c.min_api(28)
    t = c.op.input(0)
    c.expect(t is None or 0 not in t.shape, "empty-tensor", "PAD of an empty tensor")
    c.expect(len(c.op.inputs) >= 2, "constant-input", "PAD without paddings")


def _check_batch_to_space(c):
    c.max_version(2)
    c.min_api(28)
    crops = c.op.input(2)
    ok = crops is not None and crops.constant and crops.data is not None and \
        crops.data.size == 4 and not crops.data.any()
    c.expect(ok, "batch-to-space-crops", "crops must be a constant [[0, 0], [0, 0]]")


def _check_strided_slice(c):
    c.max_version(2)
    c.min_api(28)
    o = c.op.options
    if o is not None:
        c.expect(not o.ellipsisMask and not o.newAxisMask, "strided-slice-mask",
                 "ellipsis or new-axis mask")
    t = c.op.input(0)
    c.expect(t is None or t.rank <= 4, "rank", "STRIDED_SLICE input rank above 4")


def _check_transpose(c):
    c.max_version(2)
    c.min_api(28)
    c.expect(len(c.op.inputs) > 1, "constant-input", "TRANSPOSE without permutation")
    if len(c.op.inputs) > 1:
        c.const(1, "permutation")
    t = c.op.input(0)
    c.expect(t is None or t.rank <= 4, "rank", "TRANSPOSE input rank above 4")


def _float_unary_29(c):
    c.max_version(1)
    c.min_api(29)
    c.in_type((F32,))


def _check_slice(c):
    c.max_version(2)
    c.min_api(29)
    c.in_type((F32, I32, U8, I8))
    c.in_type((I32,), 1, "begin")
    c.in_type((I32,), 2, "size")


def _check_transpose_conv(c):
    c.max_version(3)
    c.min_api(29)
    c.const(0, "output_shape")
    c.const(1, "weights")
    if getattr(c.op.options, "fusedActivationFunction", 0):
        c.fail("fused-activation", "TRANSPOSE_CONV with a fused activation (op v4) is not "
               "delegated: apply the activation as its own op")


def _check_space_to_depth(c):
    c.max_version(2)
    c.in_type((F32, U8, I8))


def _check_depth_to_space(c):
    c.in_type((F32, U8, I8))


def _check_mean(c):
    c.max_version(2)
    c.min_api(28)
    t, out = c.op.input(0), c.op.outputs[0]
    if t is not None:
        ok = t.dtype == F32 or (t.dtype in (U8, I8) and c.api >= 29)
        c.expect(ok, "input-type", f"MEAN input {t.describe()}")
    c.non_scalar_output()
    if t is not None and (t.quantized or out.quantized):
        c.expect(_same_quant(t, out), "mean-quant-params",
                 f"quantized MEAN: input scale {_q(t)} but output {_q(out)}; NNAPI needs them "
                 "equal (isp_tf.export.tflite_passes.align_mean_quantization fixes this)")


def _check_min_max(c):
    c.max_version(3)
    c.min_api(29)
    c.in_type((F32, U8, I8, I32))
    for i in (0, 1):
        t = c.op.input(i)
        if t is not None and t.rank == 0:
            c.expect(c.is_const(t), "scalar-operand", f"scalar operand {i} must be constant")


def _check_cast(c):
    c.max_version(1)
    c.min_api(29)
    types = (F32, I32, U8) if c.api < 30 else (F32, I32, U8, I8)
    c.in_type(types)
    out = c.op.outputs[0]
    if out.dtype not in types:
        rule = "int8-at-api29" if out.dtype == I8 else "output-type"
        c.fail(rule, f"CAST output {out.describe()}; accepted: {', '.join(types)}")


def _check_prelu(c):
    c.max_version(1)
    c.min_api(29)
    c.in_type((F32, U8, I8))


def _check_tile(c):
    c.max_version(1)
    c.min_api(29)
    c.in_type((F32, I8, U8, I32))
    c.in_type((I32,), 1, "multipliers")


def _check_gather(c):
    c.max_version(2)
    c.min_api(29)
    c.in_type((F32, F16, I32, U8, I8))
    c.in_type((I32,), 1, "positions")


def _check_expand_dims(c):
    c.max_version(1)
    c.min_api(29)
    c.in_type((F32, F16, I32, U8, I8))
    c.const(1, "axis")


def _check_split(c):
    c.max_version(3)
    c.min_api(29)
    types = (F32, U8, I32) if c.api < 30 else (F32, U8, I8, I32)
    c.in_type(types, 1, "value")
    c.const(0, "axis")


def _check_reduce_minmax(c):
    c.max_version(2)
    c.min_api(29)
    c.in_type((F32, U8, I8))
    c.non_scalar_output()


def _check_sum(c):
    c.max_version(1)
    c.min_api(29)
    c.non_scalar_output()
    c.in_type((F32,))


def _check_l2norm(c):
    c.max_version(2)
    c.no_activation(c.op.options)


def _check_squeeze(c):
    c.max_version(1)
    c.min_api(28)


def _check_relu_like(c):
    _float_or_q8(c, 2)


def _check_max_pool(c):
    _float_or_q8(c, 2)


def _check_floor(c):
    c.max_version(1)


def _check_neg(c):
    c.max_version(2)
    c.min_api(28)
    c.in_type((F32, I32))


def _check_compare(c):
    c.max_version(2)
    c.min_api(28)
    c.in_type((F32, U8, I8, BOOL, I32))


def _check_space_to_batch(c):
    c.max_version(2)
    c.min_api(28)


def _check_log_softmax(c):
    c.max_version(1)
    c.min_api(29)
    c.in_type((F32,))


def _check_argmax(c):
    c.max_version(2)
    c.min_api(29)
    c.in_type((F16, F32, I32, U8, I8))


def _check_l2_pool(c):
    c.max_version(1)
    c.in_type((F32,))


def _check_version_only(v: int, min_api: int = 27) -> Callable[[_Ctx], None]:
    def check(c):
        c.max_version(v)
        c.min_api(min_api)
    return check


def _check_select(c):
    c.max_version(2)
    c.min_api(28)
    c.in_type((F32, I32, U8, I8), 1, "value")


def _check_topk(c):
    c.max_version(2)
    c.min_api(29)
    c.in_type((F32, I32, U8, I8))
    c.const(1, "k")


def _check_logical(c):
    c.max_version(1)
    c.min_api(29)
    c.in_type((BOOL,))


def _not_at_29(min_api: int, advice: str) -> Callable[[_Ctx], None]:
    def check(c):
        c.min_api(min_api, advice)
    return check


_CHECKS: Dict[str, Callable[[_Ctx], None]] = {
    "ADD": _check_add,
    "MUL": _check_mul,
    "AVERAGE_POOL_2D": _check_avg_pool,
    "MAX_POOL_2D": _check_max_pool,
    "CONV_2D": _check_conv,
    "DEPTHWISE_CONV_2D": _check_depthwise,
    "FULLY_CONNECTED": _check_fc,
    "HARD_SWISH": _check_hard_swish,
    "SOFTMAX": _check_softmax,
    "RESHAPE": _check_reshape,
    "RESIZE_BILINEAR": lambda c: _check_resize(c, nearest=False),
    "RESIZE_NEAREST_NEIGHBOR": lambda c: _check_resize(c, nearest=True),
    "SQUEEZE": _check_squeeze,
    "L2_NORMALIZATION": _check_l2norm,
    "CONCATENATION": _check_concat,
    "DEQUANTIZE": _check_dequantize,
    "QUANTIZE": _check_quantize,
    "FLOOR": _check_floor,
    "RELU": _check_relu_like,
    "RELU_N1_TO_1": _check_relu_like,
    "RELU6": _check_relu_like,
    "LOGISTIC": _check_relu_like,
    "TANH": _check_tanh,
    "SUB": _check_sub,
    "DIV": _check_div,
    "PAD": _check_pad,
    "PADV2": _check_pad,
    "SPACE_TO_BATCH_ND": _check_space_to_batch,
    "BATCH_TO_SPACE_ND": _check_batch_to_space,
    "STRIDED_SLICE": _check_strided_slice,
    "TRANSPOSE": _check_transpose,
    "ABS": _float_unary_29,
    "EXP": _float_unary_29,
    "LOG": _float_unary_29,
    "RSQRT": _float_unary_29,
    "POW": _float_unary_29,
    "SQRT": _float_unary_29,
    "SIN": _float_unary_29,
    "SLICE": _check_slice,
    "TRANSPOSE_CONV": _check_transpose_conv,
    "SPACE_TO_DEPTH": _check_space_to_depth,
    "DEPTH_TO_SPACE": _check_depth_to_space,
    "MEAN": _check_mean,
    "MAXIMUM": _check_min_max,
    "MINIMUM": _check_min_max,
    "CAST": _check_cast,
    "PRELU": _check_prelu,
    "LEAKY_RELU": _check_prelu,
    "TILE": _check_tile,
    "GATHER": _check_gather,
    "EXPAND_DIMS": _check_expand_dims,
    "SPLIT": _check_split,
    "REDUCE_MAX": _check_reduce_minmax,
    "REDUCE_MIN": _check_reduce_minmax,
    "SUM": _check_sum,
    "REDUCE_PROD": _check_sum,
    "NEG": _check_neg,
    "LESS": _check_compare, "LESS_EQUAL": _check_compare, "GREATER": _check_compare,
    "GREATER_EQUAL": _check_compare, "EQUAL": _check_compare, "NOT_EQUAL": _check_compare,
    "LOG_SOFTMAX": _check_log_softmax,
    "ARG_MAX": _check_argmax,
    "ARG_MIN": _check_argmax,
    "L2_POOL_2D": _check_l2_pool,
    "LOCAL_RESPONSE_NORMALIZATION": _check_version_only(1),
    "SELECT": _check_select,
    "TOPK_V2": _check_topk,
    "LOGICAL_AND": _check_logical, "LOGICAL_OR": _check_logical, "LOGICAL_NOT": _check_logical,
    "REDUCE_ANY": _check_version_only(2, 29),
    "ELU": _not_at_29(30, "write it as relu(x) + exp(min(x, 0)) - 1 (isp_tf.export.keras_rewrites.elu)"),
    "PACK": _not_at_29(30, "concatenate along an existing axis instead"),
    "FILL": _not_at_29(30, "use a constant"),
}

#: advice for ops the delegate never maps (shown with ``unsupported-op``).
_NEVER = {
    "GELU": "use a tanh/sigmoid approximation from delegated ops",
    "MIRROR_PAD": "pad with constant PAD, or build the border from STRIDED_SLICE + CONCATENATION",
    "BATCH_MATMUL": "use FULLY_CONNECTED or CONV_2D 1x1",
    "UNPACK": "use STRIDED_SLICE",
    "ROUND": "avoid rounding inside the model",
    "SQUARED_DIFFERENCE": "write (a - b) * (a - b) (instance norm: isp_tf.export.keras_rewrites.instance_norm)",
    "SPLIT_V": "use STRIDED_SLICE per piece",
    "SQUARE": "write x * x",
}


def check_graph(graph: TFLiteGraph, api_level: int = API_LEVEL, source: str = "<graph>") -> NNAPIReport:
    """Run every rule on a parsed graph (see :func:`check_nnapi`).

    Raises :class:`~isp_tf.errors.ExportError` for a damaged graph: an op without outputs, or
    whose operands are not those its op type takes (a rule then cannot read them).
    """
    from isp_tf.errors import ExportError

    for op in graph.operators:
        if not op.outputs:
            raise ExportError(f"{source}: damaged TFLite graph (operator {op.index}, {op.name}, has no output)")
    findings: List[Finding] = []
    # FP16 models: the delegate folds DEQUANTIZE(constant fp16) into fp32 constants
    # (FP16GraphPartitionHelper), so those outputs count as constant operands.
    folded = frozenset(op.outputs[0].index for op in graph.operators
                       if op.name == "DEQUANTIZE" and op.input(0) is not None
                       and op.input(0).dtype == F16 and op.input(0).constant)
    for op in graph.operators:
        ctx = _Ctx(op, api_level, graph, folded)
        check = _CHECKS.get(op.name)
        if check is None and op.name in _NEVER:
            ctx.fail("unsupported-op", f"{op.name} is never delegated at API {api_level}: "
                     f"{_NEVER[op.name]}")
        elif check is None:
            ctx.fail("unsupported-op", f"{op.name} is not in isp_tf's API-{api_level} table (image-model "
                     "ops; recurrent and lookup ops are not modelled): treated as refused")
        else:
            try:
                check(ctx)
            except (IndexError, AttributeError, TypeError, ValueError) as exc:
                raise ExportError(f"{source}: damaged TFLite graph (operator {op.index}, {op.name} "
                                  f"v{op.version}: its operands are not those of the op: "
                                  f"{type(exc).__name__}: {exc})") from None
        # delegate-wide rules on every non-constant tensor the op touches
        seen = set()
        for t in list(op.inputs) + list(op.outputs):
            if t is None or ctx.is_const(t) or t.index in seen:
                continue
            seen.add(t.index)
            if t.dynamic:
                ctx.fail("dynamic-shape", f"tensor {t.describe()} has an open dimension: "
                         "export with a fixed input size")
            if t.rank > 4:
                ctx.fail("rank", f"tensor {t.describe()} has rank {t.rank} > 4")
        findings.extend(ctx.findings)
    if graph.num_subgraphs > 1:
        findings.append(Finding(-1, "<model>", 0, "unsupported-op",
                                f"{graph.num_subgraphs} subgraphs: control flow is not delegated"))
    return NNAPIReport(source, api_level, list(graph.operators), findings)


def check_nnapi(src, api_level: int = API_LEVEL) -> NNAPIReport:
    """Check a ``.tflite`` (path or bytes) against the NNAPI delegate's rules at ``api_level``."""
    graph = read_tflite(src)
    source = src if isinstance(src, str) else ("<bytes>" if isinstance(src, (bytes, bytearray)) else str(src))
    return check_graph(graph, api_level, source)


def nnapi_error(report: NNAPIReport, context: str = ""):
    """The :class:`~isp_tf.errors.NNAPIValidationError` for a failed report."""
    from isp_tf.errors import NNAPIValidationError
    head = f"{context}: " if context else ""
    return NNAPIValidationError(
        f"{head}{report.summary()}\n{report.format_table()}\n"
        "(pass --allow-cpu-fallback to write the file anyway)", report=report)


__all__ = ["API_LEVEL", "RULES", "Finding", "NNAPIReport", "check_graph", "check_nnapi", "nnapi_error"]
