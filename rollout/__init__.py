"""The rollout farm: Celery app and tasks, campaigns, the rollout store, datasets.

Modules, in the order data flows:
  campaign      `CampaignSpec` (validated), `plan_task` (task i is a pure function of spec and i), and the API
                behind `verifarm campaign`: `submit`, `status`, `list_campaigns`, `cancel`, `requeue`
  rollouts      `rollout_batch`: generate, sample, verify (infra errors retried), store; no broker needed
  policy_source the policy a worker keeps and swaps when a newer checkpoint is published
  reference_policy  `ReferencePolicy`: answers with the env's reference, for load tests of the farm only
  app           the Celery app (`celery -A verifarm.rollout.app worker`) and its one thin task
  pool          `WorkerPool`: `verifarm workers start` processes started from Python
  embedded_redis  the private Redis used when no VERIFARM_REDIS_URL is set
  store         `RolloutStore`: records, campaigns and trainer metrics over SQLite or PostgreSQL
  export        JSONL / Parquet datasets that `datasets.load_dataset` reads
  config        `FarmConfig`: broker, store, checkpoints and timing knobs, passed explicitly
"""
