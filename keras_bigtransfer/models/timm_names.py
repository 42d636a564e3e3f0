"""timm's model names as exact aliases of our variants and catalogue entries (a table, no
loose matching: a name is found only as written).

* An architecture name (`tf_efficientnet_lite0`, `resnetv2_50x1_bit`, `vit_base_patch16_224`)
  names one of our constructors, and the weights of timm's default tag where the catalogue
  has them (`ARCHITECTURES`: each family's `Family.timm_architectures`, from timm's
  `default_cfgs`, timm 1.0.x). timm's own PyTorch-padded `efficientnet_*` architectures map to
  our (TF-padded) variant with its own ImageNet weights: timm's `efficientnet_*.ra_*` weights
  are not in the catalogue.
* `arch.tag` (`resnetv2_50x1_bit.goog_in21k`, `vit_base_patch16_224.augreg2_in21k_ft_in1k`)
  names a catalogue entry: the catalogue's own alias where it has one (the original Google
  files), else its copy of timm's Hugging Face Hub file (`hf-hub:timm/<arch>.<tag>`).
"""

import functools

from keras_bigtransfer.weights import catalogue

# timm architecture -> (our constructor, timm's default `arch.tag` when the catalogue has it),
# from every registered family's `Family.timm_architectures` (`register`, which
# `factory.register` calls): a family declares its timm names in its own folder.
ARCHITECTURES = {}


def check(family):
    """Raise ValueError when `family`'s `timm_architectures` (a `registry.Family`) cannot be
    registered: a row that is not (timm architecture, constructor name, default `arch.tag` or
    None), a default tag of another architecture, or an architecture another family registered.
    `factory.register` asks before it registers anything."""
    known = dict(ARCHITECTURES)
    for row in family.timm_architectures:
        if not (isinstance(row, tuple) and len(row) == 3 and all(isinstance(x, str) for x in row[:2])
                and (row[2] is None or isinstance(row[2], str))):
            raise ValueError(f"family {family.name!r}: timm_architectures rows are (timm architecture, "
                             f"constructor name, default arch.tag or None); got {row!r}.")
        architecture, constructor, default = row
        if default is not None and default.partition(".")[0] != architecture:
            raise ValueError(f"family {family.name!r}: {architecture}'s default tag {default!r} is "
                             "another architecture's.")
        if known.setdefault(architecture, (constructor, default)) != (constructor, default):
            raise ValueError(f"family {family.name!r}: timm architecture {architecture!r} is registered "
                             f"twice (as {known[architecture][0]}).")


def register(family):
    """Add `family`'s `timm_architectures` to `ARCHITECTURES` (ValueError: see `check`)."""
    check(family)  # all rows first: a refused family adds none
    ARCHITECTURES.update({architecture: (constructor, default)
                          for architecture, constructor, default in family.timm_architectures})
    tagged.cache_clear()  # the catalogue's names of the new architectures


@functools.lru_cache(maxsize=None)
def tagged():
    """{`arch.tag`: catalogue tag} for every catalogued weight of an architecture above."""
    names = {}
    for entry in catalogue.list_models():
        for name in (entry.tag, *entry.aliases):
            for prefix in ("hf-hub:timm/", "hf://timm/", ""):
                if name.startswith(prefix) and name[len(prefix):].split(".", 1)[0] in ARCHITECTURES \
                        and "." in name[len(prefix):]:
                    names.setdefault(name[len(prefix):], entry.tag)
    # The catalogue's own alias (the original file) wins over the Hub copy.
    for entry in catalogue.list_models():
        for alias in entry.aliases:
            if alias in names and not entry.tag.startswith("hf-hub:"):
                names[alias] = entry.tag
    return names


def resolve(name):
    """(constructor name, weights: a catalogue tag or None for the variant's default) for an
    exact timm name, or None when `name` is not one.

    Raises:
        ValueError: a known architecture with a tag the catalogue does not have.
    """
    if name in ARCHITECTURES:
        constructor, default = ARCHITECTURES[name]
        return constructor, tagged()[default] if default else None
    arch, dot, _ = name.partition(".")
    if not dot or arch not in ARCHITECTURES:
        return None
    tag = tagged().get(name)
    if tag is None:
        known = sorted(n for n in tagged() if n.startswith(arch + "."))
        raise ValueError(f"{name!r}: the catalogue has no such weights for {arch}; it has {known}.")
    return catalogue.get(tag).constructor, tag


def names(pretrained=False):
    """The timm names: architectures, or with `pretrained`, every catalogued `arch.tag`."""
    return sorted(tagged()) if pretrained else sorted(ARCHITECTURES)


def hub_constructor(architecture):
    """Our constructor for the `architecture` a timm repository's config.json names, or None.

    timm's PyTorch-padded `efficientnet_*` and `efficientnetv2_*` are left out: their weights
    were trained with symmetric padding, which our TF-padded EfficientNets (timm's
    `tf_efficientnet_*`, `tf_efficientnetv2_*`) do not reproduce, so their logits would differ
    from timm's without an error.
    """
    if not isinstance(architecture, str) or architecture.startswith(("efficientnet_", "efficientnetv2_")):
        return None
    constructor = ARCHITECTURES.get(architecture)
    return constructor[0] if constructor else None
