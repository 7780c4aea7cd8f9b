"""Every command group registers its sub-commands here."""

from worker.cli import api, apikey, cron, db, demo, indexer, run, saas, sync

REGISTRARS = [
    indexer.register,
    saas.register,
    sync.register,
    cron.register,
    demo.register,
    db.register,
    run.register,
    api.register,
    apikey.register,
]
