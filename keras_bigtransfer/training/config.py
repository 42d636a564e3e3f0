"""A recipe's settings as one frozen dataclass: built from keyword arguments or passed whole,
recorded whole (`dataclasses.asdict`) in the run record of its `checkpoint_dir`."""

import dataclasses


def resolve(cls, config, settings, trainer):
    """`config` (an instance of the dataclass `cls`, or None for its defaults) with the keyword
    `settings` applied over it.

    Raises:
        TypeError: `config` is not a `cls`, or a setting is not one of `cls`'s fields (a typo
            would otherwise be dropped silently); the message lists the fields.
        ValueError: a setting's value is out of range (`cls.__post_init__` names it).
    """
    if config is not None and not isinstance(config, cls):
        raise TypeError(f"{trainer}: config must be a {cls.__name__}; got {type(config).__name__}.")
    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(settings) - set(fields))
    if unknown:
        raise TypeError(f"{trainer} got unexpected setting(s) {', '.join(map(repr, unknown))}; "
                        f"its settings ({cls.__name__}) are: {', '.join(fields)}.")
    if config is None:
        return cls(**settings)
    return dataclasses.replace(config, **settings) if settings else config


def record(config):
    """`config` as the JSON-ready dict a run record keeps (tuples become lists there)."""
    return dataclasses.asdict(config)
