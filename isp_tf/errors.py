"""Exceptions raised by isp_tf.  Every message names the file or value at fault.

Command-line entry points (:func:`isp_tf.cli.run_command`) catch
:class:`IspTfError`, print ``error: <message>`` and exit with the error's
``exit_code`` (2: bad input; 1: an export some op of which would stay on the
CPU); anything else is a bug.
"""


class IspTfError(Exception):
    """Base class of every error isp_tf raises on purpose."""

    #: the exit status of a command that stops with this error
    exit_code = 2


# --- RAW input -------------------------------------------------------------
class RawReadError(IspTfError, ValueError):
    """A RAW file could not be used.  ``path`` names the file."""

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class NotRawError(RawReadError):
    """The file is not a RAW photo LibRaw can read (e.g. a JPEG or a text file)."""


class CorruptRawError(RawReadError):
    """The file is truncated or its data is damaged."""


class UnsupportedSensorError(RawReadError):
    """The sensor is not a 2x2 Bayer mosaic (X-Trans, Foveon, monochrome...)."""


class LinearRawError(UnsupportedSensorError):
    """The file holds already demosaiced (linear) RGB data, e.g. a linear DNG."""


class UnsupportedCFAError(UnsupportedSensorError):
    """The CFA pattern is not one of RGGB, GRBG, GBRG, BGGR."""


class RawWriteError(IspTfError, ValueError):
    """A mosaic or its metadata cannot be written as a DNG (``path`` names the file)."""

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class OutputWriteError(IspTfError, OSError):
    """An output could not be written (full disk, file-size limit); earlier outputs are intact."""


# --- models, weights, shapes -----------------------------------------------
class UnknownModelError(IspTfError, KeyError):
    """A model name that is not in the registry; the message lists the known ones."""

    def __str__(self):  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class WeightsMismatchError(IspTfError, ValueError):
    """A weights file does not belong to the model it is loaded into."""


class MissingFileError(IspTfError, FileNotFoundError):
    """A file isp_tf needs (weights, VGG-19, a dataset file) is absent; says what to put where."""


class InputShapeError(IspTfError, ValueError):
    """An input the model cannot take (wrong rank, odd size, smaller than one tile...)."""


class FrameSizeError(InputShapeError):
    """A frame size that is not a known name (``fullhd``, ``4k``, ``12mp``, ``32mp``) or even ``HxW``."""


class DatasetError(IspTfError, ValueError):
    """A dataset folder does not match the layout it was declared as."""


class RuntimeChoiceError(IspTfError, ValueError):
    """A LiteRT runtime name that is not one of ``isp_tf.runtime.RUNTIMES``."""


# --- export ------------------------------------------------------------------
class ExportError(IspTfError, ValueError):
    """A model could not be exported as asked (unknown precision, impossible input size...)."""


class NNAPIValidationError(ExportError):
    """An exported .tflite has ops NNAPI 1.2 would not delegate; ``report`` lists them."""

    exit_code = 1

    def __init__(self, message, report=None):
        super().__init__(message)
        self.report = report
