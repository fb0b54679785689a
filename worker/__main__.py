"""`python -m worker` (`inferfleet worker`): run one worker."""

from worker.main import main

main()
