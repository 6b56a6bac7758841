"""metarl: one core for meta-RL and supervised few-shot meta-learning."""

__version__ = "0.1.0"
