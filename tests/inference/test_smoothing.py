"""Smoothing filters against reference formulas on synthetic signals."""

import numpy as np
import pytest

from aggpose_jax.inference import smoothing


def _alpha(cutoff):
    r = 2 * np.pi * cutoff
    return r / (r + 1)


def test_one_euro_step_response_follows_the_paper():
    # A unit step at t = 5 in one coordinate; the reference is the paper's recurrence, written
    # out here for scalars with mmpose's defaults (min_cutoff 0.004, beta 0.7, d_cutoff 1).
    x = np.where(np.arange(40) >= 5, 1.0, 0.0)
    got = smoothing.one_euro(x[:, None])[:, 0]
    ref, prev, dprev = [x[0]], x[0], 0.0
    for t in range(1, len(x)):
        d = _alpha(1.0) * (x[t] - prev) + (1 - _alpha(1.0)) * dprev
        a = _alpha(0.004 + 0.7 * abs(d))
        prev, dprev = a * x[t] + (1 - a) * prev, d
        ref.append(prev)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
    assert got[4] == 0.0 and 0.0 < got[5] < 1.0 and got[-1] > got[6]  # lags, then approaches
    # With beta = 0 the filter is an exponential average: 1 - (1 - a)^(t - 4) after the step.
    flat = smoothing.one_euro(x[:, None], beta=0.0)[:, 0]
    a = _alpha(0.004)
    np.testing.assert_allclose(flat[5:], 1 - (1 - a) ** np.arange(1, 36), atol=1e-12)


def test_savgol_reproduces_a_quadratic_exactly():
    t = np.arange(30, dtype=np.float64)
    signal = np.stack([0.5 * t**2 - 3 * t + 7, -0.1 * t**2 + 2], axis=-1)  # (T, 2)
    np.testing.assert_allclose(smoothing.savgol(signal), signal, atol=1e-9)
    noisy = signal + np.random.default_rng(0).normal(0, 1, signal.shape)
    assert np.abs(smoothing.savgol(noisy) - signal).mean() < np.abs(noisy - signal).mean()


def test_gaussian_is_the_normalised_kernel_inside():
    x = np.random.default_rng(1).normal(size=(40, 3))
    k = np.exp(-0.5 * (np.arange(-5, 6) / 4.0) ** 2)
    k /= k.sum()
    got = smoothing.gaussian(x)
    np.testing.assert_allclose(got[20], (k[:, None] * x[15:26]).sum(0), atol=1e-12)
    np.testing.assert_allclose(smoothing.gaussian(np.ones((20, 2))), 1.0, atol=1e-12)


@pytest.mark.parametrize("method", ["one_euro", "savgol", "gaussian"])
def test_sequences_keep_scores_and_gaps(method):
    rng = np.random.default_rng(2)
    seq = rng.uniform(0, 100, (25, 2, 4, 3))
    seq[10:13, 1] = np.nan  # slot 1 lost for three frames
    out = smoothing.smooth_sequence(seq, method)
    np.testing.assert_array_equal(out[..., 2], seq[..., 2])
    assert np.isnan(out[10:13, 1]).all() and np.isfinite(out[:, 0]).all()
    assert not np.allclose(out[:, 0, :, :2], seq[:, 0, :, :2])
    with pytest.raises(ValueError, match="unknown smoothing"):
        smoothing.smooth_sequence(seq, "kalman")
