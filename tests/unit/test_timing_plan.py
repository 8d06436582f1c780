"""TimingPlan carries every [timing] setting the measurement reads, made in one place (TimingPlan.from_spec)."""

from dataclasses import fields

from harness.spec import Timing, load_spec
from harness.timekeeper import TimingPlan

# [timing] keys the plan does not carry because only the wording of a row cites them: none today. A key added
# to the spec's Timing must either join the plan (and from_spec) or be named here, with why.
WORDING_ONLY: frozenset[str] = frozenset()


def test_the_plan_carries_every_timing_setting_of_the_spec_with_its_value():
    spec = load_spec()
    plan = TimingPlan.from_spec(spec, run_seed=41)
    carried = {f.name for f in fields(Timing)} - WORDING_ONLY
    assert carried <= {f.name for f in fields(TimingPlan)}, carried - {f.name for f in fields(TimingPlan)}
    assert {name: getattr(plan, name) for name in carried} == {name: getattr(spec.timing, name) for name in carried}
    assert (plan.run_seed, plan.min_speedup) == (41, spec.limits.min_speedup)


def test_the_plan_has_nothing_the_spec_does_not_decide_but_the_run_seed():
    spec_decides = {f.name for f in fields(Timing)} | {"min_speedup"}
    assert {f.name for f in fields(TimingPlan)} - spec_decides == {"run_seed"}
