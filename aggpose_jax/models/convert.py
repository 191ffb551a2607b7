"""Weight conversion: the per-family converters in one place, and the command line.

The converters live with their family in `models/weights/` (`aggpose`, `segformer`, `hrnet`, `mit` and
`vgg` for ImageNet backbones); the shared naming rule in `weights/torch_layout.py`. This module re-exports them, so that
`convert.aggpose_params_from_state_dict(...)` is the one name to remember.

Usage (command line):
    python -m aggpose_jax.models.convert final_state.pth aggpose_l.msgpack --model aggpose_l
    python -m aggpose_jax.models.convert coco.pth infant.msgpack --num-keypoints 21 --reinit-head
    python -m aggpose_jax.models.convert pose_hrnet_w32_256x192.pth hrnet_w32.msgpack

An HRNet checkpoint (recognised by its `stage2.0.fuse_layers` keys) is written as variables
{"params", "batch_stats"}; AggPose and SegFormer ones as params.
"""

import argparse
import sys

import jax
import numpy as np

from aggpose_jax.models import build
from aggpose_jax.models.weights.aggpose import (
    aggpose_params_from_state_dict,
    aggpose_state_dict_from_params,
    infer_aggpose_config,
)
from aggpose_jax.models.weights.hrnet import (
    hrnet_state_dict_from_variables,
    hrnet_variables_from_state_dict,
    infer_hrnet_config,
    load_hrnet_backbone,
)
from aggpose_jax.models.weights.mit import load_mit_backbone, mit_state_dict_from_hf
from aggpose_jax.models.weights.segformer import (
    segformer_params_from_state_dict,
    segformer_state_dict_from_params,
)
from aggpose_jax.models.weights.torch_layout import (
    check_state_dict,
    expected_shapes,
    has_scanned_groups,
    load_params,
    load_state_dict,
    params_from_torch_names,
    save_params,
    stack_block_groups,
    strip_prefix,
    torch_names_from_params,
    torch_names_from_variables,
    unstack_block_groups,
    variables_from_torch_names,
)
from aggpose_jax.models.weights.vgg import load_vgg_front

__all__ = [
    "aggpose_params_from_state_dict", "aggpose_state_dict_from_params", "infer_aggpose_config",
    "segformer_params_from_state_dict", "segformer_state_dict_from_params", "load_mit_backbone",
    "mit_state_dict_from_hf",
    "hrnet_variables_from_state_dict", "hrnet_state_dict_from_variables", "infer_hrnet_config",
    "load_hrnet_backbone", "load_vgg_front",
    "check_state_dict", "expected_shapes", "has_scanned_groups", "load_params", "load_state_dict",
    "params_from_torch_names", "save_params", "stack_block_groups", "strip_prefix",
    "torch_names_from_params", "unstack_block_groups", "variables_from_torch_names",
    "torch_names_from_variables",
]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Command line: convert an official checkpoint into a flax msgpack params file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("in_file", help=".pth, .safetensors or .npz state dict")
    parser.add_argument("out_file", help="output .msgpack (read by convert.load_params)")
    parser.add_argument(
        "--model",
        default=None,
        help="<family>_<variant> to check against (default: read off the file)",
    )
    parser.add_argument("--num-keypoints", type=int, default=None)
    parser.add_argument("--reinit-head", action="store_true")
    parser.add_argument("--scan-blocks", action="store_true", help="stack groups for scan_blocks")
    args = parser.parse_args(argv)
    try:
        sd = strip_prefix(load_state_dict(args.in_file))
        if any(key.startswith("stage2.0.fuse_layers.") for key in sd):
            return _convert_hrnet(sd, args)
        if "final_layer.fc2.weight" not in sd:
            raise ValueError(
                "no final_layer.fc2.weight: not an AggPose or SegFormer pose checkpoint"
            )
        file_k = int(sd["final_layer.fc2.weight"].shape[0])
        k = file_k if args.num_keypoints is None else args.num_keypoints
        family = build.split_name(args.model)[0] if args.model else None
        is_segformer = family == "segformer" or (
            family is None and not any(key.startswith("block1_1.") for key in sd)
        )
        model = None
        if args.model:
            model = build.make_model(
                *build.split_name(args.model), out_channels={"heatmaps": file_k}
            )
        convert_fn = (
            segformer_params_from_state_dict if is_segformer else aggpose_params_from_state_dict
        )
        params = convert_fn(
            sd, num_keypoints=k, reinit_head=args.reinit_head, scan_blocks=args.scan_blocks,
            model=model,
        )  # fmt: skip
        save_params(args.out_file, params)
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {args.in_file}: {e}", file=sys.stderr)
        return 2
    n = sum(np.size(x) for x in jax.tree.leaves(params))
    print(f"read     {args.in_file}: {len(sd)} tensors, {file_k}-keypoint head")
    kind = args.model or ("segformer pose" if is_segformer else "AggPose") + " (read off the file)"
    print(f"model    {kind}: {n:,} params, {k} keypoints")
    if args.reinit_head:
        print("head     final_layer.fc2 re-initialised (trunc normal std 0.02, bias 0)")
    print(f"wrote    {args.out_file} ({'scanned' if args.scan_blocks else 'unrolled'} groups)")
    return 0


def _convert_hrnet(sd: dict, args: argparse.Namespace) -> int:
    """The CLI's HRNet branch: pose checkpoint -> msgpack variables {"params", "batch_stats"}."""
    if args.scan_blocks:
        raise ValueError("--scan-blocks does not apply to HRNet")
    model = None
    if args.model:
        file_k = int(sd["final_layer.weight"].shape[0])
        model = build.make_model(*build.split_name(args.model), out_channels={"heatmaps": file_k})
    variables = hrnet_variables_from_state_dict(
        sd, num_keypoints=args.num_keypoints, reinit_head=args.reinit_head, model=model
    )
    save_params(args.out_file, variables)
    n = sum(np.size(x) for x in jax.tree.leaves(variables["params"]))
    k = variables["params"]["final_layer"]["bias"].shape[0]
    print(f"read     {args.in_file}: {len(sd)} tensors (HRNet)")
    print(f"model    {args.model or 'HRNet (read off the file)'}: {n:,} params, {k} keypoints")
    if args.reinit_head:
        print("head     final_layer re-initialised (normal std 0.001, bias 0)")
    print(f"wrote    {args.out_file} (variables: params and batch_stats)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
