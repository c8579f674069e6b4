#!/usr/bin/env bash
# Lints the SAM template with cfn-lint and checks that the FlexMatch rule set inlined in it is
# infra/flexmatch/ruleset.json.
#
# cfn-lint comes from PyPI into ./.tools/venv (created on first run, reused after; .tools/ is not
# committed). The version is pinned so a new cfn-lint release cannot turn CI red on its own; bump
# CFN_LINT_VERSION deliberately.
#
# Exit status: 0 when clean; non-zero on any cfn-lint error or warning (the template has none, and
# a new one should be fixed or documented in docs/deploy.md, not ignored), on a rule set mismatch,
# or when cfn-lint cannot be installed. Informational findings do not fail the run.
#
# Usage: scripts/cfn-lint.sh [TEMPLATE]   (default infra/template.yaml)
set -euo pipefail

readonly CFN_LINT_VERSION="${CFN_LINT_VERSION:-1.58.0}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.tools/venv"
template="${1:-infra/template.yaml}"
ruleset="infra/flexmatch/ruleset.json"
cd "$root"

installed_version() {
    "$venv/bin/cfn-lint" --version 2>/dev/null | awk '{print $2}'
}

if [[ ! -x "$venv/bin/cfn-lint" || "$(installed_version)" != "$CFN_LINT_VERSION" ]]; then
    echo "cfn-lint.sh: installing cfn-lint $CFN_LINT_VERSION into .tools/venv" >&2
    if [[ ! -x "$venv/bin/python" ]]; then
        if ! python3 -m venv "$venv"; then
            echo "cfn-lint.sh: 'python3 -m venv' failed; on Debian/Ubuntu install python3-venv" >&2
            exit 1
        fi
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "cfn-lint==$CFN_LINT_VERSION"
fi

echo "cfn-lint $(installed_version): $template" >&2
status=0
"$venv/bin/cfn-lint" -- "$template" || status=$?
# cfn-lint's status is a bit mask: 2 = error, 4 = warning, 8 = informational.
if (( status & ~8 )); then
    echo "cfn-lint.sh: cfn-lint reported problems (exit status $status)" >&2
    exit 1
fi

# The template must carry the rule set inline (CloudFormation has no file include for it) and the
# local stack loads the file: both must say the same thing. The block scalar under RuleSetBody, with
# its indentation removed, is compared with the file as JSON and as text.
"$venv/bin/python" - "$template" "$ruleset" <<'PY'
import json
import sys

template_path, ruleset_path = sys.argv[1], sys.argv[2]
lines = open(template_path, encoding="utf-8").read().splitlines(keepends=True)
start = next(
    (i for i, line in enumerate(lines) if line.strip() == "RuleSetBody: |"), None
)
if start is None:
    sys.exit(f"{template_path}: no 'RuleSetBody: |' block scalar")
key_indent = len(lines[start]) - len(lines[start].lstrip())
body = []
for line in lines[start + 1 :]:
    indent = len(line) - len(line.lstrip())
    if line.strip() and indent <= key_indent:
        break
    body.append(line)
while body and not body[-1].strip():
    body.pop()
block_indent = min(len(l) - len(l.lstrip()) for l in body if l.strip())
inline = "".join(l[block_indent:] if l.strip() else "\n" for l in body)

on_disk = open(ruleset_path, encoding="utf-8").read()
try:
    inline_json = json.loads(inline)
except json.JSONDecodeError as err:
    sys.exit(f"{template_path}: RuleSetBody is not JSON: {err}")
if inline_json != json.loads(on_disk):
    sys.exit(f"{template_path}: RuleSetBody differs from {ruleset_path}")
if inline != on_disk:
    sys.exit(
        f"{template_path}: RuleSetBody has the same JSON as {ruleset_path} but different text; "
        "paste the file verbatim"
    )
print(f"rule set: {template_path} RuleSetBody == {ruleset_path}", file=sys.stderr)
PY

echo "cfn-lint.sh: ok" >&2
