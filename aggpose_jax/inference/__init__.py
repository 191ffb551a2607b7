"""The inference app: a trained or converted model on images, folders and videos.

`predictor.Predictor` (from a run, a params file or an exported model) -> `evaluation.Persons`;
`python -m aggpose_jax.inference` writes COCO results, overlays and per-video pose sequences;
`python -m aggpose_jax.inference.export` writes StableHLO and ONNX. The one part of aggpose_jax that
may import data_pipelines; it never imports training or experiments (docs/inference.md).
"""
