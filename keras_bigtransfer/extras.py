"""Optional dependencies: the core install is keras, numpy, h5py, pillow, filelock and
absl-py (no backend, as `keras` itself); what needs more imports it through `require`,
which names the extra to install in one line when it is missing.

    tf = require("tensorflow", extra="tensorflow", for_what="fit_bit")

The extras are declared in pyproject.toml ([project.optional-dependencies]).
"""

import importlib

PACKAGE = "keras_bigtransfer"
# How each module is called in messages (the distribution name where it differs).
_NAMES = {
    "tensorflow": "TensorFlow",
    "tensorflow_datasets": "TensorFlow Datasets (tensorflow-datasets)",
    "torch": "PyTorch (torch)",
    "huggingface_hub": "huggingface_hub",
    "kagglehub": "kagglehub",
    "tf2onnx": "tf2onnx",
    "openvino": "OpenVINO (openvino)",
    "ai_edge_litert": "the LiteRT runtime (ai-edge-litert)",
}
# What to add to the message for some modules.
_HINTS = {
    # The default torch wheel pulls ~3 GB of CUDA libraries; reading a .pth needs none.
    "torch": " (CPU only, much smaller: pip install torch --index-url https://download.pytorch.org/whl/cpu)",
}


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra that installs it.

    A subclass of ImportError (so `except ImportError` still catches it) carrying `name`
    (the missing module) and `extra` (the keras_bigtransfer extra to install).
    """

    def __init__(self, message, *, name, extra):
        super().__init__(message, name=name)
        self.extra = extra


def install_command(extra):
    """The pip command that installs `extra`, e.g. "pip install 'keras_bigtransfer[tensorflow]'"."""
    return f"pip install '{PACKAGE}[{extra}]'"


def require(module, *, extra, for_what):
    """Import and return `module`; raise `MissingExtraError` in one line when it is missing.

    Args:
        module: the dotted module name, e.g. "tensorflow" or "huggingface_hub".
        extra: the extra of this package that installs it, e.g. "tensorflow".
        for_what: what needs it, as the message's subject, e.g. "fit_bit".

    Returns:
        The imported module.

    Raises:
        MissingExtraError (an ImportError): `module` (or a package above it) is not installed,
            e.g. "fit_bit needs TensorFlow: pip install 'keras_bigtransfer[tensorflow]'".
            Any other error importing an installed module (a broken install) propagates as it is.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        missing = e.name or ""
        # Only the module itself (or its parent package) missing: a missing dependency *of* an
        # installed module is a broken install, whose own error says more.
        if missing != module and not module.startswith(missing + "."):
            raise
        name = _NAMES.get(module.split(".")[0], module)
        raise MissingExtraError(f"{for_what} needs {name}: {install_command(extra)}{_HINTS.get(module, '')}",
                                name=module, extra=extra) from None
