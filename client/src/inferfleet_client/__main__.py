"""`python -m inferfleet_client`: the `inferfleet-client` command."""

import sys

from inferfleet_client.cli import main

sys.exit(main())
