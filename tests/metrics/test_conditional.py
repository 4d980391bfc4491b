"""Per-class metrics of a conditional generator: intra-class FID against its closed form, class accuracy."""

from __future__ import annotations

import pytest
import torch

from gan_ray.metrics.conditional import class_accuracy, intra_class_fid


def _features(seed: int, labels: torch.Tensor, shift: dict[int, float]) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(labels.shape[0], 3, generator=gen, dtype=torch.float64) + labels[:, None].double() * 5
    for c, s in shift.items():
        x[labels == c] += s
    return x


def test_intra_class_fid_sees_a_class_the_pooled_distance_hides():
    labels = torch.arange(3).repeat_interleave(20_000)
    real = _features(0, labels, {})
    # class 1's samples drawn as if asked for class 2 and vice versa: the pooled set is the same
    swapped = labels.clone()
    swapped[labels == 1], swapped[labels == 2] = 2, 1
    scores = intra_class_fid(real, labels, _features(1, labels, {}), swapped)
    assert scores["intra_fid_0"] < 0.01
    # the mean moved by 5 in each of 3 dimensions: |d mu|^2 = 75
    assert scores["intra_fid_1"] == pytest.approx(75, rel=0.01) and scores["intra_fid_2"] == pytest.approx(
        75, rel=0.01
    )
    assert scores["intra_fid"] == pytest.approx((scores["intra_fid_0"] + 150) / 3, rel=0.01)
    with pytest.raises(ValueError, match="at least 2 real and 2 generated"):
        intra_class_fid(real, labels, real[:1], labels[:1])


def test_class_accuracy_counts_the_samples_labelled_as_asked():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [0.0, 5.0]])
    assert class_accuracy(logits, torch.tensor([0, 1, 1, 1])) == 0.75
    with pytest.raises(ValueError, match="expected logits for each asked label"):
        class_accuracy(logits, torch.tensor([0]))
