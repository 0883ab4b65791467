"""The DALI training pipeline: shards -> augmented frame, masked spectrogram, metadata bytes."""

from __future__ import annotations

from nvidia.dali import pipeline_def, types

from avloc.data import augment
from avloc.data.options import SHUFFLE_BUFFER
from avloc.pipelines import graph


@pipeline_def(enable_checkpointing=True)
def train_pipeline(paths, index_paths, *, shard_id=0, num_shards=1, reader_seed=0, gpu=False,
                   image_size=augment.IMAGE_SIZE, shuffle_buffer=SHUFFLE_BUFFER, image_dtype=types.FLOAT,
                   mask_fill=0.0, crop_only=False):
    """``crop_only``: the shards store frames at the training scale (avloc.data.frame_scale), so the
    frame is cropped and flipped without a resize."""
    jpg, spec, meta, source = graph.read_shards(paths, index_paths, shard_id=shard_id, num_shards=num_shards,
                                                shuffle=True, seed=reader_seed, shuffle_buffer=shuffle_buffer)
    make_frame = graph.crop_frame if crop_only else graph.train_frame
    image = make_frame(jpg, gpu=gpu, image_size=image_size, dtype=image_dtype)
    spec = graph.spec_from_bytes(spec.gpu() if gpu else spec)
    spec = graph.scale_spec(graph.spec_augment(spec, fill_value=mask_fill))
    return image, spec, graph.padded_bytes(meta), graph.padded_bytes(source)
