"""verifarm: a reinforcement-learning environment and rollout farm for verifiable domains."""

__version__ = "0.1.0"
