"""What happened: run and error records, the read model behind the CLI, API and dashboard, CSV, error categories, job runs."""
