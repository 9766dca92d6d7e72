"""Metrics on videos with known motion, and the formulas they rest on checked against independent code."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from alg_guidance import metrics
from tests.support import synthetic_videos


def test_a_translated_texture_measures_its_shift_within_ten_percent():
    # 16 fps: VBench samples every 2nd frame, so each sampled pair is shifted by twice the per-frame step
    frames = synthetic_videos.translated(17, step=(1, 2))
    flows = metrics.motion_flows(frames, fps=16)
    assert len(flows) == 8
    true_shift = 2 * math.hypot(1, 2)
    for flow in flows:
        assert metrics.top_flow_magnitude(flow) == pytest.approx(true_shift, rel=0.10)
        # the content moves against the window: (dx, dy) = (-4, -2) pixels
        assert np.median(flow.reshape(-1, 2), axis=0) == pytest.approx([-4, -2], rel=0.10)
    result = metrics.evaluate_frames(frames, fps=16)
    assert result.flow_score == pytest.approx(true_shift, rel=0.10)
    # threshold 6 * 96 / 256 = 2.25 < 4.47: all 8 pairs move, round(4 * 9 / 16) = 2 are needed
    assert (result.threshold, result.pairs, result.moving_pairs, result.required_pairs) == (2.25, 8, 8, 2)
    assert result.dynamic


def test_a_static_video_is_not_dynamic():
    result = metrics.evaluate_frames(synthetic_videos.static(17), fps=16)
    assert result.flow_score < 0.01
    assert (result.moving_pairs, result.dynamic) == (0, False)
    assert result.temporal_flickering == 1.0
    assert result.motion_jitter == pytest.approx(0, abs=1e-3)


@pytest.mark.parametrize(("moving", "dynamic"), [(4, True), (3, False)])
def test_a_video_is_dynamic_when_round_4n_over_16_pairs_move(moving, dynamic):
    # 17 frames at 8 fps are all sampled: n = 17, 16 pairs, round(4 * 17 / 16) = round(4.25) = 4 must move
    steps = [(0, 4)] * moving + [(0, 0)] * (16 - moving)
    frames = synthetic_videos.sliding(synthetic_videos.texture(), steps, size=(64, 64))
    result = metrics.dynamic_degree(frames, fps=8)
    assert result.required_pairs == 4
    assert result.threshold == 1.5  # 6 * 64 / 256
    assert result.moving_pairs == moving
    assert result.dynamic is dynamic


def test_frames_are_sampled_at_about_eight_fps():
    # at 24 fps every 3rd frame is kept: 25 frames give 9 samples, 8 pairs shifted by 3 * 1 pixels
    frames = synthetic_videos.translated(25, step=(0, 1))
    degree = metrics.dynamic_degree(frames, fps=24)
    assert len(degree.pair_scores) == 8
    assert degree.flow_score == pytest.approx(3, rel=0.10)
    assert degree.required_pairs == round(4 * 9 / 16)


def test_the_threshold_rises_for_videos_under_eight_fps():
    assert metrics.motion_threshold(256, 512, fps=16) == 6.0
    assert metrics.motion_threshold(256, 512, fps=4) == 12.0  # frames twice as far apart in time
    assert metrics.motion_threshold(480, 832, fps=8) == 6 * 480 / 256


def test_vbench_edge_cases_of_the_decision():
    two_frames = metrics.DynamicDegree(pair_scores=(0.0,), threshold=1.0, required_pairs=0)
    assert two_frames.dynamic  # round(4 * 2 / 16) = 0 pairs needed: VBench calls it dynamic
    assert not metrics.DynamicDegree(pair_scores=(), threshold=1.0, required_pairs=0).dynamic
    # a score equal to the threshold does not move (VBench compares with >)
    assert metrics.DynamicDegree(pair_scores=(1.0, 2.0), threshold=1.0, required_pairs=1).moving_pairs == 1


def test_top_flow_magnitude_is_the_mean_of_the_largest_five_percent():
    rng = np.random.default_rng(0)
    flow = rng.normal(size=(40, 50, 2)).astype(np.float32)
    magnitudes = np.sort(np.sqrt((flow.astype(np.float64) ** 2).sum(-1)).ravel())[::-1]
    assert metrics.top_flow_magnitude(flow) == pytest.approx(magnitudes[:100].mean(), rel=1e-6)  # 5% of 2000


def test_motion_jitter_measures_shaking_and_ignores_steady_motion():
    steady = metrics.motion_flows(synthetic_videos.translated(9, step=(0, 3)), fps=8)
    assert metrics.motion_jitter(steady) < 0.1
    # back and forth by 3 pixels: the flow flips from -3 to +3, a change of 6 pixels each pair
    shaking = synthetic_videos.sliding(synthetic_videos.texture(), [(0, 3), (0, -3)] * 4)
    assert metrics.motion_jitter(metrics.motion_flows(shaking, fps=8)) == pytest.approx(6, rel=0.10)
    assert metrics.motion_jitter(steady[:1]) is None


def test_temporal_flickering_is_one_minus_the_mean_frame_difference():
    frames = np.stack([np.full((4, 4, 3), value, np.uint8) for value in (100, 151, 100)])
    assert metrics.temporal_flickering(frames) == pytest.approx(1 - 51 / 255)
    assert metrics.temporal_flickering(frames[:1]) == 1.0


def test_psnr_follows_its_formula():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    noisy = np.clip(image + rng.integers(-9, 10, image.shape), 0, 255).astype(np.uint8)
    mse = ((image.astype(float) - noisy) ** 2).mean()
    assert metrics.psnr(noisy, image) == pytest.approx(10 * math.log10(255**2 / mse))
    assert metrics.psnr(image, image) == math.inf


def independent_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. 2004 with scipy's Gaussian filter (radius 5 = an 11-pixel window), valid region only."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    scores = []
    for channel in range(x.shape[-1]):
        a, b = x[..., channel].astype(float), y[..., channel].astype(float)

        def blur(v):
            return gaussian_filter(v, sigma=1.5, truncate=5 / 1.5)

        mu_a, mu_b = blur(a), blur(b)
        var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
        index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
        scores.append(index[5:-5, 5:-5].mean())
    return float(np.mean(scores))


def test_ssim_matches_an_independent_implementation():
    image = synthetic_videos.texture(48, 64)
    noisy = np.clip(image + np.random.default_rng(2).normal(0, 12, image.shape), 0, 255).astype(np.uint8)
    assert metrics.ssim(noisy, image) == pytest.approx(independent_ssim(noisy, image), rel=1e-9)
    assert metrics.ssim(image, image) == pytest.approx(1.0)
    # two flat images: no variance, so SSIM is the luminance term (2ab + C1) / (a^2 + b^2 + C1)
    flat_a, flat_b = np.full((16, 16, 3), 100, np.uint8), np.full((16, 16, 3), 140, np.uint8)
    c1 = (0.01 * 255) ** 2
    assert metrics.ssim(flat_a, flat_b) == pytest.approx((2 * 100 * 140 + c1) / (100**2 + 140**2 + c1))
    with pytest.raises(ValueError, match="at least 11 x 11"):
        metrics.ssim(flat_a[:8], flat_b[:8])


def test_first_frame_fidelity_compares_against_the_image_resized_to_the_frame():
    frames = synthetic_videos.translated(3, step=(0, 2), size=(48, 64))
    exact = metrics.evaluate_frames(frames, fps=16, image=frames[0])
    assert (exact.psnr, exact.ssim) == (math.inf, pytest.approx(1.0))
    larger = cv2.resize(frames[0], (128, 96), interpolation=cv2.INTER_CUBIC)
    resized = metrics.evaluate_frames(frames, fps=16, image=larger)
    assert resized.psnr == pytest.approx(metrics.psnr(frames[0], metrics.resized_like(larger, frames[0])))
    assert 20 < resized.psnr < math.inf
    assert metrics.evaluate_frames(frames, fps=16).psnr is None


def test_bad_frames_are_refused():
    with pytest.raises(ValueError, match="uint8"):
        metrics.evaluate_frames(np.zeros((3, 8, 8, 3), np.float32), fps=8)
    with pytest.raises(ValueError, match="fps must be positive"):
        metrics.evaluate_frames(np.zeros((3, 8, 8, 3), np.uint8), fps=0)
