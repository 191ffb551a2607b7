"""AggPose in JAX/Flax: models, keypoint codecs, COCO evaluation and sharded training."""
