"""Count the parameters of every constructor (random init) for the docs' model tables.

    python tools/count_parameters.py [family ...] > /tmp/params.json

Each registered model is built in turn and freed; BiT-x-R152x4 needs about 4 GB.
"""

import gc
import json
import sys

import keras

from keras_bigtransfer.models import registry


def main():
    families = sys.argv[1:] or [family.name for family in registry.families()]
    counts = {}
    for family in families:
        registry.get_family(family)  # an unknown name fails with the registered ones
        for variant in registry.variants(family):
            model = variant.constructor(weights=None)
            counts[variant.name] = {"family": family, "parameters": model.count_params(),
                                    "classes": int(model.output.shape[-1])}
            print(variant.name, counts[variant.name], file=sys.stderr, flush=True)
            del model
            keras.backend.clear_session()
            gc.collect()
    json.dump(counts, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
