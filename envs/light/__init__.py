"""Light task envs, natively batched: 2D navigation, Bernoulli bandits, tabular MDPs (numpy only).

Each module defines a frozen task dataclass, its task distribution, a batched engine that steps
every sub-environment with one numpy computation, and the gymnasium env over one sub-environment.
"""

from envs.light.bandit import BanditEngine, BanditEnv, BanditTask, BanditTaskDistribution
from envs.light.navigation import (
    Navigation2DEngine,
    Navigation2DEnv,
    Navigation2DTask,
    Navigation2DTaskDistribution,
)
from envs.light.tabular_mdp import (
    TabularMDPEngine,
    TabularMDPEnv,
    TabularMDPTask,
    TabularMDPTaskDistribution,
)

__all__ = [
    "BanditEngine",
    "BanditEnv",
    "BanditTask",
    "BanditTaskDistribution",
    "Navigation2DEngine",
    "Navigation2DEnv",
    "Navigation2DTask",
    "Navigation2DTaskDistribution",
    "TabularMDPEngine",
    "TabularMDPEnv",
    "TabularMDPTask",
    "TabularMDPTaskDistribution",
]
