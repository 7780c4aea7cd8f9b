"""Every command group registers its sub-commands here."""

from worker.cli import cron, db, demo, indexer, run

REGISTRARS = [indexer.register, cron.register, demo.register, db.register, run.register]
