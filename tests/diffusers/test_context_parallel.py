"""ALG under diffusers' context parallelism: two CPU processes on the gloo backend, Ulysses attention.

The worker (`tests.support.context_parallel`) samples each tiny pipeline without parallelism and with it, ALG
enabled before and after `enable_parallelism`, and records what every rank saw. Plain CFG under the same
parallelism sets the tolerance: the ALG runs may differ from single-process ALG by no more than it does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _run_worker(family: str, out: Path) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "tests.support.context_parallel", "--family", family, str(out)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return [torch.load(out / f"rank{rank}.pt", weights_only=False) for rank in (0, 1)]


def _max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


@pytest.fixture(scope="module")
def wan(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    return _run_worker("wan2.1", tmp_path_factory.mktemp("cp-wan"))


@pytest.fixture(scope="module")
def ltx(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    return _run_worker("ltx-video", tmp_path_factory.mktemp("cp-ltx"))


@pytest.mark.parametrize("order", ["after", "before"])
def test_alg_under_context_parallelism_equals_single_process_alg(wan: list[dict], order: str) -> None:
    for rank in wan:
        tolerance = _max_difference(rank["cp_cfg"], rank["single_cfg"])  # parallelism's own rounding
        assert _max_difference(rank["single_alg"], rank["single_cfg"]) > 10 * tolerance + 1e-5  # ALG shows
        assert _max_difference(rank[f"cp_alg_{order}"], rank["single_alg"]) <= 2 * tolerance + 1e-6
    assert torch.equal(wan[0][f"cp_alg_{order}"], wan[1][f"cp_alg_{order}"])


@pytest.mark.parametrize("order", ["after", "before"])
def test_every_rank_filters_the_whole_condition_and_decides_the_same_strengths(wan: list[dict], order: str) -> None:
    single, seen = wan[0]["single_alg_seen"], [rank[f"cp_alg_{order}_seen"] for rank in wan]
    assert seen[0]["strengths"] == seen[1]["strengths"] == single["strengths"]
    assert seen[0]["filtered"] == seen[1]["filtered"] == single["filtered"] == [((1, 20, 3, 8, 8), 1.0)]
    # the model itself ran on shards: half of the 48 tokens on each rank
    assert {shape[1] for shape in single["block_tokens"]} == {48}
    assert {shape[1] for rank in seen for shape in rank["block_tokens"]} == {24}


def test_alg_hook_stays_outside_the_context_parallel_split_in_either_order(wan: list[dict]) -> None:
    for rank in wan:
        assert rank["hooks_after"][-1] == rank["hooks_before"][-1] == "alg_guidance"
        assert rank["hooks_disabled"] == ["cp_input---"]  # disable leaves diffusers' hooks alone
        assert torch.equal(rank["cp_cfg_disabled"], rank["cp_cfg"])


@pytest.mark.parametrize("order", ["after", "before"])
def test_ltx_gets_the_whole_condition_filtered_though_its_plan_splits_tokens_at_the_input(ltx: list[dict], order: str):
    """LTX-Video's plan splits the token sequence at the model's own input: ALG must sit outside that split.

    Inside it, ALG enabled first would low-pass each rank's shard as if it began with frame 0 (rank 1's shard is frame
    1). diffusers 0.42.1's Ulysses attention then fails on LTX's attention mask (on plain CFG too), so what is
    compared is the tokens of the first call (its three ALG branches) where they enter the model, gathered over the
    ranks, against one process.
    """
    single = ltx[0]["single_alg_seen"]
    assert "doesn't match the broadcast shape" in ltx[0]["cp_cfg"]
    seen = [rank[f"cp_alg_{order}_seen"] for rank in ltx]
    assert single["tokens_in"][0].shape == (3, 128, 8)
    assert torch.equal(torch.cat([seen[0]["tokens_in"][0], seen[1]["tokens_in"][0]], dim=1), single["tokens_in"][0])
    assert seen[0]["filtered"] == seen[1]["filtered"] == single["filtered"]
    assert seen[0]["strengths"] == seen[1]["strengths"]
    assert set(seen[0]["strengths"]) <= set(single["strengths"])
