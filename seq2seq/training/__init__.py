"""Training: the LightningModule and DataModule, loss, schedules, callbacks, the run (train, validate,
sweeps) and what it needs around ``Trainer.fit`` (builders, the run-folder lock)."""
