"""Behaviour of the hierarchical similarity network (ARCHITECTURE.md section 5)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as nnf

from model.similarity.config import SimilarityConfig
from model.similarity.network import HapVRSimilarity, frame_vectors, stretch_to_min_frames, topk_chamfer


def unit(*shape: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return nnf.normalize(torch.randn(*shape, generator=generator), dim=-1)


def full(batch: int, length: int) -> torch.Tensor:
    return torch.ones(batch, length, dtype=torch.bool)


def test_topk_chamfer_is_chamfer_at_k1_and_mean_at_k_all() -> None:
    sim = torch.randn(3, 5, 40)
    rows, cols = full(3, 5), full(3, 40)
    chamfer = sim.max(dim=2).values.mean(dim=1)
    assert torch.allclose(topk_chamfer(sim, rows, cols, rate=1 / 40), chamfer)
    assert torch.allclose(topk_chamfer(sim, rows, cols, rate=1.0), sim.mean(dim=(1, 2)))
    # k = round(40 * 0.1) = 4: mean of the 4 largest per row.
    expected = sim.topk(4, dim=2).values.mean(dim=2).mean(dim=1)
    assert torch.allclose(topk_chamfer(sim, rows, cols, rate=0.1), expected)


def test_region_level_k1_is_region_chamfer() -> None:
    net = HapVRSimilarity(SimilarityConfig(attention=False, comparator=False, rho_f=0.1))
    assert net.config.k_regions == 1
    query, target = unit(1, 6, 9, 32, seed=1), unit(1, 7, 9, 32, seed=2)
    frame_sim, _ = net.frame_similarity(query, target)
    region = torch.einsum("iod,jpd->iojp", query[0], target[0])
    assert torch.allclose(frame_sim[0], region.max(dim=3).values.mean(dim=1), atol=1e-6)

    all_regions = HapVRSimilarity(SimilarityConfig(attention=False, comparator=False, rho_f=1.0))
    frame_sim_mean, _ = all_regions.frame_similarity(query, target)
    assert torch.allclose(frame_sim_mean[0], region.mean(dim=(1, 3)), atol=1e-6)


@pytest.mark.parametrize(
    "config",
    [
        SimilarityConfig(),
        SimilarityConfig(symmetric=True),
        SimilarityConfig(residual=True, symmetric=True),
        SimilarityConfig.training_free(),
    ],
    ids=["learned", "learned-symmetric", "residual", "training-free"],
)
def test_padded_frames_never_change_a_score(config: SimilarityConfig) -> None:
    torch.manual_seed(0)
    net = HapVRSimilarity(dataclasses.replace(config, dim=32)).eval()
    query = net.index(unit(13, 9, 32, seed=3))
    targets = [net.index(unit(length, 9, 32, seed=length)) for length in (2, 5, 11, 30)]
    with torch.inference_mode():
        together = net.one_to_many(query, targets).score
        alone = torch.stack([net.one_to_many(query, [target]).score[0] for target in targets])
        # Garbage in the padded part must not leak into any score either.
        batch, mask = net.batch(targets)
        batch[~mask] = 5.0
        query_batch, query_mask = net.batch([query])
        noisy = net.compare(query_batch, batch, query_mask, mask).score
    assert torch.allclose(together, alone, atol=1e-5)
    assert torch.allclose(noisy, alone, atol=1e-5)


def test_symmetric_honours_the_rate_in_both_directions() -> None:
    net = HapVRSimilarity(SimilarityConfig(attention=False, comparator=False, symmetric=True, rho_v=0.25, dim=16))
    query, target = unit(1, 8, 9, 16, seed=4), unit(1, 20, 9, 16, seed=5)
    output = net.compare(query, target)
    frame_sim = output.frame_sim[0]
    forward = frame_sim.topk(5, dim=1).values.mean()  # round(20 * 0.25) = 5 target frames per query row
    backward = frame_sim.t().topk(2, dim=1).values.mean()  # round(8 * 0.25) = 2 query frames per target row
    assert torch.allclose(output.score[0], (forward + backward) / 2, atol=1e-6)


def test_identical_video_scores_highest_training_free() -> None:
    net = HapVRSimilarity(SimilarityConfig.training_free(dim=64))
    video = unit(12, 9, 64, seed=6)
    others = [unit(12, 9, 64, seed=seed) for seed in range(7, 12)]
    scores = net.one_to_many(video, [video, *others]).score
    assert scores[0] == pytest.approx(1.0, abs=1e-5)
    assert bool((scores[1:] < scores[0]).all())


def test_very_short_videos_are_stretched_not_rejected() -> None:
    net = HapVRSimilarity(SimilarityConfig(dim=16)).eval()
    single = unit(1, 9, 16, seed=8)
    assert stretch_to_min_frames(single, 4).shape[0] == 4
    scores = net.one_to_many(single, [single, unit(2, 9, 16, seed=9)]).score
    assert torch.isfinite(scores).all()
    assert bool((scores.abs() <= 1).all())


def test_gradients_reach_every_trainable_parameter() -> None:
    torch.manual_seed(0)
    net = HapVRSimilarity(SimilarityConfig(dim=32))
    videos = unit(4, 10, 9, 32, seed=10)
    mask = full(4, 10)
    mask[1, 7:] = False
    output = net.all_pairs(net.index(videos), mask, chunk=3)
    assert output.score.shape == (4, 4)
    loss = output.score.sum() + output.video_sim_raw.pow(2).sum()
    loss.backward()
    for name, parameter in net.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


def test_all_pairs_matches_pairwise_compare() -> None:
    net = HapVRSimilarity(SimilarityConfig(dim=16)).eval()
    videos = net.index(unit(3, 8, 9, 16, seed=11))
    mask = full(3, 8)
    with torch.inference_mode():
        pairs = net.all_pairs(videos, mask, chunk=2).score
        for i in range(3):
            for j in range(3):
                single = net.compare(videos[i : i + 1], videos[j : j + 1]).score[0]
                assert pairs[i, j] == pytest.approx(float(single), abs=1e-5)


def test_frame_vectors_are_unit_norm() -> None:
    vectors = frame_vectors(unit(5, 9, 16, seed=12))
    assert vectors.shape == (5, 16)
    assert torch.allclose(vectors.norm(dim=-1), torch.ones(5), atol=1e-6)


def test_untrained_residual_network_is_the_pooled_chamfer_prior() -> None:
    """At the start the residual comparator adds nothing and attention weighs every region 0.5,
    so the score is the video-level Chamfer of F max-pooled 4x4, at a quarter of the scale."""
    torch.manual_seed(0)
    dim = 32
    net = HapVRSimilarity(SimilarityConfig(dim=dim, residual=True, symmetric=True)).eval()
    free = HapVRSimilarity(SimilarityConfig(dim=dim, attention=False, comparator=False))
    query, target = unit(12, 9, dim, seed=4), unit(17, 9, dim, seed=5)
    with torch.inference_mode():
        score = net.one_to_many(net.index(query), [net.index(target)]).score[0]
        frame_sim, _ = free.frame_similarity(query[None], target[None])
    pooled = nnf.max_pool2d(frame_sim, 4, 4)[0]  # [3, 4]
    forward, backward = pooled.max(dim=1).values.mean(), pooled.max(dim=0).values.mean()
    assert torch.allclose(score, 0.25 * (forward + backward) / 2, atol=1e-5)


def test_residual_network_learns_from_its_zero_start() -> None:
    """A zero head must still pass gradients to every layer after one optimiser step."""
    torch.manual_seed(0)
    net = HapVRSimilarity(SimilarityConfig(dim=16, residual=True))
    videos = unit(4, 8, 9, 16, seed=6)
    optimiser = torch.optim.SGD(net.parameters(), lr=1e-3)
    for _ in range(2):
        optimiser.zero_grad()
        score = net.all_pairs(net.index(videos), full(4, 8)).score
        (-score.diagonal().sum() + score.sum()).backward()
        optimiser.step()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


@pytest.mark.parametrize("residual", [False, True])
def test_comparator_tiles_give_exactly_one_pass(residual: bool) -> None:
    from model.similarity.network import VideoComparator

    torch.manual_seed(3)
    comparator = VideoComparator(residual).eval()
    for parameter in comparator.parameters():  # a trained-looking network, not the zero start
        parameter.data.copy_(torch.randn_like(parameter) * 0.3)
    frame_sim = torch.rand(2, 23, 301) * 2 - 1
    mask = torch.ones(2, 23, 301, dtype=torch.bool)
    mask[1, :, 250:] = False  # a shorter second target, padded
    mask[1, 20:, :] = False
    with torch.inference_mode():
        whole, whole_valid = comparator._forward(frame_sim, mask)
        comparator.tile_cells = 2 * 23 * 24  # tiles of 24 columns: 13 tiles with halos
        tiled, tiled_valid = comparator(frame_sim, mask)
    assert tiled.shape == whole.shape == (2, 5, 75)
    assert torch.equal(tiled_valid, whole_valid)
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-6)
