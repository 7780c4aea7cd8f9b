import sys

from worker.testing.destination_server.cli import main

sys.exit(main())
