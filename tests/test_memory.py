"""Memory estimates against real sizes, the fit verdict, and the quantization guard."""

from __future__ import annotations

import json

import pytest

from gpi_desktop.core import memory
from gpi_desktop.core.errors import SettingsError
from gpi_desktop.core.memory import DeviceMemory, estimate_memory, fit_verdict

GB = 10**9
GiB = 1024**3

# meta-llama/Llama-3.1-8B config.json (the numbers that matter here).
LLAMA_31_8B = {
    "model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False,
    "head_dim": 128, "attention_bias": False, "mlp_bias": False,
}


def _tensors(folder):
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        return [f.get_tensor(k) for k in f.keys()]


def test_llama_31_8b_parameter_count_matches_the_published_8_03_billion():
    assert memory.parameters_from_config(LLAMA_31_8B) == 8_030_261_248


def test_llama_31_8b_weights_take_16_06_gb_in_bfloat16():
    est = estimate_memory(LLAMA_31_8B, dtype="bfloat16", batch_size=1, prompt_tokens=1, max_new_tokens=1)
    assert est.weights_bytes == 16_060_522_496
    assert round(est.weights_bytes / GB, 2) == 16.06
    assert estimate_memory(LLAMA_31_8B, dtype="float32").weights_bytes == 2 * est.weights_bytes


def test_llama_31_8b_kv_cache_is_128_kib_per_token_in_bfloat16():
    est = estimate_memory(LLAMA_31_8B, dtype="bfloat16", batch_size=1, prompt_tokens=24, max_new_tokens=1000)
    assert est.kv_cache_bytes == 128 * 1024 * (24 + 1000)
    batch8 = est.with_settings(batch_size=8)
    assert batch8.kv_cache_bytes == 8 * est.kv_cache_bytes
    assert batch8.weights_bytes == est.weights_bytes


def test_quantized_llama_31_8b_is_about_8_5_and_6_gb():
    eight = estimate_memory(LLAMA_31_8B, dtype="bfloat16", quantization="8bit")
    four = estimate_memory(LLAMA_31_8B, dtype="bfloat16", quantization="4bit")
    # Embeddings and the output layer stay 16-bit (2.1 GB); the rest is 1 or ~0.56 bytes a weight.
    assert 9.0 * GB < eight.weights_bytes < 9.3 * GB
    assert 5.8 * GB < four.weights_bytes < 6.2 * GB


def test_tiny_model_estimate_equals_its_real_weights_size(tiny_llama, tiny_qwen):
    for folder in (tiny_llama, tiny_qwen):
        config = json.loads((folder / "config.json").read_text())
        real = sum(t.numel() * t.element_size() for t in _tensors(folder))  # float32 on disk
        assert estimate_memory(config, dtype="float32").weights_bytes == real
        assert memory.count_parameters(folder) == sum(t.numel() for t in _tensors(folder))
        assert memory.parameters_from_config(config) == memory.count_parameters(folder)


def test_estimate_accepts_a_transformers_config_and_the_parameter_count():
    from transformers import LlamaConfig

    config = LlamaConfig(**{k: v for k, v in LLAMA_31_8B.items() if k != "model_type"})
    est = estimate_memory(config, dtype="bfloat16", n_params=8_000_000_000)
    assert est.weights_bytes == 16_000_000_000


def test_tiny_model_really_fits_in_what_the_estimate_says(tiny_llama):
    """The estimate is not below what loading and one generation step actually allocate."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    real = sum(p.numel() * p.element_size() for p in model.parameters())
    config = json.loads((tiny_llama / "config.json").read_text())
    est = estimate_memory(config, dtype="float32", batch_size=2, prompt_tokens=10, max_new_tokens=5)
    assert est.weights_bytes == real
    with torch.no_grad():
        out = model(torch.ones(2, 10, dtype=torch.long), use_cache=True)
    cache = out.past_key_values
    cached = sum(layer.keys.numel() + layer.values.numel() for layer in cache.layers) * 4
    assert cached <= est.kv_cache_bytes  # 10 of the 15 tokens are in the cache after the prompt


def _gpu(free_gb: float, name: str = "NVIDIA Test GPU", index: int = 0) -> DeviceMemory:
    return DeviceMemory(name, int(free_gb * GB), int(80 * GB), "cuda", index)


def test_fits_on_a_big_gpu_with_a_plain_sentence():
    est = estimate_memory(LLAMA_31_8B, dtype="bfloat16", batch_size=8, prompt_tokens=100, max_new_tokens=1000)
    verdict = fit_verdict(est, [_gpu(79)])
    assert verdict.fits and "it fits" in verdict.sentence and "NVIDIA Test GPU" in verdict.sentence
    assert verdict.suggestions == []


def test_too_big_for_a_small_gpu_suggests_quantization_and_another_gpu():
    est = estimate_memory(LLAMA_31_8B, dtype="bfloat16", batch_size=1, prompt_tokens=100, max_new_tokens=1000)
    verdict = fit_verdict(est, [_gpu(12)])
    assert not verdict.fits and "will not fit" in verdict.sentence
    text = " ".join(verdict.suggestions)
    assert "8-bit" in text and "gpi-desktop[quantization]" in text
    assert "another machine" in text


def test_too_big_a_batch_suggests_the_largest_batch_that_fits():
    est = estimate_memory(LLAMA_31_8B, dtype="bfloat16", batch_size=64, prompt_tokens=500, max_new_tokens=1000)
    verdict = fit_verdict(est, [_gpu(24)])
    assert not verdict.fits
    batch_tip = [s for s in verdict.suggestions if "batch size" in s]
    assert batch_tip
    suggested = int(batch_tip[0].split("batch size of ")[1].split()[0])
    assert 1 <= suggested < 64
    assert est.with_settings(batch_size=suggested).total_bytes <= memory.usable_bytes([_gpu(24)])
    assert est.with_settings(batch_size=suggested + 1).total_bytes > memory.usable_bytes([_gpu(24)])


def test_fewer_new_tokens_is_suggested_when_that_is_what_fits():
    est = estimate_memory(LLAMA_31_8B, dtype="bfloat16", batch_size=1, prompt_tokens=100, max_new_tokens=100_000)
    verdict = fit_verdict(est, [_gpu(24)])
    tip = [s for s in verdict.suggestions if "maximum new tokens" in s]
    assert tip
    n = int(tip[0].split("tokens to ")[1].split()[0])
    assert est.with_settings(max_new_tokens=n).total_bytes <= memory.usable_bytes([_gpu(24)])
    assert est.with_settings(max_new_tokens=n + 1).total_bytes > memory.usable_bytes([_gpu(24)])


def test_two_gpus_together_hold_a_model_neither_holds_alone():
    est = estimate_memory(LLAMA_31_8B, dtype="bfloat16", batch_size=1, prompt_tokens=100, max_new_tokens=200)
    verdict = fit_verdict(est, [_gpu(10, index=0), _gpu(10, index=1)])
    assert verdict.fits and "spread over the GPUs" in verdict.sentence and "2 GPUs" in verdict.sentence


def test_on_the_cpu_suggests_a_gpu_not_quantization():
    est = estimate_memory(LLAMA_31_8B, dtype="float32", batch_size=1, prompt_tokens=100, max_new_tokens=200)
    ram = DeviceMemory("this computer's memory (RAM)", 20 * GB, 32 * GB, "cpu")
    verdict = fit_verdict(est, [ram])
    text = " ".join(verdict.suggestions)
    assert not verdict.fits and "RAM" in verdict.sentence
    assert "bfloat16" in text and "NVIDIA GPU" in text and "8-bit" not in text


def test_max_batch_is_zero_when_the_weights_alone_do_not_fit():
    assert memory.max_batch_for_memory(LLAMA_31_8B, dtype="bfloat16", free_bytes=10 * GB) == 0
    assert memory.max_batch_for_memory(LLAMA_31_8B, dtype="bfloat16", free_bytes=70 * GB,
                                       prompt_tokens=100, max_new_tokens=1000) > 100


def test_available_memory_reports_ram_on_a_machine_without_gpu():
    import torch

    devices = memory.available_memory("cpu")
    assert len(devices) == 1 and devices[0].kind == "cpu"
    assert 0 < devices[0].free_bytes <= devices[0].total_bytes
    if not torch.cuda.is_available():
        assert [d.kind for d in memory.available_memory("auto")] == ["cpu"]
        assert memory.available_memory("cuda") == []


def test_no_gpu_for_a_cuda_run_is_said_plainly():
    est = estimate_memory(LLAMA_31_8B, dtype="bfloat16")
    verdict = fit_verdict(est, [])
    assert not verdict.fits and "no NVIDIA GPU" in verdict.sentence


def test_quantization_without_a_gpu_is_refused_plainly(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert memory.quantization_config(None) is None
    with pytest.raises(SettingsError, match="NVIDIA GPU"):
        memory.quantization_config("4bit")


def test_quantization_without_bitsandbytes_says_what_to_install(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(memory, "quantization_available", lambda: False)
    with pytest.raises(SettingsError, match=r"gpi-desktop\[quantization\]"):
        memory.quantization_config("8bit")


def test_unknown_quantization_is_refused():
    with pytest.raises(SettingsError):
        memory.quantization_config("3bit")
    with pytest.raises(SettingsError):
        estimate_memory(LLAMA_31_8B, dtype="bfloat16", quantization="3bit")


def test_check_fit_on_a_model_folder_uses_its_real_size_and_this_machine(tiny_llama):
    estimate, verdict = memory.check_fit(tiny_llama, device="cpu", batch_size=4, prompt_tokens=20, max_new_tokens=10)
    real = memory.count_parameters(tiny_llama) * 4  # auto on the CPU is float32
    assert estimate.weights_bytes == real and estimate.dtype == "float32"
    assert verdict.fits and "RAM" in verdict.sentence
