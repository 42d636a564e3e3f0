"""Model families, one folder each; importing this package registers them.

A family folder (`bit/`, `efficientnet/`, `vit/`) holds its configuration table
(`config.py`), builder (`model.py`), checkpoint formats (`convert.py`) and, in
`__init__.py`, its registration and constructors. Everything else asks `registry`.
"""

from keras_bigtransfer.models import bit, efficientnet, vit  # noqa: F401 (registers them)
from keras_bigtransfer.models.base import ImageModel
from keras_bigtransfer.models.registry import (
    create_model,
    family_of,
    get_family,
    get_variant,
    list_models,
)

__all__ = ["ImageModel", "bit", "create_model", "efficientnet", "family_of", "get_family",
           "get_variant", "list_models", "vit"]
