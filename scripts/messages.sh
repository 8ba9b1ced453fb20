#!/usr/bin/env bash
# Extract stepup's translatable strings into stepup/locale/<lang>/LC_MESSAGES/django.po and
# compile them to django.mo (both committed: a wheel install never needs GNU gettext).
#
#   scripts/messages.sh            # or: make messages
#
# Needs GNU gettext (xgettext, msgmerge, msgfmt: `apt-get install gettext`). Run it after
# adding or changing a user-facing string, translate the new entries (no "fuzzy" flags, no
# empty msgstr: tests/i18n/test_catalogs.py checks), then run it again to compile.
# The options are fixed here so that every run writes the same files: file names without
# line numbers (a moved line changes nothing), no obsolete entries kept.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
languages=(de fr)

cd "$root/stepup"
args=()
for lang in "${languages[@]}"; do args+=(-l "$lang"); done
# No settings module: makemessages configures USE_I18N itself and needs no project.
env -u DJANGO_SETTINGS_MODULE "$python" -m django makemessages "${args[@]}" \
  --domain django --add-location file --no-obsolete --ignore 'migrations/*' -v 0
env -u DJANGO_SETTINGS_MODULE "$python" -m django compilemessages "${args[@]}" -v 0
