"""The Mixture-of-Experts policy: model, tokenizer, sampling, training steps, checkpoints."""
