"""The rollout farm: Celery app and tasks, campaigns, the rollout store, datasets.

Modules, in the order data flows (each imports only the ones above it):
  config        `FarmConfig`: broker, store, checkpoints, sandbox backend and the `FarmTuning` knobs, resolved once
                from the `Settings` at an entry point and passed explicitly
  broker        queue names, the Celery config that carries the FarmConfig to workers, `enqueue_batches`
  translate_settings  what a translate campaign's spec holds
  campaign      `CampaignSpec` (validated), `plan_task` (task i is a pure function of spec and i), and the store-only
                API behind `verifarm campaign`: `status`, `list_campaigns`, `cancel`
  translate     translate campaigns' sources read from the store, and their exports
  submission    `submit` and `requeue`: a campaign's batches onto the broker
  rollouts      `rollout_batch`: generate, sample, verify (infra errors retried), store; no broker needed
  samplers      `CheckpointSampler` (a local checkpoint) and `EndpointSampler` (a completions server)
  policy_source the policy a worker keeps and swaps when a newer checkpoint is published
  reference_policy  `ReferencePolicy`: answers with the env's reference, for load tests of the farm only
  reconcile     re-enqueue the batches a broker lost
  app           the worker's Celery app (`celery -A verifarm.rollout.app worker`) and its one thin task
  pool          `WorkerPool`: worker processes started from Python (`pool_worker`: each reads its FarmConfig on stdin)
  orchestration whole campaigns run from Python (the demo, the benchmarks, the tests)
  embedded_redis  the private Redis used when no VERIFARM_REDIS_URL is set
  store         `RolloutStore`: records, campaigns and trainer metrics over SQLite or PostgreSQL
  export        JSONL / Parquet datasets that `datasets.load_dataset` reads
"""
