"""continue_from=RUN/best (issue 15, item 6): the large-resolution stage continues the LR schedule
from the run's last step, as the README says, not from the step its best model was kept at."""
import torch

from finetune.trainer import BEST, continued_schedule_offset
from pretrain.backbone import build_model
from pretrain.config import ModelConfig
from pretrain.model import save_model


def finished_run(tmp_path, best_step, last_step):
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="test_resnet"), 4)
    run = tmp_path / "ft"
    save_model(model, run / BEST, {"model": "test_resnet", "num_classes": 4, "step": best_step, "val_top1": 0.5,
                                       "image_size": 64, "crop_pct": 0.875})
    save_model(model, run, {"model": "test_resnet", "num_classes": 4, "step": last_step,
                                 "image_size": 64, "crop_pct": 0.875})
    return run


def test_best_folder_continues_from_the_runs_last_step(tmp_path):
    run = finished_run(tmp_path, best_step=4, last_step=8)
    assert continued_schedule_offset(run / BEST) == 8
    assert continued_schedule_offset(run / BEST / "model.safetensors") == 8
    assert continued_schedule_offset(run) == 8


def test_a_lone_best_folder_keeps_its_own_step(tmp_path):
    run = finished_run(tmp_path, best_step=4, last_step=8)
    (run / "model.json").unlink()   # the run's own model is gone: only best/ tells a step
    assert continued_schedule_offset(run / BEST) == 4
