#!/usr/bin/env bash
# Build the sdist and the wheel, check their metadata with `twine check`, install the wheel
# into a fresh venv, and check that a project set up exactly as CONTRACT section 1 says
# passes `manage.py check`, migrates, runs `stepup validate` / `stepup sync`, collects
# stepup's static files and speaks German — the wheel must carry migrations, templates,
# static files, the compiled catalogs, the JSON Schema and py.typed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python="${PYTHON:-$root/.venv/bin/python}"

"$python" -m build --sdist --wheel --outdir "$work/dist" "$root" >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
"$python" -m twine check --strict "$work"/dist/* || { echo "twine check failed"; exit 1; }
wheel="$(ls "$work"/dist/django_stepup-*.whl)"
# List once into a file: `unzip -l | grep -q` under pipefail fails at random when grep
# exits early and unzip dies of SIGPIPE.
unzip -l "$wheel" >"$work/members.txt"
members=(
  stepup/migrations/0001_initial.py
  stepup/templates/stepup/verify.html
  stepup/templates/stepup/base.html
  stepup/templates/stepup/admin/policy_history_list.html
  stepup/static/stepup/stepup.css
  stepup/templates/stepup/factors/webauthn.html
  stepup/static/stepup/webauthn.js
  stepup/policy.schema.json
  stepup/py.typed
)
for lang in de fr; do
  members+=("stepup/locale/$lang/LC_MESSAGES/django.mo" "stepup/locale/$lang/LC_MESSAGES/django.po")
done
for member in "${members[@]}"; do
  grep -q " $member\$" "$work/members.txt" || { echo "wheel lacks $member"; exit 1; }
done
if grep -qE " (tests|project|fixtures)/" "$work/members.txt"; then echo "wheel carries non-package files"; exit 1; fi

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet "$wheel" >"$work/pip.log" 2>&1 || { cat "$work/pip.log"; exit 1; }

mkdir -p "$work/site/mysite" "$work/site/fixtures/stepup"
cp "$root/tests/packaging/site_settings.py" "$work/site/mysite/settings.py"
cp "$root/tests/packaging/site_urls.py" "$work/site/mysite/urls.py"
touch "$work/site/mysite/__init__.py"
cat >"$work/site/fixtures/stepup/policies.yaml" <<'YAML'
version: 1
policies:
  - id: admin-users
    match: {urls: ["admin:auth_user_change"], methods: [POST]}
    decision: step_up
    max_age: 300
YAML
cd "$work/site"
export DJANGO_SETTINGS_MODULE=mysite.settings PYTHONPATH="$work/site"
"$work/venv/bin/django-admin" check --fail-level WARNING
"$work/venv/bin/django-admin" migrate --noinput -v 0
"$work/venv/bin/django-admin" stepup validate
"$work/venv/bin/django-admin" stepup sync --reason "wheel check"
"$work/venv/bin/django-admin" stepup plan
# The static files are collected, and the installed catalogs answer in German (no GNU gettext here).
"$work/venv/bin/django-admin" collectstatic --noinput -v 0
test -s "$work/site/static/stepup/stepup.css" || { echo "collectstatic did not collect stepup/stepup.css"; exit 1; }
"$work/venv/bin/django-admin" shell -c '
from django.utils import translation
with translation.override("de"):
    said = translation.gettext("Set up a second factor first")
assert said == "Richten Sie zuerst einen zweiten Faktor ein", said
'
echo "wheel OK: $(basename "$wheel")"
