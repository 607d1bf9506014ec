"""Pure statistics over sufficient statistics per arm (users, mean, centred second moment).

Only numpy, scipy and the standard library; every function takes plain numbers
or small dataclasses (`ArmSummary`, `CupedArm`, `PropensitySums`) and returns
numbers or frozen dataclasses.
"""
from experiments.stats.analysis import Analysis, ArmResult, analyse
# The function `cuped` stays in its module: exported here it would shadow the module's name.
from experiments.stats.cuped import CupedArm, CupedResult
from experiments.stats.ipw import IpwEstimate, PolicyValue, PropensitySums, best_arm_target, evaluate_allocation, ipw_arm
from experiments.stats.power import Plan, plan_sample_size
from experiments.stats.srm import SrmResult, sample_ratio_mismatch
from experiments.stats.summary import ArmSummary, Interval

__all__ = [
    "Analysis",
    "ArmResult",
    "ArmSummary",
    "CupedArm",
    "CupedResult",
    "Interval",
    "IpwEstimate",
    "Plan",
    "PolicyValue",
    "PropensitySums",
    "SrmResult",
    "analyse",
    "best_arm_target",
    "evaluate_allocation",
    "ipw_arm",
    "plan_sample_size",
    "sample_ratio_mismatch",
]
