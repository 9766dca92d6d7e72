"""The contract of filters and schedules: the checks every builtin passes, for plugin authors to reuse.

Run them all at once:

```python
from alg_guidance.testing import check_filter

def test_median_filter():
    check_filter(Median(radius=2))
```

or one test per check, so a failure names the broken promise:

```python
import pytest
from alg_guidance.testing import FILTER_CHECKS

@pytest.mark.parametrize("check", FILTER_CHECKS, ids=lambda check: check.__name__)
def test_median_filter(check):
    check(Median(radius=2))
```

`check_schedule` and `SCHEDULE_CHECKS` do the same for a schedule. Each check raises `AssertionError` with a
message that says which promise failed; every filter check first fails if the filter changed its input in place.
"""

from __future__ import annotations

import dataclasses
import math
import unittest
from collections.abc import Callable
from itertools import pairwise

import pydantic
import torch

from ..errors import ALGError
from ..filters import Filter
from ..schedules import Schedule, StepState

SHAPES = {
    "4-D [B, C, H, W]": (2, 3, 24, 32),
    "5-D [B, C, F, H, W]": (1, 4, 3, 24, 32),
    "frame-major [B, F, C, H, W]": (1, 3, 4, 24, 32),
    "odd sizes": (1, 2, 17, 23),
}
STRENGTHS = (0.25, 0.5, 0.75, 1.0)


def _image(shape: tuple[int, ...], dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype)


def high_frequency_energy(x: torch.Tensor) -> float:
    """The mean energy of the spectrum above half the Nyquist frequency, per `(H, W)` plane."""
    spectrum = torch.fft.rfft2(x.double()).abs().square()
    rows = torch.fft.fftfreq(x.shape[-2], dtype=torch.float64).abs().unsqueeze(-1)
    columns = torch.fft.rfftfreq(x.shape[-1], dtype=torch.float64)
    high = torch.maximum(rows, columns) > 0.25
    return float(spectrum[..., high].mean())


def _filtered(filter_: Filter, x: torch.Tensor, strength: float) -> torch.Tensor:
    """`filter_(x, strength)`, failing first if the call changed `x` in place."""
    before = x.clone()
    out = filter_(x, strength)
    assert torch.equal(x, before), (
        f"{filter_.kind}: filtering changed its input in place (a {tuple(x.shape)} tensor at strength {strength}); "
        "filter_planes must return a new tensor and leave its planes as they are"
    )
    return out


def check_identity_at_zero(filter_: Filter) -> None:
    """Strength 0 returns the input object itself, for any rank."""
    for shape in SHAPES.values():
        x = _image(shape)
        assert _filtered(filter_, x, 0.0) is x, f"{filter_.kind}: strength 0 must return the input itself"


def check_shapes(filter_: Filter) -> None:
    """Output shape equals input shape for 4-D, 5-D, frame-major and odd-sized tensors."""
    for name, shape in SHAPES.items():
        for strength in STRENGTHS:
            out = _filtered(filter_, _image(shape), strength)
            assert out.shape == shape, f"{filter_.kind}: {name} input {shape} gave {tuple(out.shape)}"
            assert torch.isfinite(out).all(), f"{filter_.kind}: non-finite output for {name} at {strength}"


def check_per_plane(filter_: Filter) -> None:
    """Each (H, W) plane is filtered on its own: a 5-D tensor gives the same planes as one plane at a time."""
    x = _image(SHAPES["5-D [B, C, F, H, W]"], dtype=torch.float64)
    whole = _filtered(filter_, x, 1.0)
    for index in [(0, 0, 0), (0, 3, 2), (0, 1, 1)]:
        alone = _filtered(filter_, x[index].clone(), 1.0)
        assert torch.allclose(whole[index], alone, atol=1e-10), (
            f"{filter_.kind}: plane {index} differs when filtered with its neighbours"
        )


def check_dtypes(filter_: Filter) -> None:
    """float32 and float64 are kept; float16 and bfloat16 are kept and computed in float32."""
    shape = SHAPES["4-D [B, C, H, W]"]
    reference = _filtered(filter_, _image(shape), 1.0)
    for dtype, tolerance in [(torch.float64, 1e-5), (torch.float16, 1e-2), (torch.bfloat16, 5e-2)]:
        out = _filtered(filter_, _image(shape, dtype), 1.0)
        assert out.dtype == dtype, f"{filter_.kind}: {dtype} input came back as {out.dtype}"
        error = (out.float() - reference).abs().max().item()
        scale = reference.abs().max().item()
        assert error <= tolerance * scale * 4, f"{filter_.kind}: {dtype} result is off by {error:.3g}"


def check_device(filter_: Filter) -> None:
    """The output lives on the input's device: the CPU, then CUDA (the check skips after the CPU without a GPU)."""
    for device in ("cpu", "cuda"):
        if device == "cuda":
            _require_cuda()
        out = _filtered(filter_, _image(SHAPES["4-D [B, C, H, W]"]).to(device), 1.0)
        assert out.device.type == device, f"{filter_.kind}: input on {device} came back on {out.device}"


def _require_cuda() -> None:
    """Skip the running check (pytest and unittest both honour `unittest.SkipTest`) without a CUDA device."""
    if not torch.cuda.is_available():
        raise unittest.SkipTest("no CUDA device: the GPU part of this check did not run")


def check_no_sync(filter_: Filter) -> None:
    """On CUDA, filtering never waits on the device (skips without a GPU)."""
    _require_cuda()
    x = _image(SHAPES["5-D [B, C, F, H, W]"]).cuda()
    filter_(x, 1.0)  # warm up lazy initialisation, which may synchronize once
    torch.cuda.set_sync_debug_mode("error")
    try:
        filter_(x, 0.5)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def check_non_contiguous(filter_: Filter) -> None:
    """Non-contiguous input (a channel slice, a transposed view) gives the result of its contiguous copy."""
    base = _image((2, 36, 3, 24, 32), dtype=torch.float64)
    for view in (base[:, 16:36], base.transpose(-1, -2), base[..., ::2, :]):
        assert not view.is_contiguous()
        expected = _filtered(filter_, view.contiguous(), 1.0)
        assert torch.allclose(_filtered(filter_, view, 1.0), expected, atol=1e-10), (
            f"{filter_.kind}: a non-contiguous view of shape {tuple(view.shape)} filters differently"
        )


def check_low_pass(filter_: Filter) -> None:
    """A constant plane stays constant, and high frequencies fall as strength grows."""
    constant = torch.full((1, 1, 24, 32), 0.7, dtype=torch.float64)
    assert torch.allclose(_filtered(filter_, constant, 1.0), constant, atol=1e-6), f"{filter_.kind}: changes a constant"
    noise = _image((4, 1, 48, 64), dtype=torch.float64)
    energies = [high_frequency_energy(_filtered(filter_, noise, strength)) for strength in (0.0, *STRENGTHS)]
    for (weaker, stronger), strength in zip(pairwise(energies), STRENGTHS, strict=True):
        assert stronger <= weaker * (1 + 1e-6), (
            f"{filter_.kind}: high-frequency energy rose from {weaker:.4g} to {stronger:.4g} at strength {strength}"
        )
    assert energies[-1] < 0.9 * energies[0], f"{filter_.kind}: strength 1 removes almost no high frequencies"


def check_strength_validation(filter_: Filter) -> None:
    """Strengths outside [0, 1], NaN, tensors and non-numbers are rejected before any work."""
    x = _image(SHAPES["4-D [B, C, H, W]"])
    for bad, error in [(-0.1, ValueError), (1.5, ValueError), (math.nan, ValueError)]:
        _expect_error(lambda bad=bad: filter_(x, bad), error, f"{filter_.kind}: accepted strength {bad}")
    for bad in (torch.tensor(0.5), "0.5", None, True):
        _expect_error(lambda bad=bad: filter_(x, bad), TypeError, f"{filter_.kind}: accepted strength {bad!r}")
    for bad in (torch.ones(2, 3, 8, 8, dtype=torch.int64), torch.ones(8)):
        _expect_error(
            lambda bad=bad: filter_(bad, 1.0),
            (TypeError, ValueError),
            f"{filter_.kind}: accepted {bad.dtype}",
        )


def check_model(plugin: Filter | Schedule) -> None:
    """Frozen, rejects unknown fields, and round-trips through `model_dump` and JSON."""
    cls = type(plugin)
    assert cls.model_validate(plugin.model_dump()) == plugin, f"{plugin.kind}: does not round-trip through a dict"
    assert cls.model_validate_json(plugin.model_dump_json()) == plugin, f"{plugin.kind}: does not round-trip JSON"
    _expect_error(
        lambda: cls.model_validate({**plugin.model_dump(), "no_such_field": 1}),
        pydantic.ValidationError,
        f"{plugin.kind}: accepts unknown fields",
    )
    field = next(iter(cls.model_fields))
    _expect_error(
        lambda: setattr(plugin, field, getattr(plugin, field)),
        pydantic.ValidationError,
        f"{plugin.kind}: not frozen",
    )


def _states() -> list[StepState]:
    states = []
    for num_steps in (1, 2, 7, 50, 1000):
        for step in sorted({0, 1, num_steps // 3, num_steps // 2, num_steps - 1}):
            if step < num_steps:
                noise = 1.0 - step / num_steps
                states.append(StepState.from_step(step, num_steps, noise_level=noise))
    return states


def check_schedule_range(schedule: Schedule) -> None:
    """Every value is a Python float in [0, 1], the same for the same state."""
    for state in _states():
        value = schedule(state)
        assert isinstance(value, float), f"{schedule.kind}: returned {type(value).__name__} at {state}"
        assert 0.0 <= value <= 1.0, f"{schedule.kind}: returned {value} at {state}"
        assert schedule(state) == value, f"{schedule.kind}: differs between two calls at {state}"


def _reads_noise_level(schedule: Schedule, state: StepState) -> bool:
    """Whether `schedule(state)` reads `state.noise_level`."""
    reads = []

    class Watched(StepState):
        def __getattribute__(self, name: str) -> object:
            if name == "noise_level":
                reads.append(name)
            return super().__getattribute__(name)

    watched = Watched(**dataclasses.asdict(state))
    reads.clear()  # the state's own validation read it
    schedule(watched)
    return bool(reads)


def check_schedule_noise_level(schedule: Schedule) -> None:
    """Only a schedule that declares `uses_noise_level = True` reads the noise level; it refuses clearly without one.

    The diffusers integration computes the noise level only for the schedules that declare it, while k-diffusion
    and ComfyUI samplers always report it: an undeclared read sees `None` under the first and a value under the
    others.
    """
    if schedule.uses_noise_level:
        _expect_error(
            lambda: schedule(StepState.from_step(0, 50)),
            (ALGError, ValueError),
            f"{schedule.kind}: needs a noise level but ran without one",
        )
        return
    for state in _states():
        assert not _reads_noise_level(schedule, state), (
            f"{schedule.kind}: reads state.noise_level but does not declare it; "
            "set the class variable `uses_noise_level = True`"
        )
        for noise_level in (None, 0.0, 0.3, 1.0):
            assert schedule(dataclasses.replace(state, noise_level=noise_level)) == schedule(state), (
                f"{schedule.kind}: its value depends on the noise level, which it does not declare; "
                "set the class variable `uses_noise_level = True`"
            )


def _expect_error(action: Callable[[], object], error: type | tuple[type, ...], message: str) -> None:
    try:
        action()
    except error:
        return
    raise AssertionError(message)


FILTER_CHECKS: tuple[Callable[[Filter], None], ...] = (
    check_identity_at_zero,
    check_shapes,
    check_per_plane,
    check_dtypes,
    check_device,
    check_no_sync,
    check_non_contiguous,
    check_low_pass,
    check_strength_validation,
    check_model,
)
"""Every filter check, in order; each takes the filter. `check_filter` runs them all."""

SCHEDULE_CHECKS: tuple[Callable[[Schedule], None], ...] = (
    check_schedule_range,
    check_schedule_noise_level,
    check_model,
)
"""Every schedule check, in order; each takes the schedule. `check_schedule` runs them all."""


def check_filter(filter_: Filter) -> None:
    """Run every filter check on `filter_`; the device checks skip without a GPU."""
    _run_all(FILTER_CHECKS, filter_)


def check_schedule(schedule: Schedule) -> None:
    """Run every schedule check on `schedule`."""
    _run_all(SCHEDULE_CHECKS, schedule)


def _run_all(checks: tuple[Callable, ...], *arguments: object) -> None:
    """Run `checks` in order, then skip if any of them skipped (so a skipped device check is not a pass)."""
    skipped = []
    for check in checks:
        try:
            check(*arguments)
        except unittest.SkipTest as skip:
            skipped.append(f"{check.__name__}: {skip}")
    if skipped:
        raise unittest.SkipTest("; ".join(skipped))
