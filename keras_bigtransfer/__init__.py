"""keras_bigtransfer: paper-faithful BiT, EfficientNet and ViT as native Keras 3 models.

Every model takes float32 RGB images in [0, 1] (uint8 is converted), NHWC.

    model = keras_bigtransfer.create_model("bit_m_r50x1_ilsvrc2012")   # by catalogue tag
    model = keras_bigtransfer.BiT_M_R50x1(num_classes=10)               # by constructor
    keras_bigtransfer.list_models("vit_*")                              # constructor names
    keras_bigtransfer.list_models(pretrained=True)                      # catalogue tags
"""

__version__ = "0.1.0"

import os as _os
import sys as _sys
import typing as _typing



def _import_tensorflow_quietly():
    # TensorFlow writes its C++ start-up lines (oneDNN, CUDA probing) before its logging starts,
    # whatever TF_CPP_MIN_LOG_LEVEL says: imported with stderr set aside, shown only on failure.
    import tempfile

    saved = _os.dup(2)
    with tempfile.TemporaryFile() as caught:
        _os.dup2(caught.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except ImportError:
            pass  # no TensorFlow: Keras says so itself when the backend needs it
        except BaseException:
            _os.dup2(saved, 2)
            caught.seek(0)
            _sys.stderr.write(caught.read().decode(errors="replace"))
            raise
        finally:
            _os.dup2(saved, 2)
            _os.close(saved)


# The `keras-bigtransfer` command prints one line of its own per result: TensorFlow's C++
# start-up lines are hidden before Keras imports TensorFlow (on the TensorFlow backend), unless
# TF_CPP_MIN_LOG_LEVEL is set or --debug given. Library users are left alone.
if (_os.path.basename(_sys.argv[0] if _sys.argv else "").startswith("keras-bigtransfer")
        and "--debug" not in _sys.argv and "TF_CPP_MIN_LOG_LEVEL" not in _os.environ):
    _os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if _os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow" and "tensorflow" not in _sys.modules:
        _import_tensorflow_quietly()

from keras_bigtransfer import datasets, hub, layers, preprocessing  # noqa: F401
from keras_bigtransfer.errors import WeightsError
from keras_bigtransfer.models.base import ImageModel
from keras_bigtransfer.models import registry as _registry
from keras_bigtransfer.models.registry import create_model, list_models

# The constructors, one per registered variant: each family's `__init__.py` binds its own once
# (`factory.register`); here they are read off the registry, not written again.
_CONSTRUCTORS = {v.name: v.constructor for v in _registry.variants()}
globals().update(_CONSTRUCTORS)
if _typing.TYPE_CHECKING:  # what IDEs and static analysers read: the same constructors
    from keras_bigtransfer.models.bit import *  # noqa: F401,F403
    from keras_bigtransfer.models.efficientnet import *  # noqa: F401,F403
    from keras_bigtransfer.models.vit import *  # noqa: F401,F403

# Training feeds tf.data to every backend, so it imports TensorFlow: loaded on first use
# (`keras_bigtransfer.fit_bit`), so that `import keras_bigtransfer` imports no TensorFlow
# under KERAS_BACKEND=jax or torch (tests/backends/test_no_tensorflow.py).
_TRAINING = ("FitBitConfig", "HyperRule", "MetaPseudoLabelsConfig", "NoisyStudentConfig", "ViTRule", "fit_bit",
             "fit_meta_pseudo_labels", "fit_noisy_student", "freeze_batch_norm", "hyperrule", "vit_rule")


def __getattr__(name):
    if name in _TRAINING:
        from keras_bigtransfer import training

        value = getattr(training, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'keras_bigtransfer' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_TRAINING))

__all__ = [
    *_CONSTRUCTORS,  # the constructors, in registration order
    # the registry
    "create_model", "list_models",
    # training
    "FitBitConfig", "HyperRule", "MetaPseudoLabelsConfig", "NoisyStudentConfig", "ViTRule", "fit_bit",
    "fit_meta_pseudo_labels", "fit_noisy_student", "freeze_batch_norm", "hyperrule", "vit_rule",
    # the rest
    "ImageModel", "WeightsError", "datasets", "hub", "layers", "preprocessing",
]
