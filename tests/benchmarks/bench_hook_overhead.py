"""Where the ALG hook's per-call time goes: a breakdown on a small Wan transformer.

Times (median of many calls, synchronized) a direct call of the transformer; the call through the ALG hook at
strength 0 with the engine as shipped; the same with `GuidedRun.__call__` undecorated (without
`torch.compiler.disable`); and an empty function wrapped by `torch.compiler.disable(recursive=False)`.

Usage: `python tests/benchmarks/bench_hook_overhead.py --out DIR`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import alg_guidance as alg
from alg_guidance.integrations.diffusers import hook as hook_module
from tests.benchmarks.bench_gpu import small_transformer_call, timed

ZERO = {"preset": "wan2.1", "schedule": {"kind": "constant", "value": 0.0}}


def main() -> None:
    """Write hook_overhead.json to --out."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    pipe, call = small_transformer_call(device)

    def median(fn) -> float:
        fn()
        return statistics.median(timed(fn, 500, device))

    results = {"torch": torch.__version__, "direct_ms": median(call)}
    with alg.enable(pipe, ZERO):
        results["hooked_ms"] = median(call)
    decorated = hook_module.GuidedRun.__call__
    hook_module.GuidedRun.__call__ = getattr(decorated, "__wrapped__", decorated)
    try:
        with alg.enable(pipe, ZERO):
            results["hooked_undecorated_ms"] = median(call)
    finally:
        hook_module.GuidedRun.__call__ = decorated
    empty = torch.compiler.disable(lambda: None, recursive=False)
    start = time.perf_counter()
    for _ in range(10000):
        empty()
    results["compiler_disable_wrapper_us"] = (time.perf_counter() - start) / 10000 * 1e6
    results["hook_overhead_ms"] = results["hooked_ms"] - results["direct_ms"]
    results["hook_overhead_undecorated_ms"] = results["hooked_undecorated_ms"] - results["direct_ms"]
    print(json.dumps(results, indent=1))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hook_overhead.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
