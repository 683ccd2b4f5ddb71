"""One seed for every generated-input test in a run: random unless ``GREENPOINTS_FUZZ_SEED``
names one, so CI tries new inputs on every run and any failure can be replayed exactly.

The seed is written into each failure's message (``replay with GREENPOINTS_FUZZ_SEED=...``)."""

from __future__ import annotations

import os
import random

SEED = int(os.environ.get("GREENPOINTS_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
REPLAY = f"replay with GREENPOINTS_FUZZ_SEED={SEED}"
