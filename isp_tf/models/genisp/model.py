"""GenISP's graph (Morawski et al., "GenISP: Neural ISP for Low-Light Machine Cognition", arXiv 2205.03688).

Top to bottom, as the paper's Figure 3::

    packed Bayer (h, w, 4) [R, G1, G2, B], (raw - black) / (white - black)
      -> average the greens                 (h, w, 3) camera RGB          AverageGreens
      -> camera RGB -> XYZ, the file's own  cam_to_xyz (per-frame input)  ApplyMatrix
      -> ConvWB: 3 gains from a S x S resize of the image, per image      Multiply
      -> ConvCC: a 3x3 matrix from a S x S resize of the result, per image ApplyMatrix
      -> shallow ConvNet: Conv3x3 3->16, IN, LReLU; Conv3x3 16->64, IN, LReLU; Conv1x1 64->3
      -> (h, w, 3) image for the detector (output scale 1: the packed resolution)

ConvWB and ConvCC share one body shape (``_wbcc_body``): on a ``S x S``
(published 256) bilinear resize, Conv7x7 -> 16, LReLU, MaxPool 2; Conv5x5 ->
32, LReLU, MaxPool 2; Conv3x3 -> ``wbcc_width`` (published 128), LReLU,
MaxPool 2 (Figure 3 has it before the pooling); global average pool; one
dense layer -> 3 gains (ConvWB) or 9 values, a row-major 3x3 matrix
(ConvCC).  Every image of a batch gets its own gains and matrix (the
reproduction JPTolen/Genisp_reproduction averaged them over the batch).

Ops (NNAPI 1.2): CONV_2D, LEAKY_RELU, MAX_POOL_2D, MEAN, FULLY_CONNECTED,
RESIZE_BILINEAR (both flags false, constant size), RESHAPE, MUL, ADD, SUB,
RSQRT, CONCATENATION.

Tiling: the resize sees the whole frame, so the 12 numbers ConvWB/ConvCC
compute are whole-frame values that the spatial-mean protocol of
:class:`~isp_tf.layers.GlobalStatsLayer` cannot carry (a resize to a fixed
grid is not the mean of a per-pixel quantity of bounded size).  Tiled
inference is exact by splitting the model there (:func:`split_genisp`):
``params`` (packed, cam_to_xyz) -> the 12 per-frame values, run once on the
whole frame (its input is a 256 x 256 resize, cheap at any frame size), and
``render`` (packed, cam_to_xyz, params) -> image, which is local except for
its :class:`~isp_tf.layers.InstanceNorm` layers and tiles exactly with the
per-frame vectors.

Where we differ from the authors' code (the paper ships none; the two
reproductions rorevillaca/GenISP and JPTolen/Genisp_reproduction):

* cam_to_xyz is the INVERSE of the file's XYZ -> camera matrix (rorevillaca
  applies rawpy's rgb_xyz_matrix uninverted and skips the black level); it
  is a per-frame input port (9 values, row-major), so exports and tiles carry it.
* The resize has ``half_pixel_centers=False`` (NNAPI 1.2 refuses the TF2
  default); the sampling grid is shifted by half a pixel against PyTorch's
  ``F.interpolate(align_corners=False)``.
* ConvWB/ConvCC's dense layers start at the identity (bias: gains 1, the
  identity matrix; kernel N(0, 1e-3)), so training starts from the plain
  XYZ image rather than from random colours.
* The output is not clipped (the detector takes any real values).
"""
from __future__ import annotations


import numpy as np

from isp_tf._keras import keras, tf
from isp_tf.errors import InputShapeError
from isp_tf.layers import InstanceNorm
from isp_tf.layers.color import apply_color_matrix

__all__ = ["AverageGreens", "ApplyMatrix", "ThumbnailResize", "build_genisp", "split_genisp"]

WB_NAME, CC_NAME = "conv_wb", "conv_cc"


@keras.utils.register_keras_serializable(package="isp_tf.genisp")
class AverageGreens(keras.layers.Layer):
    """Packed ``[R, G1, G2, B]`` -> ``[R, (G1 + G2) / 2, B]`` (one constant 1x1 CONV_2D)."""

    def call(self, x):
        kernel = np.zeros((1, 1, 4, 3), np.float32)
        kernel[0, 0, 0, 0] = 1.0
        kernel[0, 0, 1, 1] = kernel[0, 0, 2, 1] = 0.5
        kernel[0, 0, 3, 2] = 1.0
        return tf.nn.conv2d(x, tf.constant(kernel), 1, "VALID")

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)[:-1].concatenate([3])


@keras.utils.register_keras_serializable(package="isp_tf.genisp")
class ApplyMatrix(keras.layers.Layer):
    """``[image (B, h, w, 3), m (B, 9)] -> out[..., i] = sum_j m[b, 3 i + j] image[..., j]``, per image.

    As NNAPI 1.2 ops: :func:`isp_tf.layers.color.apply_color_matrix`.
    """

    def call(self, inputs):
        image, m = inputs
        return apply_color_matrix(image, m)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape[0])


@keras.utils.register_keras_serializable(package="isp_tf.genisp")
class ThumbnailResize(keras.layers.Layer):
    """Bilinear resize to a fixed ``size x size`` (RESIZE_BILINEAR, both align flags false: NNAPI 1.2)."""

    def __init__(self, size: int = 256, **kwargs):
        super().__init__(**kwargs)
        self.size = int(size)

    def call(self, x):
        return tf.compat.v1.image.resize_bilinear(x, [self.size, self.size], align_corners=False,
                                                  half_pixel_centers=False)

    def compute_output_shape(self, input_shape):
        b, _, _, c = tf.TensorShape(input_shape).as_list()
        return tf.TensorShape([b, self.size, self.size, c])

    def get_config(self):
        return {**super().get_config(), "size": self.size}


def _wbcc_body(x, prefix, width, outputs, bias):
    """ConvWB / ConvCC: 3 conv stages with max-pools, global average pool, dense -> ``outputs``."""
    for k, (filters, size) in enumerate(((16, 7), (32, 5), (width, 3))):
        x = keras.layers.Conv2D(filters, size, padding="same", name=f"{prefix}_conv{k}")(x)
        x = keras.layers.LeakyReLU(0.2, name=f"{prefix}_lrelu{k}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"{prefix}_pool{k}")(x)
    x = keras.layers.GlobalAveragePooling2D(name=f"{prefix}_gap")(x)
    return keras.layers.Dense(outputs, name=f"{prefix}_dense",
                              kernel_initializer=keras.initializers.RandomNormal(stddev=1e-3),
                              bias_initializer=keras.initializers.Constant(bias))(x)


def _shallow(x, widths):
    for k, filters in enumerate(widths):
        x = keras.layers.Conv2D(filters, 3, padding="same", name=f"shallow_conv{k}")(x)
        x = InstanceNorm(name=f"shallow_in{k}")(x)
        x = keras.layers.LeakyReLU(0.2, name=f"shallow_lrelu{k}")(x)
    return keras.layers.Conv2D(3, 1, name="shallow_out")(x)


def _inputs(input_shape):
    h, w, c = tuple(input_shape) if input_shape is not None else (None, None, 4)
    if c != 4:
        raise InputShapeError(f"GenISP takes packed Bayer with 4 channels, got input_shape {input_shape}")
    return keras.Input((h, w, 4), name="packed_bayer"), keras.Input((9,), name="cam_to_xyz")


def _params(xyz, thumbnail, wbcc_width):
    """``(gains (B, 3), matrix (B, 9))`` from the XYZ image (ConvWB on it, ConvCC on its white-balanced form)."""
    gains = _wbcc_body(ThumbnailResize(thumbnail, name="wb_resize")(xyz), WB_NAME, wbcc_width, 3, 1.0)
    balanced = keras.layers.Multiply(name="wb_apply")([xyz, keras.layers.Reshape((1, 1, 3), name="wb_gains")(gains)])
    matrix = _wbcc_body(ThumbnailResize(thumbnail, name="cc_resize")(balanced), CC_NAME, wbcc_width, 9,
                        np.eye(3, dtype=np.float32).ravel())
    return gains, balanced, matrix


def build_genisp(wbcc_width: int = 128, shallow_widths=(16, 64), thumbnail: int = 256, input_shape=None,
                 name: str = "genisp"):
    """Build GenISP: ``[packed (B, h, w, 4), cam_to_xyz (B, 9)] -> image (B, h, w, 3)``.

    Args:
      wbcc_width: channels of the last convolution of ConvWB / ConvCC (published: 128).
      shallow_widths: the two 3x3 convolutions of the shallow ConvNet (16, 64).
      thumbnail: side of the resize ConvWB / ConvCC see (256).
      input_shape: ``(h, w, 4)``; ``None`` leaves height and width free.
    """
    packed, cam_to_xyz = _inputs(input_shape)
    xyz = ApplyMatrix(name="cam_to_xyz_apply")([AverageGreens(name="average_greens")(packed), cam_to_xyz])
    _, balanced, matrix = _params(xyz, int(thumbnail), int(wbcc_width))
    corrected = ApplyMatrix(name="cc_apply")([balanced, matrix])
    rgb = keras.layers.Activation("linear", name="rgb")(_shallow(corrected, tuple(shallow_widths)))
    return keras.Model([packed, cam_to_xyz], rgb, name=name)


def split_genisp(model, input_shape=None):
    """``(params, render)`` sharing ``model``'s weights, for exact tiled inference.

    ``params([packed, cam_to_xyz]) -> (B, 12)`` (3 gains, then the 3x3 matrix
    row-major) needs the whole frame; ``render([packed, cam_to_xyz, params])``
    is ``model`` with those 12 values given, and tiles exactly
    (:class:`isp_tf.tiling.TiledRunner` with ``vectors=(cam_to_xyz, params)``).

    ``params`` resizes the packed frame to the S x S thumbnail *first* and converts and white-balances
    the thumbnail, where the model converts and balances the whole frame and resizes it twice: the same
    numbers (to float rounding), since a bilinear resize is a weighted mean of 4 pixels with weights
    summing to 1 and commutes with the per-pixel linear maps in front of it (AverageGreens, the camera
    matrix, the gains), and the second resize of an S x S image to S x S is the identity.  A 32 MP frame
    then costs its thumbnail instead of three full-resolution intermediates (2 GB measured).
    """
    get = model.get_layer
    packed, cam_to_xyz = _inputs(input_shape)

    def xyz_of(p, m):
        return get("cam_to_xyz_apply")([get("average_greens")(p), m])

    def body(x, prefix):
        for k in range(3):
            x = get(f"{prefix}_pool{k}")(get(f"{prefix}_lrelu{k}")(get(f"{prefix}_conv{k}")(x)))
        return get(f"{prefix}_dense")(get(f"{prefix}_gap")(x))

    if get("wb_resize").size != get("cc_resize").size:
        raise ValueError("split_genisp needs ConvWB and ConvCC to see thumbnails of one size")
    xyz = xyz_of(get("wb_resize")(packed), cam_to_xyz)  # the thumbnail's XYZ: S x S
    gains = body(xyz, WB_NAME)
    matrix = body(get("wb_apply")([xyz, get("wb_gains")(gains)]), CC_NAME)
    params = keras.Model([packed, cam_to_xyz], keras.layers.Concatenate(name="params")([gains, matrix]),
                         name=f"{model.name}_params")

    packed2, cam2 = _inputs(input_shape)
    given = keras.Input((12,), name="params")
    xyz = xyz_of(packed2, cam2)
    balanced = keras.layers.Multiply(name="wb_apply")(
        [xyz, keras.layers.Reshape((1, 1, 3), name="wb_gains")(given[:, :3])])
    x = get("cc_apply")([balanced, given[:, 3:]])
    for k in range(len([layer for layer in model.layers if layer.name.startswith("shallow_conv")])):
        x = get(f"shallow_lrelu{k}")(get(f"shallow_in{k}")(get(f"shallow_conv{k}")(x)))
    render = keras.Model([packed2, cam2, given], get("shallow_out")(x), name=f"{model.name}_render")
    return params, render


# --------------------------------------------------------------------------- detector-guided training
# What ``python -m isp_tf.train --model genisp`` reads from the spec
# (ModelSpec.options / dataset / objective_factory / validation).

def _options():
    from isp_tf.models.registry import Option

    return (
        Option("detector_weights", required=True,
               help="h5 weights of the frozen RetinaNet GenISP trains through "
                    "(isp_tf.models.genisp.detector.save_detector_weights layout)"),
        Option("detector_backbone", default="resnet50", choices=("resnet50", "light"),
               help="the detector's backbone"),
        Option("detector_classes", default=3, type=int,
               help="the detector's classes (RAW-NOD: person, bicycle, car)"),
        Option("recompute", default="on", choices=("on", "off"),
               help="'on' (default): each image of a batch runs GenISP and the detector on its own and "
                    "its activations are recomputed in the backward pass (tf.recompute_grad), so memory "
                    "is that of one image whatever the batch (the paper's batch of 8 at 800 x 1333 fits "
                    "in a few GB) for ~1.3x the compute; 'off': the whole batch's activations are kept"),
    )


DETECTOR_OPTIONS = _options()


def detection_image_size(patch_size: int):
    """``(H, W)`` of the sRGB frame :mod:`isp_tf.data.rawnod` resizes to, so that GenISP's output
    (the packed resolution) is ``patch_size`` high and ``patch_size * 1333 / 800`` wide (even)."""
    p = int(patch_size)
    return 2 * p, 2 * (int(p * 1333 / 800) // 2 * 2 or 2)


def to_model_batch(element):
    """A RAW-NOD batch (dict) -> ``((packed, cam_to_xyz (B, 9)), {"boxes", "labels"})``."""
    m = tf.reshape(element["cam_to_xyz"], [-1, 9])
    return (element["raw"], m), {"boxes": element["boxes"], "labels": element["labels"]}


def genisp_dataset(specs, split: str = "train", patch_size: int = 800, batch_size: int = 8, seed: int = 0,
                   cache=True, augment=None, repeat=None, input_context=None, **_):
    """``ModelSpec.dataset``: RAW-NOD batches as ``(x, y)`` (see :func:`to_model_batch`)."""
    from isp_tf.data.layouts import parse_spec
    from isp_tf.data.rawnod import build_detection_dataset
    from isp_tf.errors import DatasetError

    specs = [specs] if isinstance(specs, str) else list(specs)
    if len(specs) != 1 or parse_spec(specs[0])[0] != "rawnod":
        raise DatasetError(f"GenISP trains on one rawnod:PATH detection dataset, got {specs}")
    ds = build_detection_dataset(specs[0], split=split, image_size=detection_image_size(patch_size),
                                 batch_size=batch_size, seed=seed, cache=cache, augment=augment, repeat=repeat,
                                 input_context=input_context)
    return ds.map(to_model_batch)


def build_frozen_detector(weights, backbone: str = "resnet50", num_classes: int = 3):
    """The RetinaNet of ``weights``, every layer frozen (its weights never change in training)."""
    from isp_tf.models.genisp.detector import build_retinanet, freeze, load_detector_weights

    detector = build_retinanet(int(num_classes), backbone=backbone)
    kind = load_detector_weights(detector, weights)
    if kind != "detector":
        from isp_tf.errors import WeightsMismatchError

        raise WeightsMismatchError(f"{weights} holds only a backbone: GenISP needs a trained detector")
    return freeze(detector)


def detection_objective(detector, loss=None, recompute: bool = False):
    """``objective(model, x, y, image_loss) -> (terms, prediction)`` through the frozen ``detector``.

    ``terms``: ``classification`` (alpha-balanced focal loss) and ``box``
    (smooth-L1), each the batch's value normalised by its positive anchors
    (:class:`~isp_tf.losses.detection.RetinaNetLoss`), repeated per example
    so the trainer's average over the global batch gives it back.

    ``recompute``: in training, run GenISP and the detector image by image,
    each a :func:`tf.custom_gradient` step that keeps only its input and
    outputs and recomputes its activations in the backward pass, and score the
    concatenated detector outputs as one batch: the same loss and gradients
    (GenISP is per-image: instance norm, per-image WB/CC; the detector is
    frozen in inference mode) with the activation memory of one image: each
    image's input takes a zero-weighted term of the previous image's output,
    so the graph runs them one after the other in the forward pass and their
    recomputations in reverse order in the backward pass (without it the
    executor runs them side by side and memory is the batch's again).  A
    batch of unknown static size runs as one batch.
    """
    from isp_tf.losses.detection import RetinaNetLoss

    loss = loss or RetinaNetLoss()

    def forward(model, x, training):
        rgb = model(x, training=training)
        out = detector(rgb, training=False)
        return rgb, out["classification"], out["regression"]

    def recomputed(model, training):
        """``forward`` of one image whose activations are dropped and recomputed in the backward
        pass -- only once the gradient of its outputs exists (a control dependency), so the
        executor cannot recompute every image of the batch at once (as ``tf.recompute_grad``
        lets it: its recomputation depends on the inputs alone)."""

        @tf.custom_gradient
        def step(p, m):
            outputs = forward(model, (p, m), training)

            def grad(*dys, variables=None):
                with tf.control_dependencies(dys):
                    p2, m2 = tf.identity(p), tf.identity(m)
                with tf.GradientTape() as tape:
                    tape.watch([p2, m2])
                    again = forward(model, (p2, m2), training)
                grads = tape.gradient(again, [p2, m2] + list(variables or []), output_gradients=list(dys),
                                      unconnected_gradients=tf.UnconnectedGradients.ZERO)
                return grads[:2], grads[2:]

            return outputs, grad

        return step

    def per_image(model, x, training):
        packed, matrix = x
        step = recomputed(model, training)
        parts, previous = [], None
        for i in range(packed.shape[0]):
            p = packed[i:i + 1]
            if previous is not None:  # image i waits for image i - 1 (forward); the backward pass
                p = p + 0.0 * previous  # reaches image i - 1 only through image i: one at a time
            parts.append(step(p, matrix[i:i + 1]))
            previous = tf.reduce_sum(parts[-1][1][:, :1, :1])
        return [tf.concat([part[k] for part in parts], axis=0) for k in range(3)]

    def objective(model, x, y, image_loss=None, training=True):
        if recompute and training and isinstance(x, (tuple, list)) and x[0].shape[0]:
            rgb, classification, regression = per_image(model, x, training)
        else:
            rgb, classification, regression = forward(model, x, training)
        terms = loss.terms(y, {"classification": classification, "regression": regression},
                           image_shape=tf.shape(rgb)[1:3])
        batch = tf.shape(rgb)[:1]
        return {k: tf.fill(batch, terms[k]) for k in ("classification", "box")}, rgb

    return objective


def genisp_objective_factory(options):
    """``ModelSpec.objective_factory``: the detection objective of ``--detector-weights``."""
    detector = build_frozen_detector(options["detector_weights"], options.get("detector_backbone", "resnet50"),
                                     options.get("detector_classes", 3))
    return detection_objective(detector, recompute=options.get("recompute", "on") == "on")


def genisp_validation(model, x, y, objective):
    """``ModelSpec.validation``: the detection losses on a validation batch (PSNR means nothing here)."""
    terms, rgb = objective(model, x, y, None, training=False)
    return {**terms, "detection_loss": terms["classification"] + terms["box"]}, tf.clip_by_value(rgb, 0.0, 1.0)
