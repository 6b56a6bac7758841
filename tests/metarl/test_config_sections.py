import pytest

from metarl.config_sections import InnerConfig, section


def test_section_returns_a_present_section_unchanged():
    inner = InnerConfig(lr=0.5)
    assert section(inner, "inner") is inner


def test_section_names_a_missing_section():
    with pytest.raises(ValueError, match="the inner section is None"):
        section(None, "inner")
