"""Pure statistics over sufficient statistics per arm (users, sum, sum of squares).

Only scipy and the standard library; every function takes plain numbers or
`ArmSummary` and returns numbers or frozen dataclasses.
"""
from experiments.stats.analysis import Analysis, ArmResult, analyse
from experiments.stats.srm import SrmResult, sample_ratio_mismatch
from experiments.stats.summary import ArmSummary, Interval

__all__ = ["Analysis", "ArmResult", "ArmSummary", "Interval", "SrmResult", "analyse", "sample_ratio_mismatch"]
