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


def test_after_its_code_is_imported_a_weight_load_imports_no_more_of_transformers(tiny_llama):
    # What lets the weights load outside TRANSFORMERS_LOCK: nothing the load does can race a lazy import.
    code = textwrap.dedent(f"""
        import sys
        import transformers
        from gpi_desktop.core.model import models
        from gpi_desktop.core.vocabulary.settings import RunSettings

        real = transformers.AutoModelForCausalLM.from_pretrained
        imported = []

        def watched(folder, **kwargs):
            before = set(sys.modules)
            model = real(folder, **kwargs)
            imported.extend(sorted(m for m in set(sys.modules) - before if m.startswith("transformers")))
            return model

        transformers.AutoModelForCausalLM.from_pretrained = watched
        models.load_model(RunSettings(model={str(tiny_llama)!r}, device="cpu"))
        print(imported)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_measuring_prompts_finishes_while_a_slow_weight_load_holds_on(tiny_llama, monkeypatch):
    import threading

    import transformers

    from gpi_desktop.core.model import models
    from gpi_desktop.core.vocabulary.settings import RunSettings

    loading, release = threading.Event(), threading.Event()

    class LoadReleased(Exception):
        pass

    def slow_load(folder, **kwargs):
        loading.set()
        release.wait(120)
        raise LoadReleased()

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", slow_load)
    ended = []
    loader = threading.Thread(
        target=lambda: ended.append(_outcome(models.load_model, RunSettings(model=str(tiny_llama), device="cpu")))
    )
    measured = []
    measurer = threading.Thread(target=lambda: measured.append(models._prompt_tokenizer(tiny_llama, "tiny")))
    loader.start()
    try:
        assert loading.wait(120), "the load never reached its weights"
        measurer.start()
        measurer.join(60)
        assert measured and measured[0].tokenizer is not None, "measuring waited for the weight load"
        assert not release.is_set() and loader.is_alive()
    finally:
        release.set()
        loader.join(120)
        if measurer.is_alive():
            measurer.join(120)
    assert ended and isinstance(ended[0], LoadReleased)


def _outcome(fn, *args):
    try:
        return fn(*args)
    except Exception as error:
        return error
