"""The rollout farm: Celery app and tasks, campaigns, the rollout store, datasets."""
