"""Write the catalogue's timm-derived data from timm's pretrained configurations (no network).

    python tools/catalogue_timm.py            # rewrite the files
    python tools/catalogue_timm.py --check    # exit 1 when they differ from what timm says

1. `keras_bigtransfer/weights/catalogue/hf_timm.json`: timm's Hugging Face Hub copies of the
   three families (`timm/resnetv2_*_bit.*`, `timm/vit_*` incl. the R50 hybrids,
   `timm/tf_efficientnet_{b0..b7,lite0..4,l2}.*`), one entry each, tag = the handle.
2. The evaluation settings of every entry (`crop_pct`, `interpolation`, `mean`, `std`; the
   input size is `resolution`): timm's configuration where an alias or the handle names a
   timm weight, else the family's published rule (BiT ILSVRC-2012 fine-tunes: 1.0 bilinear;
   ViT: 0.9 bicubic, 1.0 at 384; TF EfficientNet: res / (res + 32) bicubic).

Facts from timm's `default_cfgs` (timm/models/{resnetv2,vision_transformer,
vision_transformer_hybrid,efficientnet}.py) as installed; run it again after a timm upgrade.
"""

import json
import os
import re
import sys

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "keras_bigtransfer", "weights", "catalogue")

BIT = re.compile(r"^resnetv2_(\d+)x(\d+)_bit$")
VIT = re.compile(r"^vit_(tiny|small|base|large|huge)_patch(8|14|16|32)_(224|384)$")
VIT_SIZES = {"tiny": "Ti", "small": "S", "base": "B", "large": "L", "huge": "H"}
EFFNET = re.compile(r"^tf_efficientnet_(b[0-7]|lite[0-4]|l2)$")
# Weights whose input convention our models do not build in: AdvProp (ap_in1k) expects [-1, 1]
# where our B-series normalizes with ImageNet mean/std.
SKIP_TAGS = ("ap_in1k",)
VIT_TAGS = ("augreg_in21k", "augreg_in21k_ft_in1k", "augreg2_in21k_ft_in1k", "augreg_in1k",
            "orig_in21k", "orig_in21k_ft_in1k", "sam_in1k")

DATA = {
    "goog_in21k": ("ImageNet-21k", None),
    "goog_in21k_ft_in1k": ("ImageNet-21k", "ILSVRC-2012"),
    "goog_distilled_in1k": ("ILSVRC-2012 (distilled from BiT-M-R152x2; unverified whether from i21k init)", None),
    "goog_teacher_in21k_ft_in1k": ("ImageNet-21k", "ILSVRC-2012"),
    "goog_teacher_in21k_ft_in1k_384": ("ImageNet-21k", "ILSVRC-2012"),
    "augreg_in21k": ("ImageNet-21k", None),
    "augreg_in21k_ft_in1k": ("ImageNet-21k", "ILSVRC-2012"),
    "augreg2_in21k_ft_in1k": ("ImageNet-21k", "ILSVRC-2012 (timm's further fine-tune, exact GELU)"),
    "augreg_in1k": ("ILSVRC-2012", None),
    "orig_in21k": ("ImageNet-21k", None),
    "orig_in21k_ft_in1k": ("ImageNet-21k", "ILSVRC-2012"),
    "sam_in1k": ("ILSVRC-2012", None),
    "in1k": ("ILSVRC-2012", None),
    "aa_in1k": ("ILSVRC-2012", None),
    "ra_in1k": ("ILSVRC-2012", None),
    "ns_jft_in1k": ("ILSVRC-2012 + JFT-300M unlabeled (Noisy Student)", None),
    "ns_jft_in1k_475": ("ILSVRC-2012 + JFT-300M unlabeled (Noisy Student)", None),
}
NORMALIZATION = {
    "bit": "[-1, 1] (the model rescales [0, 1] inputs)",
    "vit": "[-1, 1] (the model rescales [0, 1] inputs)",
    "efficientnet": "ImageNet mean/std (the model normalizes [0, 1] inputs)",
    "efficientnet_lite": "(255x - 127) / 128 (the model rescales [0, 1] inputs)",
}


def _constructor(architecture):
    m = BIT.match(architecture)
    if m:
        return "bit", f"BiT_M_R{m.group(1)}x{m.group(2)}"
    m = VIT.match(architecture)
    if m:
        return "vit", f"ViT_{VIT_SIZES[m.group(1)]}{m.group(2)}"
    if architecture in ("vit_base_r50_s16_224", "vit_base_r50_s16_384"):
        return "vit", "ViT_R50_B16"
    m = EFFNET.match(architecture)
    if m:
        v = m.group(1)
        return "efficientnet", "EfficientNet" + (v.capitalize() if v.startswith("lite") else v.upper())
    return None, None


def _settings(cfg):
    return {
        "crop_pct": round(float(cfg.crop_pct), 4),
        "interpolation": cfg.interpolation,
        "mean": [round(float(x), 6) for x in cfg.mean],
        "std": [round(float(x), 6) for x in cfg.std],
    }


def hf_entries():
    import timm
    from timm.models import get_pretrained_cfg

    entries = []
    for name in sorted(timm.list_pretrained("resnetv2_*_bit*") + timm.list_pretrained("vit_*")
                       + timm.list_pretrained("tf_efficientnet_*")):
        architecture, _, tag = name.partition(".")
        family, constructor = _constructor(architecture)
        if family is None or tag in SKIP_TAGS:
            continue
        if family == "vit" and tag not in VIT_TAGS:
            continue
        cfg = get_pretrained_cfg(name)
        if not cfg.hf_hub_id or not cfg.hf_hub_id.startswith("timm/") or tag not in DATA:
            continue
        pretrained_on, fine_tuned_on = DATA[tag]
        lite = "lite" in architecture
        entries.append({
            "tag": f"hf-hub:{cfg.hf_hub_id}",
            "aliases": [f"hf://{cfg.hf_hub_id}"],
            "url": f"hf-hub:{cfg.hf_hub_id}",
            "format": "safetensors",
            "pretrained_on": pretrained_on,
            "fine_tuned_on": fine_tuned_on,
            "num_classes": int(cfg.num_classes),
            "resolution": int(cfg.input_size[-1]),
            "family": family,
            "constructor": constructor,
            "license": cfg.license or "apache-2.0",
            "normalization": NORMALIZATION["efficientnet_lite" if lite else family],
            "checksum": None,
            **_settings(cfg),
        })
    return entries


def _timm_cfg(names):
    from timm.models import get_pretrained_cfg

    for name in names:
        if "." in name and "/" not in name:
            try:
                cfg = get_pretrained_cfg(name)
            except Exception:  # noqa: BLE001 - not a timm weight name
                cfg = None
            if cfg is not None and cfg.crop_pct:
                return cfg
    return None


def rule_settings(entry):
    """The family's published evaluation rule, where timm names no weight for the entry."""
    res, family, tag = entry["resolution"], entry["family"], entry["tag"]
    half = [0.5, 0.5, 0.5]
    if family == "bit":
        if "distilled" in tag or "teacher" in tag:
            return {"crop_pct": 1.0 if res >= 384 else 0.875, "interpolation": "bicubic", "mean": half, "std": half}
        return {"crop_pct": 1.0 if entry["fine_tuned_on"] else 0.875, "interpolation": "bilinear",
                "mean": half, "std": half}
    if family == "vit":
        return {"crop_pct": 1.0 if res >= 384 else 0.9, "interpolation": "bicubic", "mean": half, "std": half}
    lite = "lite" in entry["constructor"].lower()
    return {"crop_pct": round(res / (res + 32), 3), "interpolation": "bicubic",  # timm rounds to 3 places
            "mean": half if lite else [0.485, 0.456, 0.406], "std": half if lite else [0.229, 0.224, 0.225]}


_EFFNET_TAG = re.compile(r"^efficientnet_(b[0-7]|lite[0-4]|l2)(_notop|_tf|_ns|_ns_475)?$")
_EFFNET_TIMM = {None: "aa_in1k", "_notop": "aa_in1k", "_tf": "aa_in1k", "_ns": "ns_jft_in1k",
                "_ns_475": "ns_jft_in1k_475"}


def timm_names(entry):
    """timm weight names for an entry: its aliases, and for the TF EfficientNet files the
    timm copy of the same release (Keras h5 and ckptsaug: AutoAugment; noisystudent: ns_jft)."""
    names = list(entry.get("aliases", []))
    m = _EFFNET_TAG.match(entry["tag"])
    if m:
        v, suffix = m.groups()
        names.append(f"tf_efficientnet_{v}." + ("in1k" if v.startswith("lite") else _EFFNET_TIMM[suffix]))
    return names


def with_settings(entry):
    cfg = _timm_cfg(timm_names(entry))
    settings = _settings(cfg) if cfg is not None and int(cfg.input_size[-1]) == entry["resolution"] else rule_settings(entry)
    out = {k: v for k, v in entry.items() if k not in settings}
    out.update(settings)
    return out


def _dump(data):
    return json.dumps(data, indent=1, ensure_ascii=False)


def main(check=False):
    changed = []
    hf = {"about": (
        "timm's copies of the three families on the Hugging Face Hub (huggingface.co/timm), "
        "written by tools/catalogue_timm.py from timm's pretrained configurations. Tag = the "
        "handle; loaded through huggingface_hub (its cache, HF_HUB_OFFLINE). checksum null: the "
        "Hub's cache verifies files by their ETag; no revision pinned (main). AdvProp "
        "(ap_in1k) copies are left out: they expect [-1, 1] inputs, our B-series normalizes "
        "with ImageNet mean/std."), "entries": hf_entries()}
    files = {"hf_timm.json": _dump(hf)}
    for name in ("bit.json", "vit.json", "efficientnet.json"):
        with open(os.path.join(HERE, name)) as f:
            data = json.load(f)
        data["entries"] = [with_settings(e) for e in data["entries"]]
        files[name] = _dump(data)
    for name, text in files.items():
        path = os.path.join(HERE, name)
        old = open(path).read() if os.path.exists(path) else None
        if old != text:
            changed.append(name)
            if not check:
                with open(path, "w") as f:
                    f.write(text)
    print(("differ: " if check else "written: ") + (", ".join(changed) or "nothing"))
    return 1 if check and changed else 0


if __name__ == "__main__":
    sys.exit(main(check="--check" in sys.argv))
