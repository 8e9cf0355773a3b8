"""Feature store: round trip, layout, idempotent delete, corruption and crash safety."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from indexer.feature_codec import decode_regions_float32, encode_regions
from indexer.feature_store import (
    CorruptFeaturesError,
    FeatureStorage,
    FeatureStore,
    MissingFeaturesError,
)
from indexer.synthetic import synthetic_video
from model.features import VideoFeatures, mean_frame_vectors

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    return FeatureStore(tmp_path / "features")


def _video(seed: int = 0, frames: int = 7, dim: int = 32) -> VideoFeatures:
    features = synthetic_video(np.random.default_rng(seed), frames, dim=dim)
    features.source_fps = 29.97
    features.checkpoint = "c76e00f3fb560de0"
    return features


def test_round_trip_keeps_values_dtypes_and_decode_info(store: FeatureStore) -> None:
    original = _video()
    store.put(42, original)
    loaded = store.get(42)
    assert loaded.regions.dtype == np.float32 and loaded.frame_vectors.dtype == np.float32  # decoded levels
    assert loaded.timestamps.dtype == np.float64
    # Regions come back as 4-bit codes allow (indexer.feature_codec), frame vectors by the mean rule.
    assert loaded.regions.shape == original.regions.shape
    assert _cosines(loaded.regions, original.regions).min() > 0.98
    exact = decode_regions_float32(*encode_regions(original.regions), original.dim)
    np.testing.assert_array_equal(loaded.regions, exact)
    np.testing.assert_array_equal(loaded.frame_vectors, mean_frame_vectors(exact))
    assert _cosines(loaded.frame_vectors, original.frame_vectors).min() > 0.99
    np.testing.assert_array_equal(loaded.timestamps, original.timestamps)
    again = FeatureStore(store.root).get(42)  # what a rebuild of the index reads: the same vectors
    np.testing.assert_array_equal(again.frame_vectors, loaded.frame_vectors)
    assert (loaded.duration, loaded.fps, loaded.source_fps) == (original.duration, original.fps, 29.97)
    assert loaded.checkpoint == "c76e00f3fb560de0"  # the model that made them


def _as_stored(features: VideoFeatures) -> np.ndarray:
    """The regions as the store gives them back: through the 4-bit codes."""
    return decode_regions_float32(*encode_regions(features.regions), features.dim)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float32), b.astype(np.float32)
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_a_video_minute_takes_at_most_150_kb(store: FeatureStore) -> None:
    """The shipped model's shape: 9 regions of 512 dims a frame, one frame a second."""
    minute = synthetic_video(np.random.default_rng(0), 60, dim=512, regions=9)
    store.put(1, minute)
    size = store.path_for(1).stat().st_size
    assert size <= 150_000, size
    float16_size = minute.regions.nbytes + minute.frame_vectors.nbytes + minute.timestamps.nbytes
    assert float16_size > 4 * size


def test_frame_vectors_off_the_mean_rule_are_stored_as_they_are(store: FeatureStore) -> None:
    original = _video()
    original.frame_vectors = original.frame_vectors[::-1].copy()  # no longer the mean of each frame
    store.put(3, original)
    np.testing.assert_array_equal(store.get(3).frame_vectors, original.frame_vectors)


def test_the_float16_format_can_still_be_chosen(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "features", compact=False)
    original = _video()
    store.put(5, original)
    loaded = FeatureStore(store.root).get(5, verify=True)  # any store reads either format
    np.testing.assert_array_equal(loaded.regions, original.regions)
    np.testing.assert_array_equal(loaded.frame_vectors, original.frame_vectors)


def test_format_1_files_are_still_read(store: FeatureStore) -> None:
    """float16 regions and float32 frame vectors, as written before the compact format."""
    from safetensors.numpy import save

    from indexer.feature_store import FORMAT_V1, _checksum

    original = _video()
    metadata = {
        "format": FORMAT_V1,
        "video_id": "8",
        "crc32": _checksum(original.regions, original.frame_vectors, original.timestamps),
        "fps": "1.0",
    }
    arrays = {
        "regions": original.regions,
        "frame_vectors": original.frame_vectors,
        "timestamps": original.timestamps,
    }
    path = store.path_for(8)
    path.parent.mkdir(parents=True)
    path.write_bytes(save(arrays, metadata=metadata))
    loaded = store.get(8, verify=True)
    np.testing.assert_array_equal(loaded.regions, original.regions)
    np.testing.assert_array_equal(loaded.frame_vectors, original.frame_vectors)
    assert loaded.fps == 1.0 and store.scrub() == []
    path.write_bytes(save({**arrays, "regions": original.regions * 2}, metadata=metadata))
    assert store.scrub() == [8]


def test_optional_decode_info_may_be_absent(store: FeatureStore) -> None:
    original = _video()
    original.duration = original.fps = original.source_fps = original.checkpoint = None
    store.put(1, original)
    loaded = store.get(1)
    assert (loaded.duration, loaded.fps, loaded.source_fps, loaded.checkpoint) == (None, None, None, None)


def test_layout_is_sharded_and_ids_are_sorted(store: FeatureStore) -> None:
    ids = [5, 999, 1000, 1_234_567, 3]
    for video_id in ids:
        store.put(video_id, _video(video_id, frames=2))
    assert store.path_for(1_234_567).relative_to(store.root) == Path("000001/234/1234567.safetensors")
    assert store.path_for(5).relative_to(store.root) == Path("000000/000/5.safetensors")
    assert list(store.ids()) == sorted(ids)
    assert len(store) == len(ids)
    assert 999 in store and 998 not in store and "x" not in store and -1 not in store


def test_put_replaces(store: FeatureStore) -> None:
    store.put(7, _video(1))
    replacement = _video(2, frames=3)
    store.put(7, replacement)
    np.testing.assert_array_equal(store.get(7).regions, _as_stored(replacement))


def test_delete_is_idempotent(store: FeatureStore) -> None:
    store.put(7, _video())
    store.delete(7)
    store.delete(7)
    store.delete(123456)
    assert 7 not in store
    with pytest.raises(MissingFeaturesError, match="no features stored for video 7"):
        store.get(7)
    with pytest.raises(KeyError):  # callers may treat it as a mapping miss
        store.get(7)


def test_empty_store_lists_nothing(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "does-not-exist")
    assert list(store.ids()) == []
    assert store.remove_partial_writes() == 0


def test_rejects_bad_ids(store: FeatureStore) -> None:
    with pytest.raises(ValueError):
        store.put(-1, _video())
    with pytest.raises(TypeError):
        store.put("3", _video())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # torn write
        lambda data: b"",  # empty file
        lambda data: b"not a features file at all, just some text",
        lambda data: data[:-1] + bytes([data[-1] ^ 0xFF]),  # one flipped byte in the payload
    ],
    ids=["truncated", "empty", "garbage", "bit-flip"],
)
def test_corrupted_file_gives_a_clear_error(store: FeatureStore, damage) -> None:
    store.put(9, _video())
    path = store.path_for(9)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CorruptFeaturesError, match=r"video 9 .*9\.safetensors"):
        store.get(9)


def test_file_of_another_video_is_rejected(store: FeatureStore) -> None:
    store.put(1, _video())
    store.path_for(2).parent.mkdir(parents=True, exist_ok=True)
    store.path_for(2).write_bytes(store.path_for(1).read_bytes())
    with pytest.raises(CorruptFeaturesError, match="belong to video 1"):
        store.get(2)


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(store: FeatureStore, monkeypatch) -> None:
    old = _video(1)
    store.put(3, old)

    def broken_replace(src, dst):
        raise OSError("disk went away")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk went away"):
        store.put(3, _video(2))
    monkeypatch.undo()
    np.testing.assert_array_equal(store.get(3).regions, _as_stored(old))
    assert sorted(p.name for p in store.path_for(3).parent.iterdir()) == ["3.safetensors"]


def test_crash_mid_write_leaves_the_old_file(store: FeatureStore) -> None:
    """A process killed after writing the temp file but before the rename changes nothing visible."""
    old = _video(1)
    store.put(3, old)
    script = textwrap.dedent(
        f"""
        import os
        import numpy as np
        from indexer.feature_store import FeatureStore
        from indexer.synthetic import synthetic_video
        os.replace = lambda src, dst: os._exit(17)  # die exactly between fsync and rename
        FeatureStore({str(store.root)!r}).put(3, synthetic_video(np.random.default_rng(2), 9, dim=32))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert result.returncode == 17, result.stderr.decode()
    leftovers = [p.name for p in store.path_for(3).parent.iterdir() if p.name != "3.safetensors"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".tmp-")
    np.testing.assert_array_equal(store.get(3).regions, _as_stored(old))
    assert list(store.ids()) == [3]
    assert store.remove_partial_writes() == 1
    assert [p.name for p in store.path_for(3).parent.iterdir()] == ["3.safetensors"]


def test_unverified_reads_skip_the_checksum(store: FeatureStore) -> None:
    store.put(4, _video())
    path = store.path_for(4)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # last byte of the timestamps: still a valid float
    path.write_bytes(bytes(data))
    FeatureStore(store.root, verify=False).get(4)
    store.get(4, verify=False)
    with pytest.raises(CorruptFeaturesError):
        store.get(4)
    store.put(5, _video())
    assert store.scrub() == [4]


def test_files_are_plain_safetensors_and_reads_are_views(store: FeatureStore) -> None:
    from safetensors.numpy import load_file

    original = _video()
    store.put(8, original)
    tensors = load_file(str(store.path_for(8)))
    codes, steps = encode_regions(original.regions)
    np.testing.assert_array_equal(tensors["region_codes"], codes)
    np.testing.assert_array_equal(tensors["region_steps"], steps)
    assert set(tensors) == {"region_codes", "region_steps", "timestamps", "frame_weights"}
    loaded = store.get(8)
    loaded.regions[0, 0, 0] = 7  # decoded into memory of its own: the file never changes
    np.testing.assert_array_equal(store.get(8).regions, _as_stored(original))


def test_header_pointing_outside_the_file_is_corrupt(store: FeatureStore) -> None:
    import json

    store.put(6, _video())
    path = store.path_for(6)
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    header["region_codes"]["data_offsets"][1] += 2  # claims two more bytes than the shape needs
    text = json.dumps(header, separators=(",", ":")).encode()
    assert len(text) <= size
    text = text.ljust(size)
    path.write_bytes(data[:8] + text + data[8 + size :])
    with pytest.raises(CorruptFeaturesError, match="does not fit"):
        store.get(6)


def test_local_store_satisfies_the_interface(store: FeatureStore) -> None:
    assert isinstance(store, FeatureStorage)


def test_features_validate_shapes() -> None:
    with pytest.raises(ValueError, match="frame_vectors"):
        VideoFeatures(np.zeros((3, 9, 8)), np.zeros((2, 8)), np.zeros(3))
    with pytest.raises(ValueError, match="timestamps"):
        VideoFeatures(np.zeros((3, 9, 8)), np.zeros((3, 8)), np.zeros(4))
    with pytest.raises(ValueError, match="at least one frame"):
        VideoFeatures(np.zeros((0, 9, 8)), np.zeros((0, 8)), np.zeros(0))
    broken = VideoFeatures(np.full((1, 9, 8), np.nan), np.zeros((1, 8)), np.zeros(1))
    with pytest.raises(ValueError, match="NaN"):
        broken.check_finite()


def test_put_refuses_non_finite_features(store: FeatureStore) -> None:
    broken = VideoFeatures(np.full((1, 9, 8), np.inf), np.zeros((1, 8)), np.zeros(1))
    with pytest.raises(ValueError, match="NaN or infinite"):
        store.put(1, broken)
    assert 1 not in store


def test_frame_weights_are_stored_at_index_time_and_files_without_them_still_read(store: FeatureStore) -> None:
    """Files of the previous release hold no weights: they read, and the weights come from the regions."""
    from safetensors.numpy import load_file, save

    from indexer.feature_store import FORMAT_V1, _checksum
    from model.similarity.informativeness import frame_weights

    original = _video()
    store.put(9, original)
    stored = load_file(str(store.path_for(9)))
    np.testing.assert_array_equal(stored["frame_weights"], frame_weights(original.regions))
    np.testing.assert_array_equal(store.get(9, verify=True).weights, stored["frame_weights"])

    # A float16 file as the previous release wrote it: no weights.
    arrays = {
        "regions": original.regions,
        "frame_vectors": original.frame_vectors,
        "timestamps": original.timestamps,
    }
    metadata = {"format": FORMAT_V1, "video_id": "10", "crc32": _checksum(*arrays.values())}
    store.path_for(10).parent.mkdir(parents=True, exist_ok=True)
    store.path_for(10).write_bytes(save(arrays, metadata=metadata))
    old = store.get(10, verify=True)
    assert old.frame_weights is None
    np.testing.assert_array_equal(old.weights, stored["frame_weights"])


@pytest.mark.parametrize("dim", [32, 33])
def test_compact_features_are_decoded_only_when_their_values_are_read(store: FeatureStore, dim: int) -> None:
    """The re-rank decodes the codes into its own workspace and takes frame energies from the codes;
    both agree with the float32 regions that any other reader gets."""
    import torch

    from indexer.feature_codec import CompactVideoFeatures, decode_into, region_energy
    from model.similarity.segments import frame_energy

    store.put(3, _video(dim=dim))
    loaded = store.get(3)
    assert isinstance(loaded, CompactVideoFeatures) and not loaded.decoded
    assert (loaded.num_frames, loaded.num_regions, loaded.dim) == (7, 9, dim) and not loaded.decoded
    energy = region_energy(loaded.codes, loaded.steps, dim).mean(axis=1)
    into32 = decode_into(torch.empty(7, 9, dim), loaded.codes, loaded.steps)
    into16 = decode_into(torch.empty(7, 9, dim, dtype=torch.bfloat16), loaded.codes, loaded.steps)
    assert not loaded.decoded
    exact = _as_stored(_video(dim=dim))
    np.testing.assert_array_equal(loaded.regions, exact)
    assert loaded.decoded
    np.testing.assert_array_equal(into32.numpy(), exact)
    np.testing.assert_allclose(into16.float().numpy(), exact, rtol=2**-7, atol=0)
    np.testing.assert_allclose(energy, frame_energy(exact), rtol=1e-5)
    np.testing.assert_array_equal(loaded.frame_vectors, mean_frame_vectors(exact))
    with pytest.raises(ValueError, match="do not fill"):
        decode_into(torch.empty(6, 9, dim), loaded.codes, loaded.steps)
