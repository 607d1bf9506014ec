"""Multi-armed bandit policies, their state and a regret simulator."""
