"""Memory estimates against real sizes, the fit verdict, and the quantization guard."""

from __future__ import annotations

import json

import pytest
from model_shapes import LLAMA_31_8B

from gpi_desktop.core.model import host, memory
from gpi_desktop.core.model.memory import DeviceMemory, estimate_memory, fit_verdict
from gpi_desktop.core.vocabulary.errors import SettingsError

GB = 10**9
GiB = 1024**3


# meta-llama/Llama-3.1-8B config.json (the numbers that matter here).
def _tensors(folder):
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        return [f.get_tensor(k) for k in f.keys()]  # noqa: SIM118 - safetensors' safe_open is no dict


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
    assert (
        memory.max_batch_for_memory(
            LLAMA_31_8B, dtype="bfloat16", free_bytes=70 * GB, prompt_tokens=100, max_new_tokens=1000
        )
        > 100
    )


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


# -- the allocation a cluster task really has (cgroup v1/v2, SLURM) -----------------------------------------


def _fake_tree(tmp_path, cgroup_line: str, files: dict[str, str]):
    proc, root = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text(cgroup_line + "\n")
    (proc / "self" / "statm").write_text("1000 256 0 0 0 0 0\n")
    root.mkdir()
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text + "\n")
    return proc, root


def test_cgroup_v2_limit_is_read_from_the_tasks_own_group_and_its_ancestors(tmp_path):
    job = "system.slice/slurmstepd.scope/job_5"
    proc, root = _fake_tree(
        tmp_path,
        f"0::/{job}/step_0/user/task_0",
        {
            "cgroup.controllers": "cpu memory",
            f"{job}/memory.max": str(4 * GiB),
            f"{job}/memory.current": str(1 * GiB),
            f"{job}/step_0/user/task_0/memory.max": "max",
            f"{job}/step_0/user/task_0/memory.current": "1000",
        },
    )
    limit = host.allocation_limit({}, proc, root)
    assert (limit.limit_bytes, limit.used_bytes, limit.free_bytes) == (4 * GiB, GiB, 3 * GiB)


def test_cgroup_v1_limit_is_read_and_its_no_limit_value_ignored(tmp_path):
    job = "slurm/uid_1000/job_7"
    proc, root = _fake_tree(
        tmp_path,
        f"12:cpuset:/{job}\n11:memory:/{job}/step_0\n0::/",
        {
            f"memory/{job}/memory.limit_in_bytes": str(2 * GiB),
            f"memory/{job}/memory.usage_in_bytes": str(GiB // 2),
            f"memory/{job}/step_0/memory.limit_in_bytes": "9223372036854771712",
            f"memory/{job}/step_0/memory.usage_in_bytes": "5",
        },
    )
    limit = host.allocation_limit({}, proc, root)
    assert (limit.limit_bytes, limit.used_bytes) == (2 * GiB, GiB // 2)


def test_inside_a_container_the_mounted_group_itself_holds_the_limit(tmp_path):
    proc, root = _fake_tree(
        tmp_path,
        "0::/kubepods/pod1/abc",
        {"cgroup.controllers": "memory", "memory.max": str(3 * GiB), "memory.current": "0"},
    )
    assert host.allocation_limit({}, proc, root).limit_bytes == 3 * GiB


def test_no_limit_anywhere_means_the_machines_memory(tmp_path):
    proc, root = _fake_tree(
        tmp_path, "0::/user.slice", {"cgroup.controllers": "memory", "user.slice/memory.max": "max"}
    )
    assert host.allocation_limit({}, proc, root) is None


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"SLURM_MEM_PER_NODE": "4096"}, 4 * GiB),
        ({"SLURM_MEM_PER_CPU": "1000", "SLURM_CPUS_PER_TASK": "3"}, 3000 * 2**20),
        ({"SLURM_MEM_PER_NODE": "8192", "SLURM_MEM_PER_CPU": "1"}, 8 * GiB),
    ],
)
def test_slurm_memory_allocation_is_read_from_its_environment(tmp_path, env, expected):
    proc, root = _fake_tree(tmp_path, "0::/", {})
    limit = host.allocation_limit(env, proc, root)
    assert limit.limit_bytes == expected and limit.used_bytes == 256 * __import__("os").sysconf("SC_PAGE_SIZE")


def test_the_tighter_of_cgroup_and_slurm_wins(tmp_path):
    proc, root = _fake_tree(
        tmp_path, "0::/job", {"cgroup.controllers": "memory", "job/memory.max": str(2 * GiB), "job/memory.current": "0"}
    )
    assert host.allocation_limit({"SLURM_MEM_PER_NODE": "4096"}, proc, root).limit_bytes == 2 * GiB
    assert host.allocation_limit({"SLURM_MEM_PER_NODE": "1024"}, proc, root).limit_bytes == GiB


def test_a_4g_task_on_a_big_node_is_told_its_allocation_not_the_nodes_memory(monkeypatch):
    monkeypatch.setattr(host, "machine_ram", lambda: (23 * GB, 64 * GB))
    monkeypatch.setenv("SLURM_MEM_PER_NODE", "4096")
    monkeypatch.setattr(host, "_cgroup_limit", lambda proc, root: None)
    (ram,) = memory.available_memory("cpu")
    assert ram.total_bytes == 4 * GiB and ram.free_bytes <= 4 * GiB
    verdict = fit_verdict(estimate_memory(LLAMA_31_8B, dtype="float32"), [ram])
    assert not verdict.fits and "SLURM --mem" in verdict.sentence and "23.0 GB" not in verdict.sentence


def test_the_engines_automatic_batch_uses_the_allocation(monkeypatch):
    from gpi_desktop.core.generation import batch_size

    monkeypatch.setattr(host, "machine_ram", lambda: (23 * GB, 64 * GB))
    monkeypatch.setattr(host, "_cgroup_limit", lambda proc, root: None)
    monkeypatch.setenv("SLURM_MEM_PER_NODE", "4096")
    assert batch_size._free_host_memory() <= 4 * GiB
    monkeypatch.delenv("SLURM_MEM_PER_NODE")
    assert batch_size._free_host_memory() == 23 * GB


def test_torch_threads_follow_the_cores_slurm_allocated(monkeypatch):
    import torch

    from gpi_desktop.core.job.job import use_allocated_cpus

    assert host.allocated_cpus({"SLURM_CPUS_PER_TASK": "1"}) == 1
    assert host.allocated_cpus({}) == len(__import__("os").sched_getaffinity(0))
    before = torch.get_num_threads()
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)  # a node's count, as torch sees it
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    use_allocated_cpus()
    assert calls == [1] and before >= 1


def test_machine_ram_without_a_total_in_meminfo_says_the_total_is_not_known(monkeypatch):
    import io

    # A /proc/meminfo that names the free memory but not the total (found by mypy: int(None) failed here).
    monkeypatch.setattr(host, "open", lambda *args, **kwargs: io.StringIO("MemAvailable:  2048 kB\n"), raising=False)
    assert host.machine_ram() == (2048 * 1024, 0)
