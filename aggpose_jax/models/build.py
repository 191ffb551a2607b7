"""Model families, found by module path, and `make_model` to build one.

A family is a module (`aggpose_jax.models.<family>`, or any importable dotted path) that defines:

    VARIANTS: dict[str, dict]   architecture fields per variant name (every family has "tiny")
    OPTIONS: dict[str, Any]     run options and their defaults (config `model.options`)
    OUTPUTS: tuple[str, ...]    the named outputs a task's `out_channels` must size
    make(fields, out_channels) -> nn.Module   fields = a variant's fields merged with the options;
                                out_channels = all the task's (an option may need more, e.g.
                                AggPose's head="paf" reads "pafs")

Every model returns a dict of named outputs, e.g. {"heatmaps": (B, H/4, W/4, K)}; staged bottom-up
families (OpenPose, MLN) return a list per output, one entry per supervised stage. Experiment and
summary names are `<family>_<variant>` (`aggpose_l`, `segformer_b5`, `mit_b2`).
"""

import importlib
import pkgutil
import types
from collections.abc import Mapping
from typing import Any

import flax.linen as nn

PACKAGE = "aggpose_jax.models"


def family_module(family: str) -> types.ModuleType:
    """The module of a family: `aggpose` -> aggpose_jax.models.aggpose; a dotted path as given."""
    path = family if "." in family else f"{PACKAGE}.{family}"
    try:
        module = importlib.import_module(path)
    except ModuleNotFoundError:
        module = None
    if module is None or not hasattr(module, "VARIANTS"):
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(known_families())}")
    return module


def known_families() -> list[str]:
    """The families of this package (modules that define VARIANTS)."""
    pkg = importlib.import_module(PACKAGE)
    names = [m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.ispkg]
    return sorted(
        n for n in names if hasattr(importlib.import_module(f"{PACKAGE}.{n}"), "VARIANTS")
    )


def split_name(name: str) -> tuple[str, str]:
    """`aggpose_l` -> ("aggpose", "l"); `segformer_b5` -> ("segformer", "b5")."""
    family, sep, variant = name.partition("_")
    if not sep:
        raise ValueError(f"model name {name!r} is not <family>_<variant>")
    return family, variant


def model_fields(family: str, variant: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """A variant's architecture fields merged with the family's option defaults and `options`."""
    module = family_module(family)
    if variant not in module.VARIANTS:
        known = ", ".join(module.VARIANTS)
        raise ValueError(f"unknown variant {variant!r} of model family {family!r}; known: {known}")
    unknown = sorted(set(options) - set(module.OPTIONS))
    if unknown:
        known = ", ".join(module.OPTIONS)
        raise ValueError(f"model family {family!r} has no option(s) {unknown}; known: {known}")
    return {**module.VARIANTS[variant], **module.OPTIONS, **options}


def make_model(
    family: str, variant: str, *, out_channels: Mapping[str, int], **options: Any
) -> nn.Module:
    """Builds `family`'s `variant` with its outputs sized by `out_channels` (e.g. {"heatmaps": 17}).

    Shapes of the built model: images (B, H, W, 3) -> a dict of named outputs. `options` are the
    family's OPTIONS (dtype, remat, scan_blocks, ...); an unknown option is an error naming it.
    """
    module = family_module(family)
    missing = sorted(set(module.OUTPUTS) - set(out_channels))
    if missing:
        raise ValueError(f"model family {family!r} needs out_channels for {missing}")
    fields = model_fields(family, variant, options)
    return module.make(fields, {k: int(v) for k, v in out_channels.items()})
