"""Modules in the TF1 Hub format (`hub.Module`): `tfhub_module.pb` beside a SavedModel of
several MetaGraphs (`{"train"}` and `{}`), as TF Hub's `google/efficientnet/b*` and
`tensorflow/efficientnet/lite*` modules are published (tensorflow/hub issues 390 and 751).

`tf.saved_model.load(path)` refuses such a directory without `tags=` ("requires a 'tags='
argument if there is more than one MetaGraph"); `tensorflow_hub.load` passes `tags=[]` when
`tfhub_module.pb` exists (`module_v2.load`). Their variables are TF1 reference variables, which
the loaded object does not list, so the weights are read from the SavedModel's name-based
checkpoint (`variables/variables`), under the graph's variable names.
"""

import os

MODULE_PROTO = "tfhub_module.pb"


def is_tf1_hub_module(path):
    """Whether the directory is a module in the TF1 Hub format (it has `tfhub_module.pb`)."""
    return os.path.isfile(os.path.join(os.fspath(path), MODULE_PROTO))


def load_tags(path):
    """The `tags=` argument `tensorflow_hub.load` passes for `path`: [] for the TF1 Hub format, else None."""
    return [] if is_tf1_hub_module(path) else None


def read_variables(path, lazy=True):
    """{variable name: array} of a SavedModel's checkpoint (`variables/variables`), no graph code."""
    from keras_bigtransfer.weights import checkpoint

    prefix = os.path.join(os.fspath(path), "variables", "variables")
    return checkpoint.read_arrays(prefix, lazy=lazy)
