"""The Apple GPU (MPS): device and precision choice, its name, memory verdict, automatic batch, out of memory,
operations it lacks. No Mac here: torch's MPS queries, the platform and sysctl are replaced by fakes, as the
CUDA paths are tested on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fakes import RecordingState
from model_shapes import LLAMA_31_8B

from gpi_desktop.core.generation import batch_size, engine
from gpi_desktop.core.generation.engine import EngineConfig, auto_batch_size, run_engine
from gpi_desktop.core.model import devices, host, memory
from gpi_desktop.core.model.devices import pick_device, pick_dtype
from gpi_desktop.core.model.memory import estimate_memory, fit_verdict
from gpi_desktop.core.vocabulary.errors import DeviceError, SettingsError

GiB = 1 << 30
# What PyTorch's MPS allocator raises when the GPU's share of the memory is used up.
MPS_OOM = (
    "MPS backend out of memory (MPS allocated: 17.02 GB, other allocations: 1.20 GB, max allowed: 18.13 GB). "
    "Tried to allocate 2.00 GB on private pool. Use PYTORCH_MPS_HIGH_WATERMARK_RATIO=0.0 to disable upper "
    "limit for memory allocations (may cause system failure)."
)
# What PyTorch on a Mac raises for an operation the MPS backend does not implement (fallback off).
MPS_MISSING_OP = (
    "The operator 'aten::_linalg_solve_ex.result' is not currently implemented for the MPS device. If "
    "you want this op to be added in priority during the prototype phase of this feature, please comment "
    "on https://github.com/pytorch/pytorch/issues/77764. As a temporary fix, you can set the environment "
    "variable `PYTORCH_ENABLE_MPS_FALLBACK=1` to use the CPU as a fallback for this op. WARNING: this "
    "will be slower than running natively on MPS."
)


class FakeMac:
    """An M2 Pro with 32 GB: Metal lets the GPU use about two thirds of it."""

    def __init__(self) -> None:
        self.recommended = int(21.3 * GiB)
        self.allocated = 0
        self.chip: str | None = "Apple M2 Pro"
        self.machine = "arm64"
        self.sysctl_calls: list[list[str]] = []
        self.events: list[str] = []


@pytest.fixture
def mac(monkeypatch) -> FakeMac:
    fake = FakeMac()
    real_run = subprocess.run

    def run(cmd, *args, **kwargs):
        if list(cmd)[:1] != ["sysctl"]:
            return real_run(cmd, *args, **kwargs)
        fake.sysctl_calls.append(list(cmd))
        if fake.chip is None:
            raise subprocess.CalledProcessError(1, cmd)
        return subprocess.CompletedProcess(cmd, 0, stdout=fake.chip + "\n", stderr="")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.mps, "recommended_max_memory", lambda: fake.recommended)
    monkeypatch.setattr(torch.mps, "current_allocated_memory", lambda: fake.allocated)
    monkeypatch.setattr(torch.mps, "empty_cache", lambda: fake.events.append("empty_cache"))
    monkeypatch.setattr(devices, "is_apple_silicon", lambda: fake.machine == "arm64")
    monkeypatch.setattr(devices.subprocess, "run", run)
    monkeypatch.setattr(host, "machine_ram", lambda: (12 * GiB, 32 * GiB))
    monkeypatch.setattr(devices, "mps_supports_bfloat16", lambda: True)
    return fake


# --- which device --------------------------------------------------------------------------------------


def test_auto_picks_an_nvidia_gpu_first_then_the_apple_gpu_then_the_cpu(mac, monkeypatch):
    assert pick_device("auto") == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # CUDA, or AMD through a ROCm build
    assert pick_device("auto") == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device("auto") == "cpu"
    assert pick_device("cpu") == "cpu"


def test_an_intel_mac_gets_the_cpu_unless_the_apple_gpu_is_asked_for(mac):
    mac.machine = "x86_64"
    assert pick_device("auto") == "cpu"
    assert memory.available_memory("auto")[0].kind == "cpu"
    assert pick_device("mps") == "mps"


def test_the_apple_gpu_asked_for_where_there_is_none_is_one_plain_sentence(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(SettingsError, match="No Apple GPU") as caught:
        pick_device("mps")
    assert caught.value.exit_code == 2
    with pytest.raises(SettingsError, match="No Apple GPU"):  # the verdict says the same, not "no NVIDIA GPU"
        memory.check_fit(LLAMA_31_8B, device="mps")


def test_cli_and_window_offer_the_same_devices_including_mps():
    from gpi_desktop.cli.entry import build_parser
    from gpi_desktop.core.vocabulary.settings import DEVICES, RunSettings
    from gpi_desktop.ui.steps.settings_step import DEVICES as WINDOW_DEVICES

    assert "mps" in DEVICES and [value for value, _label in WINDOW_DEVICES] == list(DEVICES)
    args = build_parser().parse_args(["run", "--device", "mps", "--model", "m", "--prompts", "p.csv"])
    assert args.device == "mps"
    RunSettings(device="mps").validate()


# --- precision -----------------------------------------------------------------------------------------


def test_auto_precision_on_the_apple_gpu_is_bfloat16_where_the_probe_works_else_float16(mac, monkeypatch):
    assert pick_dtype("auto", "mps") == torch.bfloat16
    monkeypatch.setattr(devices, "mps_supports_bfloat16", lambda: False)
    assert pick_dtype("auto", "mps") == torch.float16
    assert pick_dtype("float32", "mps") == torch.float32  # still there for who wants it
    with pytest.raises(SettingsError, match="float16"):  # asked for by name where the probe failed
        pick_dtype("bfloat16", "mps")


def test_the_bfloat16_probe_is_an_operation_on_the_device_not_a_version_guess():
    assert devices._bfloat16_works("cpu")
    # This CPU build of torch has no MPS kernels: the same operation fails there, and the probe says no.
    assert not devices._bfloat16_works("mps")


# --- the device in words -------------------------------------------------------------------------------


def test_the_apple_gpu_is_named_as_its_owner_knows_it(mac):
    assert devices.mps_device_name() == "Apple M2 Pro GPU, 32 GB shared memory"
    assert ["sysctl", "-n", "machdep.cpu.brand_string"] in mac.sysctl_calls
    assert devices.device_description("mps") == "mps (Apple M2 Pro GPU, 32 GB shared memory)"  # the manifest's


def test_a_mac_whose_chip_sysctl_does_not_name_is_still_the_apple_gpu(mac):
    mac.chip = None
    assert devices.mps_device_name() == "Apple GPU, 32 GB shared memory"


def test_the_model_step_names_the_apple_gpu_and_its_share(tiny_llama, mac):
    from gpi_desktop.core.model.models import describe_target
    from gpi_desktop.ui.steps.model_step import TargetCheck, target_lines

    mac.allocated = int(1.3 * GiB)
    info = describe_target(str(tiny_llama), "auto")
    assert info.kind == "mps" and not info.on_cpu and info.free_bytes == mac.recommended - mac.allocated
    assert info.where == "the Apple M2 Pro GPU, 32 GB shared memory"
    text, warn = target_lines(TargetCheck(info, None))
    assert text.splitlines()[0] == "Will run on: the Apple M2 Pro GPU, 32 GB shared memory, 21.5 GB of it for the GPU."
    assert not warn


# --- memory --------------------------------------------------------------------------------------------


def test_apple_gpu_memory_is_metals_recommended_share_less_what_is_allocated(mac):
    mac.allocated = 3 * GiB
    (gpu,) = memory.available_memory("auto")
    assert gpu.kind == "mps" and gpu.name == "Apple M2 Pro GPU, 32 GB shared memory"
    assert gpu.total_bytes == mac.recommended and gpu.free_bytes == mac.recommended - 3 * GiB
    assert memory.available_memory("mps") == [gpu]
    assert memory.available_memory("cpu")[0].kind == "cpu"


def test_verdict_on_a_mac_uses_the_gpus_share_and_suggests_what_fits_there(mac):
    est = estimate_memory(LLAMA_31_8B, dtype="bfloat16", batch_size=1, prompt_tokens=100, max_new_tokens=1000)
    roomy = fit_verdict(est, memory.available_memory("mps"))
    assert roomy.fits
    assert "the Apple M2 Pro GPU, 32 GB shared memory, may use 22.9 GB: it fits" in roomy.sentence

    mac.recommended = int(10.7 * GiB)  # a 16 GB Mac
    small = fit_verdict(est.with_settings(batch_size=8), memory.available_memory("mps"))
    text = " ".join(small.suggestions)
    assert not small.fits and "may use only" in small.sentence
    assert "8-bit" not in text and "4-bit" not in text  # bitsandbytes needs CUDA
    assert "Close other programs" in text and "smaller model" in text

    mac.recommended = int(21.3 * GiB)
    full = fit_verdict(est.with_settings(dtype="float32"), memory.available_memory("mps"))
    assert not full.fits and any("bfloat16 or float16" in s for s in full.suggestions)


def test_check_fit_on_the_apple_gpu_counts_half_precision_for_auto(tiny_llama, mac):
    estimate, verdict = memory.check_fit(tiny_llama, device="auto", batch_size=2, prompt_tokens=20, max_new_tokens=10)
    assert estimate.weights_bytes == memory.count_parameters(tiny_llama) * 2
    assert verdict.fits and "Apple M2 Pro GPU" in verdict.sentence


def test_auto_batch_on_the_apple_gpu_follows_the_verdicts_figure(loaded, encoded, mac, monkeypatch):
    monkeypatch.setattr(batch_size, "input_device", lambda model: torch.device("mps"))
    mac.recommended = 64 * GiB
    assert auto_batch_size(loaded, encoded * 100, 1000) == engine.MAX_AUTO_BATCH
    cfg = loaded.model.config
    kv_per_token = (
        2 * cfg.num_hidden_layers * cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads) * 4
    )
    row = kv_per_token * (max(len(p.ids) for p in encoded) + 1000 + engine.CACHE_CHUNK)
    mac.recommended = int(row * 10.5 / memory.USABLE_SHARE)
    tight = auto_batch_size(loaded, encoded * 100, 1000)
    assert 5 <= tight <= 10
    mac.allocated = int(row * 5 / memory.USABLE_SHARE)  # the loaded model holds part of the share
    assert auto_batch_size(loaded, encoded * 100, 1000) < tight


# --- out of memory and missing operations --------------------------------------------------------------


def test_mps_out_of_memory_halves_the_batch_after_emptying_the_mps_cache(loaded, encoded, mac, monkeypatch):
    real_forward = loaded.model.forward

    def small_gpu(*args, **kwargs):
        ids = kwargs.get("input_ids")
        if ids is not None and ids.shape[0] > 2:
            mac.events.append(f"forward {ids.shape[0]}: out of memory")
            raise RuntimeError(MPS_OOM)
        mac.events.append(f"forward {ids.shape[0] if ids is not None else 0}")
        return real_forward(*args, **kwargs)

    def run(batch_size, state):
        got = {}
        run_engine(
            loaded,
            encoded,
            EngineConfig("last", 12, batch_size, prefill="batched"),
            state,
            on_result=lambda r: got.__setitem__(r.row, r),
        )
        return got

    monkeypatch.setattr(loaded.model, "forward", small_gpu)
    state = RecordingState()
    got = run(8, state)
    monkeypatch.undo()
    expected = run(1, RecordingState())
    assert {row: r.text for row, r in got.items()} == {row: r.text for row, r in expected.items()}
    assert any("ran out of memory with 8 prompts at once; retrying them 4 at a time" in s for s in state.statuses)
    first_oom = mac.events.index("forward 8: out of memory")
    assert mac.events[first_oom + 1] == "empty_cache"  # freed before the smaller retry starts


def test_an_operation_the_apple_gpu_lacks_is_one_plain_sentence():
    error = devices.unsupported_operation(NotImplementedError(MPS_MISSING_OP))
    assert isinstance(error, DeviceError) and error.exit_code == 2
    assert "aten::_linalg_solve_ex.result" in str(error) and "CPU" in str(error) and "\n" not in str(error)
    assert devices.unsupported_operation(NotImplementedError("something else")) is None
    assert devices.unsupported_operation(RuntimeError(MPS_MISSING_OP)) is None


def test_a_run_that_hits_a_missing_mps_operation_stops_with_one_sentence_not_a_traceback(
    tiny_llama, prompts_csv, tmp_path, capsys, monkeypatch
):
    from transformers import LlamaForCausalLM

    from gpi_desktop.cli import main

    def needs_mps(self, *args, **kwargs):
        return torch.ones(1, device="mps")  # a real NotImplementedError from torch's MPS dispatch

    monkeypatch.setattr(LlamaForCausalLM, "forward", needs_mps)
    code = main(
        [
            "run",
            "--model",
            str(tiny_llama),
            "--prompts",
            str(prompts_csv),
            "--out",
            str(tmp_path / "o"),
            "--max-new-tokens",
            "4",
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("gpi-desktop: This model needs an operation the Apple GPU (MPS) does not have")
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_the_mps_fallback_is_switched_on_before_torch_loads_and_a_users_choice_is_kept(monkeypatch):
    environ: dict[str, str] = {}
    devices.enable_mps_fallback(environ)
    assert environ == {"PYTORCH_ENABLE_MPS_FALLBACK": "1"}
    environ = {"PYTORCH_ENABLE_MPS_FALLBACK": "0"}
    devices.enable_mps_fallback(environ)
    assert environ == {"PYTORCH_ENABLE_MPS_FALLBACK": "0"}

    from gpi_desktop.cli import main

    monkeypatch.setenv("PYTORCH_ENABLE_MPS_FALLBACK", "unset")
    monkeypatch.delenv("PYTORCH_ENABLE_MPS_FALLBACK")
    with pytest.raises(SystemExit):
        main(["--version"])  # the window and every command start here
    assert os.environ["PYTORCH_ENABLE_MPS_FALLBACK"] == "1"
    # ... and nothing imported before main() has loaded torch yet, so PyTorch still reads it.
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, gpi_desktop.cli; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert probe.stdout.strip() == "False"
