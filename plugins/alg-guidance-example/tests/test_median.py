import pytest
import torch

from alg_guidance.testing import FILTER_CHECKS
from alg_guidance_example import Median


@pytest.mark.parametrize("check", FILTER_CHECKS, ids=lambda check: check.__name__)
def test_median_passes_the_filter_contract(check):
    check(Median(radius=2))


def test_median_keeps_a_step_edge_that_a_blur_smears():
    edge = torch.zeros(1, 1, 16, 16)
    edge[..., 8:] = 1.0
    assert torch.equal(Median(radius=2)(edge, 1.0), edge)


def test_median_removes_isolated_speckles():
    image = torch.zeros(1, 1, 16, 16)
    image[0, 0, 5, 5] = image[0, 0, 10, 3] = 9.0
    assert torch.equal(Median(radius=1)(image, 1.0), torch.zeros_like(image))


def test_median_window_matches_torch_median_of_the_neighbourhood():
    image = torch.randn(1, 1, 9, 11, dtype=torch.float64)
    filtered = Median(radius=1)(image, 1.0)
    row, column = 4, 6
    expected = image[0, 0, row - 1 : row + 2, column - 1 : column + 2].flatten().median()
    assert filtered[0, 0, row, column] == expected
