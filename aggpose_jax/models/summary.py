"""Parameter and multiply-add counts of the model variants.

    python -m aggpose_jax.models.summary --model aggpose_l --num-keypoints 17 [--input-hw 256 192] [--json]
    python -m aggpose_jax.models.summary --model aggpose_l --option fusion=ram --option head=gpr
    python -m aggpose_jax.models.summary --model mln_base --input-hw 368 432 \
        --num-keypoints 19 --out-channels pafs=38

Any family's variant by `<family>_<variant>` (`segformer_b5`, `mit_b2`, `aggpose_tiny`; `--list`).

Three compute figures for one image (batch 1):
* `gmacs`: multiply-adds of every matmul and convolution, attention matmuls included, counted on the
  traced program (jaxpr) from operand shapes (the depthwise convs, computed as shifted multiplies, are
  recognised by their named scope) - the same quantity as torch's FlopCounterMode / 2, the
  counter behind the official figures. Scanned block groups count `length` times.
* `gmacs_no_attention`: the same without the q.k^T and attn.v matmuls (the batched dot_generals), which
  is what thop-style counters report and what the AggPose paper's GFLOPs match for AggPose-L.
* `xla_gmacs`: XLA's cost analysis of the compiled forward (`flops / 2`), which also counts elementwise
  work (LayerNorm, GELU, softmax, residual adds), so it is a little above `gmacs` (AggPose-L 15.77,
  +1.4%; AggPose-S 7.44, +2.1%). It needs the unrolled program (XLA counts a scanned loop body once)
  and a compile, so it is only computed with `--xla`.
"""

import argparse
import ast
import json
import math
import sys
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.extend import core as jex_core

from aggpose_jax.models import build
from aggpose_jax.models.blocks.mixffn import DEPTHWISE_SCOPE


def _eqn_macs(eqn: Any) -> tuple[int, bool]:
    """(multiply-adds, is an attention matmul) of one dot_general / conv equation, else (0, False)."""
    name = eqn.primitive.name
    if name == "dot_general":
        (lhs_c, _), (lhs_b, _) = eqn.params["dimension_numbers"]
        lhs = eqn.invars[0].aval.shape
        out = eqn.outvars[0].aval.shape
        contract = math.prod(lhs[d] for d in lhs_c)
        return math.prod(out) * contract, bool(lhs_b)
    if name == "mul" and DEPTHWISE_SCOPE in str(eqn.source_info.name_stack):
        # The depthwise 3x3 conv runs as nine shifted multiplies: one MAC per product.
        return math.prod(eqn.outvars[0].aval.shape), False
    if name == "conv_general_dilated":
        rhs = eqn.invars[1].aval.shape  # flax kernel (kh, kw, in/groups, out) in HWIO
        spec = eqn.params["dimension_numbers"].rhs_spec  # (out, in, spatial...) positions
        per_out = math.prod(rhs[d] for d in spec[1:])
        if any(d > 1 for d in eqn.params["lhs_dilation"]):
            # A transposed conv runs on a zero-dilated input: count the real input positions times
            # the kernel (torch's FlopCounterMode does the same), not every output position.
            lhs = eqn.invars[0].aval.shape
            lhs_spec = eqn.params["dimension_numbers"].lhs_spec  # (batch, feature, spatial...)
            positions = lhs[lhs_spec[0]] * math.prod(lhs[d] for d in lhs_spec[2:])
            return positions * rhs[spec[0]] * per_out, False
        return math.prod(eqn.outvars[0].aval.shape) * per_out, False
    return 0, False


def count_macs(jaxpr: Any) -> tuple[int, int]:
    """(all matmul/conv MACs, attention-matmul MACs) of a jaxpr, recursing into sub-programs."""
    total = attention = 0
    for eqn in jaxpr.eqns:
        macs, is_attn = _eqn_macs(eqn)
        total += macs
        attention += macs if is_attn else 0
        times = eqn.params.get("length", 1) if eqn.primitive.name == "scan" else 1
        for value in eqn.params.values():
            subs = value if isinstance(value, tuple | list) else (value,)
            for sub in subs:
                if isinstance(sub, jex_core.ClosedJaxpr):
                    sub = sub.jaxpr
                if isinstance(sub, jex_core.Jaxpr):
                    t, a = count_macs(sub)
                    total, attention = total + times * t, attention + times * a
    return total, attention


def _forward_jaxpr(model: nn.Module, input_hw: tuple[int, int]) -> tuple[Any, Any]:
    """(param shapes, jaxpr of the eval forward) for one (1, H, W, 3) image, without compiling."""
    if hasattr(model, "attention_impl"):
        model = model.clone(attention_impl="xla")  # A fused kernel would hide its matmuls.
    if hasattr(model, "scan_blocks"):
        model = model.clone(scan_blocks=True)  # Traces a deep group once (counted `length` times).
    image = jax.ShapeDtypeStruct((1, *input_hw, 3), jnp.float32)
    params = jax.eval_shape(model.init, jax.random.key(0), image)
    return params, jax.make_jaxpr(lambda p, x: model.apply(p, x))(params, image).jaxpr


def forward_macs(model: nn.Module, input_hw: tuple[int, int]) -> tuple[float, float]:
    """(all, attention-matmul) multiply-adds of one (1, H, W, 3) image through `model`'s eval forward.

    Counted on the jaxpr (no compile), scanned block groups once per block, unlike XLA's cost
    analysis, which counts a loop body once. Model FLOPs of a training step: 6 x MACs x batch.
    """
    return count_macs(_forward_jaxpr(model, input_hw)[1])


def summarize(
    name: str,
    num_keypoints: int,
    input_hw: tuple[int, int] = (256, 192),
    xla: bool = False,
    options: dict[str, Any] | None = None,
    out_channels: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Params and GMACs of `<family>_<variant>` for one (1, H, W, 3) image. Returns a dict of figures.

    "heatmaps" and the family's OUTPUTS get `num_keypoints` channels unless
    `out_channels` sizes them (e.g. {"pafs": 38}); `options` are the family's OPTIONS (e.g.
    {"fusion": "ram"}). Params count trainable parameters only (BatchNorm running statistics are
    state, not parameters); `kernel_params` leaves out biases and norm scales (the count some
    papers give, e.g. MLN's Table 2).
    """
    family, variant = build.split_name(name)
    outputs = build.family_module(family).OUTPUTS
    # "heatmaps" always: a family whose outputs depend on an option (AggPose's head) lists none.
    channels = {"heatmaps": num_keypoints, **{k: num_keypoints for k in outputs}}
    channels.update(out_channels or {})
    model = build.make_model(family, variant, out_channels=channels, **(options or {}))
    params, jaxpr = _forward_jaxpr(model, input_hw)
    total, attention = count_macs(jaxpr)
    kernels = jax.tree_util.tree_leaves_with_path(params["params"])
    out = {
        "model": name,
        "num_keypoints": num_keypoints,
        "input_hw": list(input_hw),
        "options": dict(options or {}),
        "out_channels": channels,
        "params": int(sum(math.prod(x.shape) for x in jax.tree.leaves(params["params"]))),
        "kernel_params": int(
            sum(math.prod(x.shape) for p, x in kernels if getattr(p[-1], "key", "") == "kernel")
        ),
        "gmacs": total / 1e9,
        "gmacs_no_attention": (total - attention) / 1e9,
        "attention_gmacs": attention / 1e9,
    }
    if xla:
        unrolled = model.clone(scan_blocks=False) if hasattr(model, "scan_blocks") else model
        image = jax.ShapeDtypeStruct((1, *input_hw, 3), jnp.float32)
        params = jax.eval_shape(unrolled.init, jax.random.key(0), image)
        compiled = jax.jit(lambda p, x: unrolled.apply(p, x)).lower(params, image).compile()
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        out["xla_gmacs"] = cost["flops"] / 2e9
    return out


def format_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of `summarize` rows."""
    head = "| model | K | input | params | GMACs | GMACs w/o attention | XLA GMACs (all ops) |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in rows:
        xla = f"{r['xla_gmacs']:.2f}" if "xla_gmacs" in r else "-"
        lines.append(
            f"| {r['model']} | {r['num_keypoints']} | {r['input_hw'][0]}x{r['input_hw'][1]} | "
            f"{r['params']:,} | {r['gmacs']:.2f} | {r['gmacs_no_attention']:.2f} | {xla} |"
        )
    return "\n".join(lines)


def _parse_option(text: str) -> tuple[str, Any]:
    """`key=value` -> (key, value), the value as a Python literal when it is one, else a string."""
    key, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"--option {text!r} is not KEY=VALUE")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description="Params and GMACs of a model variant.")
    parser.add_argument("--model", default="aggpose_l", help="<family>_<variant>, e.g. aggpose_l")
    parser.add_argument("--list", action="store_true", help="print every family's variants")
    parser.add_argument("--num-keypoints", type=int, default=17)
    parser.add_argument("--input-hw", type=int, nargs=2, default=(256, 192))
    parser.add_argument("--xla", action="store_true", help="also compile for XLA's cost analysis")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a family option, e.g. fusion=ram (repeatable)")  # fmt: skip
    parser.add_argument("--out-channels", action="append", default=[], metavar="NAME=N",
                        help="channels of a named output, e.g. pafs=38 (repeatable)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.list:
        for family in build.known_families():
            print(" ".join(f"{family}_{v}" for v in build.family_module(family).VARIANTS))
        return 0
    try:
        options = dict(_parse_option(o) for o in args.option)
        build.model_fields(*build.split_name(args.model), options)
        channels = {k: int(v) for k, v in (_parse_option(o) for o in args.out_channels)}
        row = summarize(
            args.model, args.num_keypoints, tuple(args.input_hw), args.xla, options, channels
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(row) if args.json else format_table([row]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
