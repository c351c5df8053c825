"""Generation options checked against the model's own generation config and transformers' validation, before a load.

`core/vocabulary/options.py` refuses what the contract forbids (sampling, other outputs) from the names
alone. What is left can still be wrong for this model and this version of transformers: a typo
(`unknown_kw`, which generate() rejects as an unused model input) or a value transformers refuses
(`repetition_penalty=-1`). Both used to surface only after the model had loaded, as a traceback. Here
they are found from the model's config files alone (config.json, generation_config.json; no weights):

- each option is applied to the model's generation config, which `GenerationConfig.validate(strict=True)`
  then checks, as generate() does with the model's defaults and the caller's values;
- an option that is no generation setting must be an input of the model class (the signature of its
  `prepare_inputs_for_generation` and `forward`, as generate()'s model-input check reads them; the class
  comes from config.json through transformers' auto mapping, without weights);
- the logits processors that the batched engine and generate() build from the options are built once,
  so that their own checks of each value run now.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from gpi_desktop.core.generation.processors import logits_processors
from gpi_desktop.core.vocabulary.errors import SettingsError
from gpi_desktop.core.vocabulary.hf_lock import TRANSFORMERS_LOCK

if TYPE_CHECKING:
    from transformers import GenerationConfig, PretrainedConfig

    from gpi_desktop.core.vocabulary.settings import RunSettings

log = logging.getLogger(__name__)

# What the options people use take, in words; for any other option transformers' own reason is given.
_ACCEPTS = {
    "repetition_penalty": "a number above 0 (1.0 is no penalty, above 1 discourages repeating)",
    "no_repeat_ngram_size": "a whole number of at least 1 (0 turns it off)",
    "min_new_tokens": "a whole number of at least 0",
    "min_length": "a whole number of at least 0",
    "bad_words_ids": "a list of lists of token ids, for example [[42], [7, 8]]",
    "suppress_tokens": "a list of token ids, for example [42, 43]",
    "begin_suppress_tokens": "a list of token ids, for example [42, 43]",
    "num_beams": "a whole number of at least 1",
    "length_penalty": "a number, and only together with num_beams of 2 or more",
    "early_stopping": 'true, false or "never", and only together with num_beams of 2 or more',
}


@dataclass(frozen=True)
class _ModelGeneration:
    """What generate() starts from for this model, read from its config files."""

    config: PretrainedConfig
    defaults: GenerationConfig  # the model's generation_config.json, or what transformers derives from config.json
    # What AutoModelForCausalLM would load (None: not a causal language model); its methods are read by name.
    model_class: type[Any] | None


def check_generation_options(settings: RunSettings, *, token: str | None = None) -> None:
    """Refuse a run's generation option that its model would not accept, reading only the model's config files."""
    from gpi_desktop.core.model.models import config_files_folder

    if settings.generation_options:
        check_options_for_model(config_files_folder(settings, token=token), dict(settings.generation_options))


def check_options_for_model(folder: Path, options: dict[str, Any]) -> None:
    """Refuse, in one sentence naming it, the first option this model's generation would not accept.

    `folder` holds the model's config.json (and generation_config.json, where it has one).
    """
    if not options:
        return
    model = _model_generation(folder)
    generation, unused = _attempt(lambda: _applied(model.defaults, options), options)
    for key in unused:  # generate() hands what is no generation setting to the model
        _check_model_input(key, model.model_class)
    for key, value in options.items():  # each value alone, so that the refusal names it
        if key not in unused:
            _attempt(partial(_check_alone, key, value, model), options, key)
    # Then all of them, as generate() will see them: a beam-search option needs num_beams, another option may clash.
    _attempt(lambda: generation.validate(strict=True, user_set_attributes=set(options) - set(unused)), options)
    _attempt(lambda: _build_processors(generation, options, model.config), options)


def _check_alone(key: str, value: Any, model: _ModelGeneration) -> None:
    _build_processors(_applied(model.defaults, {key: value})[0], {key: value}, model.config)


def _attempt(check: Callable[[], Any], options: dict[str, Any], key: str | None = None) -> Any:
    """What `check` returns; what transformers raises in it, as one sentence naming the option (`key`, or the one named)."""
    try:
        return check()
    except (ValueError, TypeError) as error:
        reason = _reason(error)
        named = [name for name in options if name in str(error)]
        key = key or (named[0] if len(named) == 1 else None)
        if key is None:
            raise SettingsError(
                f"The generation options {', '.join(options)} cannot be used together ({reason}): "
                "change or remove one of them."
            ) from None
        raise SettingsError(_refusal(key, options[key], reason)) from None


def _model_generation(folder: Path) -> _ModelGeneration:
    """The model's config, its generation defaults and its class, read from the config files only."""
    with TRANSFORMERS_LOCK:
        from transformers import AutoConfig, GenerationConfig
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

        config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
        if (folder / "generation_config.json").is_file():
            defaults = GenerationConfig.from_pretrained(folder)
        else:
            defaults = GenerationConfig.from_model_config(config)
        try:
            found = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
        except KeyError:  # the load refuses such a model in its own words; no class means no model inputs here
            found = None
    # The mapping gives a pair for a few architectures (their two model classes): generate() runs the first.
    model_class = next((c for c in found if c is not None), None) if isinstance(found, tuple) else found
    return _ModelGeneration(config, defaults, model_class)


def _applied(defaults: GenerationConfig, options: dict[str, Any]) -> tuple[GenerationConfig, dict[str, Any]]:
    """The model's generation config with the options applied as generate() applies them, and the options it left."""
    generation = copy.deepcopy(defaults)
    # update() warns about what validate(strict=True) below refuses in one sentence: its warning would only add noise.
    quiet = logging.getLogger("transformers.generation.configuration_utils")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        unused: dict[str, Any] = generation.update(**options)
    finally:
        quiet.setLevel(level)
    return generation, unused


def _check_model_input(key: str, model_class: type[Any] | None) -> None:
    """An option generate() does not take as a setting goes to the model: refused where the model has no such input."""
    with TRANSFORMERS_LOCK:
        from transformers import GenerationConfig
        from transformers.utils.generic import TransformersKwargs

    inputs = set(TransformersKwargs.__optional_keys__)
    if model_class is not None:
        inputs |= set(inspect.signature(model_class.prepare_inputs_for_generation).parameters)
        if inputs & {"kwargs", "model_kwargs"}:
            inputs |= set(inspect.signature(model_class.forward).parameters)
    inputs -= {"self", "kwargs", "model_kwargs"}
    if key in inputs:
        return
    known = [*GenerationConfig().to_dict(), *_ACCEPTS]
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    name = model_class.__name__ if model_class is not None else "the model"
    raise SettingsError(
        f"The generation option '{key}' is neither a transformers generation setting nor an input of {name}{hint}: "
        "remove it, or write the name of a generation setting such as repetition_penalty or no_repeat_ngram_size."
    )


def _build_processors(generation: GenerationConfig, options: dict[str, Any], config: PretrainedConfig) -> None:
    """Build what the engine and generate() would build from these options, so that their checks run now."""
    eos = generation.eos_token_id
    eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
    logits_processors({**_engine_defaults(generation), **options}, eos_ids, 1)
    with TRANSFORMERS_LOCK:
        import torch
        from transformers.generation.utils import GenerationMixin

    class _ConfigOnly(GenerationMixin):
        """generate()'s processor building reads only the model's config; no weights are needed."""

        def __init__(self, config: PretrainedConfig) -> None:
            self.config = config

    shell = cast(Any, _ConfigOnly(config))  # stands in for the model, which _get_logits_processor's type names
    generation._eos_token_tensor = torch.tensor(eos_ids) if eos_ids else None
    try:
        GenerationMixin._get_logits_processor(shell, generation, input_ids_seq_length=1, device="cpu")
    except (AttributeError, NotImplementedError):  # another transformers' internals: the engine's check still ran
        log.warning("could not build generate()'s logits processors to check the options", exc_info=True)


def _engine_defaults(generation: GenerationConfig) -> dict[str, Any]:
    from gpi_desktop.core.generation.processors import effective_generation_options

    class _Model:
        generation_config = generation

    return effective_generation_options(_Model, {})


def _refusal(key: str, value: Any, reason: str) -> str:
    accepts = _ACCEPTS.get(key)
    shown = json.dumps(value) if not isinstance(value, str) else value
    if accepts:
        return f"The generation option {key}={shown} cannot be used: {key} takes {accepts}."
    return f"The generation option {key}={shown} cannot be used ({reason}): change or remove it."


def _reason(error: Exception) -> str:
    """transformers' reason, on one line and without its Markdown quotes."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    issues = [line.split(": ", 1)[-1] for line in lines if line.startswith("- ")]
    text = (issues[0] if issues else (lines[0] if lines else type(error).__name__)).replace("`", "")
    return text.rstrip(".")
