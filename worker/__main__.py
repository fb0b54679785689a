"""`python -m worker`: run one worker."""

from worker.main import main

main()
