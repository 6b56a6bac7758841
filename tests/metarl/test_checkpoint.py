import doctest
import random

import numpy as np
import pytest
import torch

import metarl.checkpoint
from metarl.checkpoint import (
    capture_rng_state,
    checkpoint_dir,
    checkpoint_iteration,
    checkpoint_path,
    final_checkpoint,
    generator_from_state,
    generator_state,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    restore_rng_state,
    rotate_checkpoints,
    save_checkpoint,
)


def draw_all(np_rng, torch_gen):
    """Next draws of every RNG a run uses."""
    return {
        "python": [random.random() for _ in range(3)] + [random.gauss(0.0, 1.0)],
        "numpy_global": np.random.rand(3).tolist() + [np.random.standard_normal()],
        "numpy_generator": np_rng.random(3).tolist() + np_rng.integers(0, 2**62, 2).tolist(),
        "torch": torch.rand(3).tolist() + torch.randn(2).tolist(),
        "torch_generator": torch.rand(3, generator=torch_gen).tolist(),
    }


def tiny_model_and_adam():
    gen = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    for param in model.parameters():
        param.data = torch.randn(param.shape, generator=gen)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(2):
        optimizer.zero_grad()
        model(torch.randn(5, 3, generator=gen)).pow(2).mean().backward()
        optimizer.step()
    return model, optimizer


@pytest.mark.parametrize(
    "bit_generator", [np.random.PCG64, np.random.MT19937, np.random.Philox, np.random.SFC64]
)
def test_rng_round_trip_through_weights_only_checkpoint(tmp_path, bit_generator):
    np_rng = np.random.Generator(bit_generator(123))
    torch_gen = torch.Generator().manual_seed(5)
    # Put every RNG in a non-trivial state, including cached Gaussians.
    draw_all(np_rng, torch_gen)
    random.gauss(0.0, 1.0)
    np.random.standard_normal()

    path = save_checkpoint(tmp_path / "ckpt.pt", {"rng": capture_rng_state(np_rng, torch_gen)})
    expected = draw_all(np_rng, torch_gen)
    draw_all(np_rng, torch_gen)  # Move everything on, so a no-op restore would fail.

    restored = restore_rng_state(load_checkpoint(path)["rng"])
    assert type(restored.numpy.bit_generator) is bit_generator
    assert draw_all(restored.numpy, restored.torch) == expected


def test_rng_state_without_generators():
    state = capture_rng_state()
    assert "numpy_generator" not in state and "torch_generator" not in state
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    restored = restore_rng_state(state)
    assert restored.numpy is None and restored.torch is None
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_big_ints_are_stored_exactly():
    rng = np.random.default_rng(2**100)
    encoded = generator_state(rng)
    big = rng.bit_generator.state["state"]["state"]
    assert big > 2**63  # PCG64 state is a 128-bit int ...
    assert encoded["state"]["state"] == {"__int__": str(big)}  # ... stored as a decimal string.
    assert generator_from_state(encoded).bit_generator.state == rng.bit_generator.state


def test_restore_rejects_foreign_state():
    with pytest.raises(ValueError, match="not an RNG state written by capture_rng_state"):
        restore_rng_state({"python": 1})
    with pytest.raises(ValueError, match="unknown numpy bit generator 'Nope'"):
        generator_from_state({"bit_generator": "Nope", "state": {}})


def test_weights_only_load_of_model_adam_and_rng(tmp_path):
    model, optimizer = tiny_model_and_adam()
    state = {
        "iteration": 7,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": capture_rng_state(np.random.default_rng(0), torch.Generator().manual_seed(1)),
        "extra": {
            "best_return": -1.5,
            "tasks": [(0.5, 1.0), (0.2, -0.3)],
            "name": "maml",
            "none": None,
        },
    }
    path = save_checkpoint(tmp_path / "ckpt.pt", state)
    loaded = torch.load(path, weights_only=True)  # What resume relies on.
    assert loaded["iteration"] == 7
    assert loaded["extra"] == state["extra"]
    clone, clone_optimizer = tiny_model_and_adam()
    clone.load_state_dict(loaded["model"])
    clone_optimizer.load_state_dict(loaded["optimizer"])
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(clone.state_dict()[name], tensor, rtol=0, atol=0)
    adam_state = clone_optimizer.state_dict()["state"][0]
    torch.testing.assert_close(
        adam_state["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"], rtol=0, atol=0
    )
    assert load_checkpoint(path, map_location="cpu")["iteration"] == 7


def test_save_rejects_values_weights_only_cannot_load(tmp_path):
    with pytest.raises(TypeError, match=r"state\['rng'\]\['key'\] is a numpy\.ndarray"):
        save_checkpoint(tmp_path / "c.pt", {"rng": {"key": np.zeros(3)}})
    with pytest.raises(TypeError, match=r"state\['x'\] is a numpy\.float64"):
        save_checkpoint(tmp_path / "c.pt", {"x": np.float64(1.0)})
    with pytest.raises(TypeError, match="state must be a mapping"):
        save_checkpoint(tmp_path / "c.pt", [1, 2])
    assert list(tmp_path.iterdir()) == []


def test_crash_mid_write_keeps_old_checkpoint_and_no_temp_files(tmp_path, monkeypatch):
    path = checkpoint_path(tmp_path, 1)
    save_checkpoint(path, {"iteration": 1, "weights": torch.ones(3)})
    original_bytes = path.read_bytes()
    real_save = torch.save

    def crash_after_partial_write(obj, handle, *args, **kwargs):
        real_save(obj, handle, *args, **kwargs)
        handle.truncate(10)  # Half a file on disk ...
        raise OSError("simulated crash")  # ... then the process dies.

    monkeypatch.setattr(torch, "save", crash_after_partial_write)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(path, {"iteration": 2, "weights": torch.zeros(3)})
    monkeypatch.undo()

    assert path.read_bytes() == original_bytes
    torch.testing.assert_close(load_checkpoint(path)["weights"], torch.ones(3))
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_final_checkpoint_is_the_configs_last_iteration_not_a_later_kept_start(tmp_path):
    """A results folder keeps, beside a rerun's final checkpoint, starts other runs name."""
    assert final_checkpoint(tmp_path) is None
    for iteration in (2000, 3500, 3000):  # 3500: a kept start from a longer earlier run
        save_checkpoint(tmp_path / f"checkpoint_{iteration:08d}.pt", {"iteration": iteration})
    (tmp_path / "notes.pt").write_bytes(b"not a checkpoint")
    assert final_checkpoint(tmp_path) == tmp_path / "checkpoint_00003500.pt"  # no config
    (tmp_path / "config.yaml").write_text("optim:\n  iterations: 3000\n")
    assert final_checkpoint(tmp_path) == tmp_path / "checkpoint_00003000.pt"
    (tmp_path / "config.yaml").write_text("optim:\n  iterations: 4000\n")  # no such file
    assert final_checkpoint(tmp_path) == tmp_path / "checkpoint_00003500.pt"
    # a run directory: its checkpoints/ subfolder counts too
    run = tmp_path / "run"
    for iteration in (10, 20):
        save_checkpoint(checkpoint_path(run, iteration), {"iteration": iteration})
    (run / "config.yaml").write_text("optim:\n  iterations: 10\n")
    assert final_checkpoint(run) == checkpoint_path(run, 10)


def test_paths_latest_and_rotation(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    assert list_checkpoints(tmp_path / "missing") == []
    for iteration in (5, 100, 20, 9):
        save_checkpoint(checkpoint_path(tmp_path, iteration), {"iteration": iteration})
    # A stale temp file from a hard crash and an unrelated file.
    (checkpoint_dir(tmp_path) / ".checkpoint_00000200.pt.abc123.tmp").write_bytes(b"partial")
    (checkpoint_dir(tmp_path) / "notes.txt").write_text("keep me")

    assert checkpoint_path(tmp_path, 100) == tmp_path / "checkpoints" / "checkpoint_00000100.pt"
    assert [checkpoint_iteration(p) for p in list_checkpoints(tmp_path)] == [5, 9, 20, 100]
    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 100)

    removed = rotate_checkpoints(tmp_path, keep_last=2)
    assert [checkpoint_iteration(p) for p in removed] == [5, 9]
    assert sorted(p.name for p in checkpoint_dir(tmp_path).iterdir()) == [
        "checkpoint_00000020.pt",
        "checkpoint_00000100.pt",
        "notes.txt",
    ]


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="iteration must be an int >= 0"):
        checkpoint_path(tmp_path, -1)
    with pytest.raises(ValueError, match="keep_last must be an int >= 1"):
        rotate_checkpoints(tmp_path, 0)
    with pytest.raises(ValueError, match="not named like checkpoint_"):
        checkpoint_iteration(tmp_path / "model.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        load_checkpoint(tmp_path / "missing.pt")


def test_docstring_examples_run():
    result = doctest.testmod(metarl.checkpoint)
    assert result.attempted > 0 and result.failed == 0, result
