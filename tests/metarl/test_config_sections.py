import pytest

from metarl.config_sections import InnerConfig, section


def test_section_returns_a_present_section_unchanged():
    inner = InnerConfig(lr=0.5)
    assert section(inner, "inner") is inner


def test_section_names_a_missing_section():
    with pytest.raises(ValueError, match="the inner section is None"):
        section(None, "inner")


def test_trpo_step_kwargs_pass_every_trpo_field_that_trpo_step_takes():
    import dataclasses
    import inspect

    from metarl.algorithms.maml_rl_config import TRPOConfig as MAMLTRPOConfig
    from metarl.config_sections import TRPOConfig
    from metarl.rl.trpo import trpo_step

    cfg = TRPOConfig(max_kl=0.02, cg_iters=7, cg_damping=0.1, ls_steps=3, step_curvature="cg")
    kwargs = cfg.step_kwargs()
    takes = set(inspect.signature(trpo_step).parameters)
    assert set(kwargs) <= takes
    # every field of the base section that trpo_step has a parameter for goes through
    assert {f.name for f in dataclasses.fields(TRPOConfig)} & takes == set(kwargs)
    assert kwargs["max_kl"] == 0.02 and kwargs["cg_iters"] == 7 and kwargs["step_curvature"] == "cg"
    # the MAML-RL section's own fields (fvp, compile, ...) are not trpo_step's
    assert MAMLTRPOConfig(cg_iters=3).step_kwargs()["cg_iters"] == 3
