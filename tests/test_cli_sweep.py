"""`alg-guidance sweep`: jobs spread over two torchrun processes (gloo, CPU), killed midway, resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alg_guidance.cli.app import app
from alg_guidance.cli.sweep import SUMMARY
from tests.support import tiny_model_dir, tiny_wan

ROOT = Path(__file__).resolve().parents[1]
JOBS = 6


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir.save_wan21(tmp_path_factory.mktemp("tiny-wan2.1"))


def _jobs_file(folder: Path) -> Path:
    for seed in (0, 1):
        tiny_wan.image(seed).save(folder / f"image{seed}.png")
    spec = {
        "defaults": {"prompt": "a boat", "steps": 2, "height": 32, "width": 32, "frames": 5, "fps": 8},
        "jobs": [{"name": "baseline", "image": "image0.png", "alg": False}],
        "grid": {"image": ["image0.png", "image1.png"], "seed": [0, 1], "preset": ["wan2.1"]},
    }
    spec["jobs"].append(
        {"name": "custom", "image": "image1.png", "config": {"filter": {"kind": "gaussian", "sigma": 2.0}}}
    )
    path = folder / "jobs.json"
    path.write_text(json.dumps(spec))
    return path


def _sweep(model: Path, jobs: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "alg_guidance.cli", "sweep", str(model), str(jobs), "--out", str(out), "--device", "cpu"]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )


def test_sweep_over_two_processes_resumes_after_a_kill_without_redoing_finished_jobs(model, tmp_path):
    jobs, out = _jobs_file(tmp_path), tmp_path / "out"
    started = time.monotonic()
    first = _sweep(model, jobs, out)
    while not list(out.glob("*.json")):  # kill the whole launch as soon as the first job is done
        assert first.poll() is None, first.stdout.read()[-3000:]
        assert time.monotonic() - started < 240
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    done = {path.name: path.stat().st_mtime_ns for path in out.iterdir() if not path.name.startswith(".")}
    finished = {name for name in done if name.endswith(".json")}
    assert 0 < len(finished) < JOBS, done  # killed in the middle
    assert all(name.replace(".json", ".mp4") in done for name in finished)  # the video lands before its metrics

    second = _sweep(model, jobs, out)
    log = second.communicate(timeout=300)[0]
    assert second.returncode == 0, log[-3000:]
    for name, mtime in done.items():
        if name.replace(".mp4", ".json") in finished:  # finished jobs are not redone
            assert (out / name).stat().st_mtime_ns == mtime, name
    names = ["baseline", "custom", *[f"job-{index:04d}" for index in range(2, JOBS)]]
    expected = [*(f"{name}.mp4" for name in names), *(f"{name}.json" for name in names), *SUMMARY]
    assert sorted(path.name for path in out.iterdir()) == sorted(expected)  # no temporary file left
    summary = json.loads((out / "summary.json").read_text())["videos"]
    assert [video["name"] for video in summary] == names
    record = json.loads((out / "job-0002.json").read_text())
    assert record["job"]["seed"] == 0 and record["config"]["filter"]["factor"] == 0.4  # the wan2.1 preset
    assert json.loads((out / "baseline.json").read_text())["config"] is None


def test_summarize_alone_and_bad_jobs_files_exit_2(model, tmp_path):
    jobs, out = _jobs_file(tmp_path), tmp_path / "out"
    runner = CliRunner()
    result = runner.invoke(app, ["sweep", str(model), str(jobs), "--out", str(out), "--summarize"])
    assert result.exit_code == 2 and "run the sweep first" in result.output
    bad = tmp_path / "bad.yaml"
    for text, message in [
        ("jobs: [{image: missing.png}]", "missing.png, which is not a file"),
        ("jobs: [{image: image0.png, sed: 1}]", "sed"),
        ("jobs: [{image: image0.png, name: a}, {image: image1.png, name: a}]", "repeated: a"),
        ("grid: {seed: [0]}", "image"),
        ("{}", "has no jobs"),
    ]:
        bad.write_text(text)
        result = runner.invoke(app, ["sweep", str(model), str(bad), "--out", str(out)])
        assert result.exit_code == 2, (text, result.output)
        assert message in result.output, (text, result.output)
