"""Light task envs, natively batched: 2D navigation, Bernoulli bandits, tabular MDPs (numpy only).

Each module defines a frozen task dataclass, its task distribution and a batched engine that steps
every sub-environment with one numpy computation; the registry serves each engine as a gymnasium
env (``metarl/<Name>-v0``).
"""

from envs.light.bandit import BanditEngine, BanditTask, BanditTaskDistribution
from envs.light.navigation import Navigation2DEngine, Navigation2DTask, Navigation2DTaskDistribution
from envs.light.tabular_mdp import TabularMDPEngine, TabularMDPTask, TabularMDPTaskDistribution

__all__ = [
    "BanditEngine",
    "BanditTask",
    "BanditTaskDistribution",
    "Navigation2DEngine",
    "Navigation2DTask",
    "Navigation2DTaskDistribution",
    "TabularMDPEngine",
    "TabularMDPTask",
    "TabularMDPTaskDistribution",
]
