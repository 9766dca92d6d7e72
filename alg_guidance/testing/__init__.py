"""Contract checks for plugin authors: the checks every builtin filter, schedule and adapter passes.

- [filters and schedules][alg_guidance.testing.plugins]: `check_filter`, `check_schedule`, and one function per
  promise in `FILTER_CHECKS` and `SCHEDULE_CHECKS`;
- [adapters][alg_guidance.testing.adapters]: `check_adapter`, and one function per promise in `ADAPTER_CHECKS`,
  run on a tiny pipeline of the adapter's family (they need diffusers).
"""

from __future__ import annotations

from .adapters import ADAPTER_CHECKS, check_adapter
from .plugins import FILTER_CHECKS, SCHEDULE_CHECKS, check_filter, check_schedule, high_frequency_energy

__all__ = [
    "ADAPTER_CHECKS",
    "FILTER_CHECKS",
    "SCHEDULE_CHECKS",
    "check_adapter",
    "check_filter",
    "check_schedule",
    "high_frequency_energy",
]
