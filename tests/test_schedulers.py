"""The SVI presets sample like upstream SVI: DiffSynth's flow-match Euler with shift 5.

The expected schedule is computed here from DiffSynth's `FlowMatchScheduler` formula (shift 5,
sigma_min 0, extra_one_step): sigmas = linspace(1, 0, n+1)[:-1], σ' = shift·σ / (1 + (shift−1)·σ),
timesteps = σ'·1000, and an Euler step x + (σ_next − σ)·v with σ_n = 0.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from svi_studio.engines.presets import load_preset
from svi_studio.engines.schedulers import WanFlowMatchEulerScheduler, make_scheduler

# the scheduler config shipped with Wan-AI/Wan2.1-I2V-14B-480P-Diffusers and Wan2.2-I2V-A14B-Diffusers
WAN_SCHEDULER_CONFIG = {"_class_name": "UniPCMultistepScheduler", "num_train_timesteps": 1000,
                        "prediction_type": "flow_prediction", "use_flow_sigmas": True, "flow_shift": 3.0,
                        "solver_order": 2, "final_sigmas_type": "zero"}


def diffsynth_schedule(steps: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """(sigmas, timesteps) of DiffSynth's FlowMatchScheduler(shift, sigma_min=0, extra_one_step=True)."""
    sigmas = np.linspace(1.0, 0.0, steps + 1)[:-1]
    sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
    return sigmas, sigmas * 1000


@pytest.mark.parametrize("preset", ["wan2.2-svi-pro", "wan2.1-svi-film", "wan2.1-svi-shot"])
def test_svi_presets_sample_with_diffsynth_euler_50_steps(preset):
    model = load_preset(preset)
    settings = model.default_settings()
    assert model.scheduler == "euler" and settings.steps == 50 and settings.flow_shift == 5.0
    scheduler = make_scheduler(model.scheduler, WAN_SCHEDULER_CONFIG, settings.flow_shift)
    scheduler.set_timesteps(settings.steps)
    sigmas, timesteps = diffsynth_schedule(50, 5.0)
    assert len(scheduler.timesteps) == 50
    np.testing.assert_allclose(scheduler.sigmas[:-1].double().numpy(), sigmas, atol=1e-4, rtol=0)
    assert float(scheduler.sigmas[-1]) == 0.0
    np.testing.assert_allclose(scheduler.timesteps.double().numpy(), timesteps, atol=1e-4, rtol=0)


def test_euler_step_is_diffsynths_step():
    """Each step moves x by (σ_next − σ)·v; the last one lands on σ = 0."""
    scheduler = make_scheduler("euler", WAN_SCHEDULER_CONFIG, 5.0)
    scheduler.set_timesteps(50)
    sigmas, _ = diffsynth_schedule(50, 5.0)
    sigmas = np.append(sigmas, 0.0)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 16, 2, 4, 4, generator=generator, dtype=torch.float64)
    expected = x.clone()
    for index, timestep in enumerate(scheduler.timesteps):
        v = torch.randn(x.shape, generator=generator, dtype=torch.float64)
        x = scheduler.step(v, timestep, x, return_dict=False)[0]
        expected = expected + (sigmas[index + 1] - sigmas[index]) * v
    torch.testing.assert_close(x, expected, atol=1e-4, rtol=0)


def test_lightning_preset_keeps_its_four_step_schedule():
    """DESIGN.md: 4 steps at shift 5 → timesteps 1000, 937.5, 833.3, 625 (sigmas 1, .75, .5, .25 before the shift)."""
    model = load_preset("wan2.2-svi-pro-lightning")
    settings = model.default_settings()
    assert model.scheduler == "euler" and settings.steps == 4 and settings.flow_shift == 5.0
    scheduler = make_scheduler(model.scheduler, WAN_SCHEDULER_CONFIG, settings.flow_shift)
    scheduler.set_timesteps(4)
    np.testing.assert_allclose(scheduler.timesteps.double().numpy(), [1000.0, 937.5, 833.3333, 625.0], atol=1e-3)
    np.testing.assert_allclose(scheduler.timesteps.double().numpy(), diffsynth_schedule(4, 5.0)[1], atol=1e-4)


def test_dynamic_shifting_in_a_config_cannot_change_the_schedule():
    config = {**WAN_SCHEDULER_CONFIG, "use_dynamic_shifting": True}
    scheduler = make_scheduler("euler", config, 5.0)
    assert isinstance(scheduler, WanFlowMatchEulerScheduler) and not scheduler.config.use_dynamic_shifting
    scheduler.set_timesteps(4)
    np.testing.assert_allclose(scheduler.timesteps.double().numpy(), diffsynth_schedule(4, 5.0)[1], atol=1e-4)


def test_unknown_scheduler_is_refused():
    with pytest.raises(ValueError, match="unknown scheduler 'ddim'"):
        make_scheduler("ddim", WAN_SCHEDULER_CONFIG, 5.0)
