"""The benchmark's engines decide alike: stepup, Cedar and CEL on the same generated policy sets.

``make bench`` refuses to time engines that disagree; this runs the same check
on the smaller sets as a test. Cedar and CEL come with the ``dev`` and ``bench`` extras
(``pip install -e '.[bench]'``); without them the test is skipped.
"""

from __future__ import annotations

import pytest

pytest.importorskip("cedarpy", reason="cedarpy is not installed (pip install -e '.[bench]')")
pytest.importorskip("cel", reason="common-expression-language is not installed (pip install -e '.[bench]')")

from bench import engines
from bench.decisions import Mismatch, check_equal
from bench.policies import Facts, input_table, make_policies


@pytest.mark.parametrize("size", [10, 100])
def test_the_three_engines_agree_on_every_input(size):
    specs = make_policies(size)
    built = {name: factory(specs) for name, factory in engines.ENGINES.items()}
    outcomes = check_equal(built, input_table(size, size=300))
    assert set(outcomes) == {"allow", "step_up", "deny"}  # the table reaches every outcome


def test_a_disagreement_is_caught():
    specs = make_policies(10)
    built = {name: factory(specs) for name, factory in engines.ENGINES.items()}
    built["cel"].default = built["cel"].cel.compile("1")  # CEL now allows uncovered actions
    with pytest.raises(Mismatch, match=r"nothing\.declared"):
        check_equal(built, [Facts(action="nothing.declared", roles=("finance",))])
