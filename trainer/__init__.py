"""The continual-training daemon: interleaves pre-training with post-training on verified rollouts."""
