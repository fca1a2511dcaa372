#!/usr/bin/env bash
# The OCA module checker and pylint-odoo find an addon by walking up from each file and
# stop at the git top level, so with the manifest *at* the top level they would check
# nothing. Run them on an exported copy in a folder named after the module instead.
set -euo pipefail
repo=$(git rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/payment_vipps"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard \
  | xargs -0 cp --parents -t "$work/payment_vipps")
cd "$work/payment_vipps"
git init -q && git add -A
cd "$work"
oca-checks-odoo-module --disable=prefer-readme-rst payment_vipps
pylint --rcfile="$repo/.pylintrc" payment_vipps
