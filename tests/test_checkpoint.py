"""Atomic checkpoints: save/prune, half-written folders ignored and cleaned, exact restore of weights,
optimizer, scheduler, RNG and extra state with a real CPU ``Accelerator``."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from abcgen.errors import ConfigError
from abcgen.training.checkpoint import (
    MARKER,
    find_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_trainer_state,
    save_checkpoint,
)


@pytest.fixture
def accelerator() -> Iterator[object]:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)  # other tests may have made another one
    yield Accelerator(cpu=True)
    AcceleratorState._reset_state(reset_partial_state=True)


def make_training(accelerator):  # noqa: ANN001, ANN201
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    return accelerator.prepare(model, optimizer, scheduler)


def train_step(accelerator, model, optimizer, scheduler) -> float:  # noqa: ANN001
    x = torch.randn(8, 4)  # drawn from the global RNG: a resumed run must draw the same numbers
    loss = model(x).pow(2).mean()
    accelerator.backward(loss)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()
    return loss.item()


def test_save_twice_keeps_last_and_latest_is_newest(accelerator, tmp_path: Path) -> None:  # noqa: ANN001
    model, optimizer, scheduler = make_training(accelerator)
    first = save_checkpoint(accelerator, tmp_path, 10, {"tunes_seen": 80}, keep_last=1)
    assert first == tmp_path / "checkpoints" / "step-10" and (first / MARKER).is_file()
    assert (first / "model.safetensors").is_file() and (first / "random_states_0.pkl").is_file()
    train_step(accelerator, model, optimizer, scheduler)
    second = save_checkpoint(accelerator, tmp_path, 20, {"tunes_seen": 160}, keep_last=1)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-20"]
    assert find_checkpoint(tmp_path, "latest") == second
    state = read_trainer_state(second)
    assert (state["step"], state["tunes_seen"], state["num_processes"]) == (20, 160, 1)
    on_disk = json.loads((second / MARKER).read_text())
    assert on_disk["extra_state"] == {"tunes_seen": 160} and on_disk["schema_version"] == 1
    # keep_last=2 keeps two; saving the same step again replaces it in place
    save_checkpoint(accelerator, tmp_path, 30, {}, keep_last=2)
    save_checkpoint(accelerator, tmp_path, 30, {"again": True}, keep_last=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [20, 30]
    assert read_trainer_state(tmp_path / "checkpoints/step-30")["again"] is True
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-20", "step-30"]


def test_half_written_checkpoints_are_ignored_and_cleaned(accelerator, tmp_path: Path) -> None:  # noqa: ANN001
    model, optimizer, scheduler = make_training(accelerator)
    good = save_checkpoint(accelerator, tmp_path, 5, {}, keep_last=3)
    root = tmp_path / "checkpoints"
    # a run killed while writing step 10: its tmp folder has some files but no marker
    (root / ".tmp-step-10").mkdir()
    (root / ".tmp-step-10" / "model.safetensors").write_bytes(b"\0" * 10)
    # and a step folder without its marker (copied by hand, or from a non-atomic file system)
    (root / "step-99").mkdir()
    assert find_checkpoint(tmp_path, "latest") == good
    with pytest.raises(ConfigError, match="incomplete"):
        find_checkpoint(tmp_path, str(root / "step-99"))
    with pytest.raises(ConfigError, match="is not a folder"):
        find_checkpoint(tmp_path, str(root / "step-7"))
    with pytest.raises(ConfigError, match="is a run folder"):
        find_checkpoint(tmp_path / "elsewhere", str(tmp_path))
    assert find_checkpoint(tmp_path, "step-5") == good  # a name inside output_dir/checkpoints
    assert find_checkpoint(tmp_path, "") is None
    assert find_checkpoint(tmp_path / "fresh-run", "latest") is None  # nothing yet: a fresh start

    save_checkpoint(accelerator, tmp_path, 15, {}, keep_last=3)
    assert not (root / ".tmp-step-10").exists()
    assert find_checkpoint(tmp_path, "latest") == root / "step-15"


def test_a_save_killed_midway_leaves_the_previous_checkpoint(accelerator, tmp_path: Path,  # noqa: ANN001
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    make_training(accelerator)
    good = save_checkpoint(accelerator, tmp_path, 1, {}, keep_last=1)
    real_save_state = accelerator.save_state

    def dies_midway(output_dir: str, **kwargs: object) -> None:
        real_save_state(output_dir, **kwargs)
        raise KeyboardInterrupt("killed")  # stands in for SIGKILL after the weights, before the marker

    monkeypatch.setattr(accelerator, "save_state", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(accelerator, tmp_path, 2, {}, keep_last=1)
    assert (tmp_path / "checkpoints" / ".tmp-step-2").is_dir()
    assert find_checkpoint(tmp_path, "latest") == good and is_loadable(good)


def is_loadable(path: Path) -> bool:
    return (path / MARKER).is_file() and (path / "model.safetensors").is_file()


def test_load_restores_weights_optimizer_scheduler_and_rng(accelerator, tmp_path: Path) -> None:  # noqa: ANN001
    model, optimizer, scheduler = make_training(accelerator)
    for _ in range(3):
        train_step(accelerator, model, optimizer, scheduler)
    random.seed(1)
    np.random.seed(1)
    path = save_checkpoint(accelerator, tmp_path, 3, {"data_position": 24, "losses": [0.5, 0.4]})
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    exp_avg = optimizer.state_dict()["state"][0]["exp_avg"].clone()
    lr = scheduler.get_last_lr()
    # what an uninterrupted run does next
    expected_losses = [train_step(accelerator, model, optimizer, scheduler) for _ in range(2)]
    expected_draws = (random.random(), np.random.rand(), torch.rand(1).item())

    # a "new process": a fresh Accelerator and objects, different RNG, then resume
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    accelerator = Accelerator(cpu=True)
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    model2, optimizer2, scheduler2 = make_training(accelerator)
    with torch.no_grad():
        model2.weight.add_(1.0)
    state = load_checkpoint(accelerator, path)
    assert (state["step"], state["data_position"], state["losses"]) == (3, 24, [0.5, 0.4])
    for key, value in model2.state_dict().items():
        assert torch.equal(value, weights[key]), key
    assert torch.equal(optimizer2.state_dict()["state"][0]["exp_avg"], exp_avg)
    assert scheduler2.get_last_lr() == lr
    resumed_losses = [train_step(accelerator, model2, optimizer2, scheduler2) for _ in range(2)]
    assert resumed_losses == expected_losses  # same batches (RNG) and same updates, bit for bit
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected_draws


def test_load_refuses_a_checkpoint_of_another_process_count(accelerator, tmp_path: Path) -> None:  # noqa: ANN001
    make_training(accelerator)
    path = save_checkpoint(accelerator, tmp_path, 1, {})
    marker = path / MARKER
    state = json.loads(marker.read_text())
    marker.write_text(json.dumps({**state, "num_processes": 2}))
    with pytest.raises(ConfigError, match="saved by 2 processes but this run has 1"):
        load_checkpoint(accelerator, path)
    marker.write_text(json.dumps({**state, "schema_version": 7}))
    with pytest.raises(ConfigError, match="schema_version 7"):
        load_checkpoint(accelerator, path)
