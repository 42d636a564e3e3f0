"""Count the parameters of every constructor (random init) for the docs' model tables.

    python tools/count_parameters.py [family ...] > /tmp/params.json

Each model is built in turn and freed; BiT-x-R152x4 needs about 4 GB.
"""

import gc
import json
import sys

import keras

import keras_bigtransfer as kb
from keras_bigtransfer.models import bit, efficientnet, vit

FAMILIES = {  # the public constructors, which build a family's published variants
    "bit": [name for name in bit.__all__ if name.startswith("BiT_")],
    "efficientnet": [name for name in efficientnet.__all__ if name.startswith(("EfficientNetB", "EfficientNetLite"))],
    "vit": [name for name in vit.__all__ if name.startswith("ViT_")],
}


def main():
    counts = {}
    for family in sys.argv[1:] or FAMILIES:
        names = FAMILIES[family]
        for name in names:
            model = getattr(kb, name)(weights=None)
            counts[name] = {"family": family, "parameters": model.count_params(),
                            "classes": int(model.output.shape[-1])}
            print(name, counts[name], file=sys.stderr, flush=True)
            del model
            keras.backend.clear_session()
            gc.collect()
    json.dump(counts, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
