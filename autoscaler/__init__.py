"""The local autoscaler: KEDA's and the HPA's rules applied to worker processes."""
