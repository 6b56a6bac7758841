"""The curves README block (RL² HalfCheetahVel): episode returns and the per-window table."""

import json

from tests.helpers.scripts import load_script


def _write(root, windows, **more_extra):
    directory = root / "rl2"
    directory.mkdir()
    extra = {"episodes_per_trial": 2, "horizon": 5, **more_extra}
    if windows is not None:
        extra["return_by_window"] = windows
    result = {
        "algorithm": "rl2_ppo",
        "metric": "return",
        "steps": [0, 1],
        "mean": [-7.0, -5.0],
        "ci95": [1.0, 0.5],
        "num_tasks": 40,
        "extra": extra,
    }
    (directory / "eval.json").write_text(json.dumps(result))


MANIFEST = {
    "runs": {"rl2": {"command": "metarl train x", "seed": 0, "budget": "b", "committed_in": "a1"}}
}
SPEC = {"kind": "curves", "runs": ["rl2"], "x": "episode"}


def test_the_window_table_gives_each_episode_s_return_per_window_with_the_last_window_short(
    tmp_path,
):
    tables = load_script("readme_tables")
    windows = {  # 5 steps in windows of 3: steps 0-2 and 3-4
        "curve": "rl2",
        "steps_per_window": 3,
        "window_starts": [0, 3],
        "mean": [[-6.0, -1.0], [-4.25, -0.75]],
        "ci95": [[0.5, 0.25], [0.5, 0.25]],
    }
    _write(tmp_path, windows)
    block = tables.result_block("rl2", tmp_path, MANIFEST, SPEC)
    assert "| rl2_ppo | -7.0 ± 1.0 | -5.0 ± 0.5 |" in block
    assert "rl2_ppo's return per window of steps" in block
    assert "| | steps 0-2 | steps 3-4 |" in block
    assert "| episode 1 | -6.0 ± 0.5 | -1.0 ± 0.2 |" in block
    assert "| episode 2 | -4.2 ± 0.5 | -0.8 ± 0.2 |" in block


def test_without_windows_the_block_is_the_episode_table_alone(tmp_path):
    tables = load_script("readme_tables")
    _write(tmp_path, None)
    block = tables.result_block("rl2", tmp_path, MANIFEST, SPEC)
    assert "| rl2_ppo | -7.0 ± 1.0 | -5.0 ± 0.5 |" in block
    assert "per window" not in block


def test_train_keys_add_the_training_curve_as_means_over_equal_spans(tmp_path):
    """A curves block with ``train_keys`` also shows each key's mean over equal spans of the
    run's logged iterations, computed from its metrics.csv (4 iterations in 2 spans here)."""
    tables = load_script("readme_tables")
    _write(tmp_path, None)
    rows = ["step,key,value"]
    for step, (pre, post) in enumerate([(1.0, 2.0), (3.0, 4.0), (5.0, 10.0), (7.0, 20.0)]):
        rows += [f"{step},train/pre_return,{pre}", f"{step},train/post_return,{post}"]
    (tmp_path / "rl2" / "metrics.csv").write_text("\n".join(rows) + "\n")
    spec = {**SPEC, "train_keys": ["train/pre_return", "train/post_return"], "windows": 2}
    block = tables.result_block("rl2", tmp_path, MANIFEST, spec)
    assert "over 2 equal spans" in block
    assert "| | its 1-2 | its 3-4 |" in block
    assert "| `train/pre_return` | 2.0 | 6.0 |" in block
    assert "| `train/post_return` | 3.0 | 15.0 |" in block


def test_the_paired_rise_across_the_trial_is_printed_with_its_sign(tmp_path):
    tables = load_script("readme_tables")
    rise = {"curve": "rl2", "episodes": [1, 2], "mean": 2.0, "ci95": 0.25}
    _write(tmp_path, None, last_minus_first=rise)
    block = tables.result_block("rl2", tmp_path, MANIFEST, SPEC)
    assert "rl2_ppo's return in episode 2 minus episode 1 of the same trial" in block
    assert "(mean ± 95% CI over the 40 tasks): +2.0 ± 0.2." in block.replace("\n", " ")
