"""One lock for transformers' lazy imports, across threads.

transformers 5.x resolves its names lazily (its `_LazyModule.__getattr__` imports
submodules on first use). Two threads doing that at once can see a half-made module
and fail with "cannot import name 'AutoTokenizer' from 'transformers'": in a fresh
process, the window's prompt measuring (step 3) and a run starting together did, and
so did the installed app's self-test. Code that may run beside another thread imports
transformers' names, and loads tokenizers (quick, and they import their classes), while
holding this lock. A model's weights load outside it: `models.load_model` first imports,
under the lock, all of transformers the load uses, so that measuring the prompts in
step 3 never waits for a load.
"""

from __future__ import annotations

import threading

TRANSFORMERS_LOCK = threading.RLock()  # re-entrant: a locked load may import more of transformers itself
