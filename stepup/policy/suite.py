"""Run a policy file's ``tests:`` block, like ``opa test``."""

from __future__ import annotations

from dataclasses import dataclass

from stepup.policy.engine import PolicySet, compile_policies, input_from_dict
from stepup.policy.model import Decision, PolicyFile, PolicyTest


@dataclass(frozen=True)
class TestResult:
    test: PolicyTest
    decision: Decision
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass(frozen=True)
class SuiteResult:
    results: tuple[TestResult, ...]
    unexercised: tuple[str, ...]
    """Ids of policies that no test made apply."""

    @property
    def failed(self) -> tuple[TestResult, ...]:
        return tuple(r for r in self.results if not r.passed)


def run_test(policy_set: PolicySet, test: PolicyTest) -> TestResult:
    decision = policy_set.decide(input_from_dict(test.input), trace=True)
    failures = []
    if decision.outcome != test.expect_decision:
        failures.append(f"decision: expected {test.expect_decision}, got {decision.outcome}")
    if test.expect_policies is not None and set(decision.policies) != set(test.expect_policies):
        failures.append(f"policies: expected {sorted(test.expect_policies)}, got {sorted(decision.policies)}")
    return TestResult(test, decision, tuple(failures))


def run_suite(policy_file: PolicyFile, *, default_max_age: int = 300) -> SuiteResult:
    """Evaluate every test against the file's own policies."""
    policy_set = compile_policies(policy_file.policies, default_max_age=default_max_age)
    results = tuple(run_test(policy_set, test) for test in policy_file.tests)
    applied = {trace.policy for result in results for trace in result.decision.trace or () if trace.applied}
    unexercised = tuple(sorted({s.id for s in policy_file.policies} - applied))
    return SuiteResult(results, unexercised)
