"""Every command group registers its sub-commands here."""

from worker.cli import api, apikey, cron, db, demo, indexer, realtime, run, saas, sync

REGISTRARS = [
    indexer.register,
    saas.register,
    sync.register,
    cron.register,
    demo.register,
    db.register,
    run.register,
    realtime.register,
    api.register,
    apikey.register,
]
