"""canary-judge: judges a canary against its stable version for Argo Rollouts and Flagger."""

__version__ = "0.1.0"
