import json

import av
import grain
import numpy as np
import pytest

from data_pipelines import crop, video

NUM_FRAMES, RATE, HW = 40, 10, (48, 64)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 40-frame, 10 fps, 64x48 MPEG-4 clip: a moving square and a per-frame grey level."""
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=RATE)
        stream.width, stream.height, stream.pix_fmt = HW[1], HW[0], "yuv420p"
        for i in range(NUM_FRAMES):
            rgb = np.full((*HW, 3), 4 * i, np.uint8)
            rgb[8:24, i : i + 16] = (250, 40, 40)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _decoded(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def _pixels(item: dict) -> np.ndarray:
    """A source item's encoded frame decoded to (H, W, 3) uint8 RGB: sources hand out bytes."""
    assert isinstance(item["image_bytes"], bytes) and "image" not in item
    return crop.load_image(dict(item), to_rgb=True)["image"]


def _manifest(out_dir) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "manifest.jsonl").read_text().splitlines()]


def test_every_n_frames_and_timestamps(clip, tmp_path):
    video.extract_frames(clip, tmp_path, every_n=3, frames_per_shard=4)
    lines = _manifest(tmp_path)
    assert [x["frame_index"] for x in lines] == list(range(0, NUM_FRAMES, 3))
    np.testing.assert_allclose([x["timestamp"] for x in lines], np.arange(0, NUM_FRAMES, 3) / RATE)
    shard_1 = video.shard_name(1)
    assert [(x["shard"], x["record"]) for x in lines[4:6]] == [(shard_1, 0), (shard_1, 1)]
    assert len(list(tmp_path.glob("frames-*.array_record"))) == 4  # 14 frames, 4 per shard


def test_target_fps_keeps_the_first_frame_at_each_grid_point(clip, tmp_path):
    target = 4.0
    video.extract_frames(clip, tmp_path, fps=target)
    times = np.arange(NUM_FRAMES) / RATE
    grid = np.arange(0, times[-1] + 1e-9, 1 / target)
    want = sorted({int(np.argmax(times >= g - 1e-9)) for g in grid})
    got = [x["frame_index"] for x in _manifest(tmp_path)]
    assert got == want
    assert got[:5] == [0, 3, 5, 8, 10]


def test_reader_matches_direct_decoding(clip, tmp_path):
    video.extract_frames(clip, tmp_path / "png", every_n=2, frames_per_shard=7, image_format="png")
    video.extract_frames(clip, tmp_path / "jpg", every_n=2, frames_per_shard=7)
    frames = _decoded(clip)
    png = grain.MapDataset.source(video.VideoFrameSource(tmp_path / "png"))
    assert len(png) == NUM_FRAMES // 2
    for i, item in enumerate(png):
        assert item["frame_index"] == 2 * i and item["video"] == str(clip)
        assert item["timestamp"] == pytest.approx(2 * i / RATE)
        image = _pixels(item)
        assert image.dtype == np.uint8 and image.shape == (*HW, 3)
        np.testing.assert_array_equal(image, frames[2 * i])  # lossless: exact
    jpg = video.VideoFrameSource(tmp_path / "jpg")
    diff = np.abs(_pixels(jpg[5]).astype(int) - frames[10].astype(int))
    assert diff.mean() < 3.0
    both = video.VideoFrameSource([tmp_path / "png", tmp_path / "jpg"])
    assert len(both) == 2 * len(png)


def test_resume_after_interruption_equals_an_uninterrupted_run(clip, tmp_path):
    kwargs = dict(every_n=1, frames_per_shard=4, image_format="png")
    video.extract_frames(clip, tmp_path / "full", **kwargs)

    def crash_after_two(shard):
        if shard == 1:
            raise KeyboardInterrupt

    part = tmp_path / "part"
    with pytest.raises(KeyboardInterrupt):
        video.extract_frames(clip, part, on_shard_written=crash_after_two, **kwargs)
    assert not (part / "manifest.jsonl").exists()
    (part / (video.shard_name(2) + ".tmp")).write_bytes(b"half a shard")  # killed mid-shard
    assert len(video.VideoFrameSource(part)) == 8  # the complete shards are readable already

    rewritten = []
    video.extract_frames(clip, part, on_shard_written=rewritten.append, **kwargs)
    assert rewritten == list(range(2, 10))  # shards 0 and 1 were kept, not redone
    assert (part / "manifest.jsonl").read_text() == (tmp_path / "full/manifest.jsonl").read_text()
    names = sorted(p.name for p in (tmp_path / "full").iterdir())
    assert names == sorted(p.name for p in part.iterdir())
    for name in names:
        assert (part / name).read_bytes() == (tmp_path / "full" / name).read_bytes(), name

    with pytest.raises(ValueError, match="other settings"):
        video.extract_frames(clip, part, every_n=2, frames_per_shard=4, image_format="png")


def test_command_line(clip, tmp_path):
    video.main([str(clip), str(tmp_path), "--fps", "5", "--frames-per-shard", "8"])
    assert [x["frame_index"] for x in _manifest(tmp_path)] == list(range(0, NUM_FRAMES, 2))
