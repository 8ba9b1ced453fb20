"""Enrolment and device management: the pages where users add, rename and remove their second factors.

Included by ``stepup.urls`` (``stepup:devices`` and the per-kind enrol
pages). Views (:mod:`.views`) stay thin; each kind's flow lives in its own
module (:mod:`.totp`, :mod:`.backup_codes`, :mod:`.email`), the list and
removal in :mod:`.devices`, and the warning before a last factor goes in
:mod:`.impact`.
"""
