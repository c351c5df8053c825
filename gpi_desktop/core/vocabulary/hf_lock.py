"""One lock for transformers' imports and loads, across threads.

transformers 5.x resolves its names lazily (its `_LazyModule.__getattr__` imports
submodules on first use). Two threads doing that at once can see a half-made module
and fail with "cannot import name 'AutoTokenizer' from 'transformers'": in a fresh
process, the window's prompt measuring (step 3) and a run starting together did, and
so did the installed app's self-test. Code that may run beside another thread imports
transformers' names and loads tokenizers and models while holding this lock.
"""

from __future__ import annotations

import threading

TRANSFORMERS_LOCK = threading.RLock()  # re-entrant: a locked load may import more of transformers itself
