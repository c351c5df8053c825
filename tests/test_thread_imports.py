"""transformers' lazy imports from two threads at once (the window measures prompts while a run starts)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_measuring_prompts_and_loading_the_model_at_once_in_a_fresh_process_both_work(tiny_llama):
    # A fresh process: in the test process transformers is imported already and the race cannot happen.
    code = textwrap.dedent(f"""
        import threading
        from pathlib import Path
        from gpi_desktop.core.model import models
        from gpi_desktop.core.vocabulary.settings import RunSettings

        errors = []

        def measure():
            try:
                models._prompt_tokenizer(Path({str(tiny_llama)!r}), "tiny")
            except Exception as error:
                errors.append(repr(error))

        def load():
            try:
                models.load_model(RunSettings(model={str(tiny_llama)!r}, device="cpu"))
                import gpi_desktop.core.generation.engine  # noqa: F401
            except Exception as error:
                errors.append(repr(error))

        threads = [threading.Thread(target=f) for f in (measure, load, measure)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(errors)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
