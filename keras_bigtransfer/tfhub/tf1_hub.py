"""Modules in the TF1 Hub format (`hub.Module`): `tfhub_module.pb` beside a SavedModel of
several MetaGraphs (`{"train"}` and `{}`), as TF Hub's `google/efficientnet/b*` and
`tensorflow/efficientnet/lite*` modules are published (tensorflow/hub issues 390 and 751).

`tf.saved_model.load(path)` refuses such a directory without `tags=` ("requires a 'tags='
argument if there is more than one MetaGraph"); `tensorflow_hub.load` passes `tags=[]` when
`tfhub_module.pb` exists (`module_v2.load`). Their variables are TF1 reference variables, which
the loaded object does not list, so the weights are read from the SavedModel's name-based
checkpoint (`variables/variables`), under the graph's variable names.

A module of no family we implement comes back as a `TF1HubLayer`: a Keras 3 layer calling the
module's `default` signature, as `tensorflow_hub.load(path).signatures["default"]` does.
"""

import os

import keras

MODULE_PROTO = "tfhub_module.pb"


def is_tf1_hub_module(path):
    """Whether the directory is a module in the TF1 Hub format (it has `tfhub_module.pb`)."""
    return os.path.isfile(os.path.join(os.fspath(path), MODULE_PROTO))


def read_variables(path, lazy=True):
    """{variable name: array} of a SavedModel's checkpoint (`variables/variables`), no graph code."""
    from keras_bigtransfer.weights import checkpoint

    prefix = os.path.join(os.fspath(path), "variables", "variables")
    return checkpoint.read_arrays(prefix, lazy=lazy)


@keras.saving.register_keras_serializable(package="keras_bigtransfer")
class TF1HubLayer(keras.layers.Layer):
    """A module in the TF1 Hub format as a Keras 3 layer: calls one of its signatures.

    What `tensorflow_hub.load(path).signatures[signature]` runs, and what
    `tensorflow_hub.KerasLayer(path)` (a tf_keras layer, unusable in Keras 3 models) wraps:
    the module's inference MetaGraph (tags `{}`), its TF1 variables frozen inside. The
    counterpart of `keras.layers.TFSMLayer`, which cannot load such a module (it passes
    no `tags=`). TensorFlow backend only; not trainable.

    Args:
        path: the module's directory (holding `tfhub_module.pb` and `saved_model.pb`).
        signature: the signature to call ("default": images in, the module's main output
            out, by the TF1 Hub convention; others, e.g. "image_feature_vector", as published).
        output_key: the signature's output to return ("default"); None returns every output
            as a dict.

    Call: a tensor when the signature takes one input (for image modules: float32
    (batch, height, width, 3) in [0, 1], as TF Hub's image convention), else a dict keyed by
    the signature's input names.

    Raises:
        ValueError: another backend than TensorFlow, a signature or output the module lacks.
        WeightsError: the module cannot be loaded (truncated variables, a damaged graph).
    """

    def __init__(self, path, signature="default", output_key="default", **kwargs):
        if kwargs.pop("trainable", False):
            raise ValueError("TF1HubLayer: a TF1 Hub module's graph is frozen; trainable=True is not supported.")
        super().__init__(trainable=False, **kwargs)
        if keras.backend.backend() != "tensorflow":
            raise ValueError(
                f"TF1HubLayer runs a TensorFlow graph: it needs KERAS_BACKEND=tensorflow "
                f"(now {keras.backend.backend()!r})."
            )
        import tensorflow as tf

        self.module_path, self.signature, self.output_key = os.fspath(path), signature, output_key
        # tags=[]: the inference MetaGraph, as tensorflow_hub.load passes for this format.
        from keras_bigtransfer.weights.checkpoint import reading

        # A damaged module (cut variable data, a bad graph) is one WeightsError naming it.
        with reading(self.module_path, "is not a loadable TF1 Hub module"):
            self._module = tf.saved_model.load(self.module_path, tags=[])
        signatures = dict(self._module.signatures)
        if signature not in signatures:
            raise ValueError(f"{self.module_path}: the module has no signature {signature!r}; it has "
                             f"{sorted(signatures)}. Pass TF1HubLayer(path, signature=...).")
        self._function = signatures[signature]
        self._input_names = sorted(self._function.structured_input_signature[1])
        outputs = sorted(self._function.structured_outputs)
        if output_key is not None and output_key not in outputs:
            raise ValueError(f"{self.module_path}: signature {signature!r} has no output {output_key!r}; it has "
                             f"{outputs}. Pass output_key= one of them, or None for all of them.")
        self.built = True

    def call(self, inputs):
        if isinstance(inputs, dict):
            feed = inputs
        elif len(self._input_names) == 1:
            feed = {self._input_names[0]: inputs}
        else:
            raise ValueError(f"{self.module_path}: signature {self.signature!r} takes several inputs "
                             f"{self._input_names}; pass a dict keyed by them.")
        outputs = self._function(**feed)
        return outputs if self.output_key is None else outputs[self.output_key]

    def get_config(self):
        config = super().get_config()
        config.update(path=self.module_path, signature=self.signature, output_key=self.output_key)
        config.pop("trainable", None)
        return config
