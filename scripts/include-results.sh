#!/usr/bin/env bash
# Refreshes the generated blocks of README.md: every region between
#   <!-- BEGIN include FILE -->  and  <!-- END include FILE -->
# is replaced by FILE's current content (results written by `hdge-torch experiment` and `make bench`),
# so no number in those sections is typed by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp)
awk '
  /^<!-- BEGIN include .* -->$/ {
    print; file = $4
    while ((getline line < file) > 0) {
      # demote the included file headings by one level so they sit under the README section
      if (line ~ /^#/) line = "#" line
      print line
    }
    close(file); skipping = 1; next
  }
  /^<!-- END include .* -->$/ { skipping = 0 }
  !skipping { print }
' README.md > "$out"
mv "$out" README.md
