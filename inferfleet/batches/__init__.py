"""Batches (a file of lines, one job each) and the schedules that fire them."""
