"""`python -m alg_guidance.cli`, the same as the `alg-guidance` command."""

from __future__ import annotations

from . import main

main()
