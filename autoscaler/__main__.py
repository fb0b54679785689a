"""`python -m autoscaler`: run the local autoscaler."""

from autoscaler.main import main

main()
