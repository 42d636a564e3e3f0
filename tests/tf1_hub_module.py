"""Writes modules in the TF1 Hub format, as `hub.Module` exports wrote them (for the tests)."""

import os


def write_tf1_hub_module(path, build, images=None):
    """A module in the published layout: TF1 reference variables in graph mode, a SavedModel
    with two MetaGraphs (tags {"train"} and {}), and `tfhub_module.pb` (a ModuleDef of format 3).

    Args:
        path: the module's directory.
        build: `build(images) -> {name: tensor}`: makes the graph's variables (with
            `use_resource=False`) and the `default` signature's outputs from the float32
            (batch, height, width, 3) `images` placeholder.
        images: optional inputs to run the graph on.

    Returns:
        The outputs' values for `images`, computed in the graph's own session (None without them).
    """
    import tensorflow as tf

    builder = tf.compat.v1.saved_model.Builder(str(path))
    values = None
    for tags in (["train"], []):
        graph = tf.Graph()
        with graph.as_default():
            placeholder = tf.compat.v1.placeholder(tf.float32, [None, None, None, 3], name="images")
            outputs = build(placeholder)
            signature = tf.compat.v1.saved_model.predict_signature_def({"images": placeholder}, outputs)
            with tf.compat.v1.Session(graph=graph) as session:
                session.run(tf.compat.v1.global_variables_initializer())
                if tags:
                    builder.add_meta_graph_and_variables(session, tags, signature_def_map={"default": signature})
                else:
                    builder.add_meta_graph(tags, signature_def_map={"default": signature})
                    if images is not None:
                        values = session.run(outputs, {placeholder: images})
    builder.save()
    with open(os.path.join(path, "tfhub_module.pb"), "wb") as f:
        f.write(b"\x08\x03")  # tensorflow_hub ModuleDef(format=FORMAT_V3)
    return values
