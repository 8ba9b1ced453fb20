"""A small shop, the project stepup's own tests run against (``tests.settings``, ``tests.urls``).

Billing details, transfers, a report download and team access: the four kinds of
action the policy fixtures (``fixtures/stepup/policies.yaml``) name, guarded by
the decorator, the mixin and the DRF permission, at the same paths as the demo's
so that the attack suite reads the same against either. The demo (``project/``)
is tested only in ``tests/demo/``.
"""
