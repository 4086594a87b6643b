#!/usr/bin/env bash
# Refreshes the generated blocks of README.md and RESULTS.md: every region between
#   <!-- BEGIN include FILE -->  and  <!-- END include FILE -->
# is replaced by FILE's current content (results written by `hdge-torch experiment` and `make bench`),
# so no number in those sections is typed by hand. A marker may name one section of FILE,
#   <!-- BEGIN include FILE HEADING -->  (HEADING as the file writes it, without the #s),
# and then only that heading and what follows it up to the next heading of its level or above
# is included.
set -euo pipefail
cd "$(dirname "$0")/.."
for doc in README.md RESULTS.md; do
  out=$(mktemp)
  awk '
    /^<!-- BEGIN include .* -->$/ {
      print; file = $4; section = ""
      dir = file; sub(/[^\/]*$/, "", dir)
      for (i = 5; i < NF; i++) section = section (section == "" ? "" : " ") $i
      inside = (section == ""); level = 0
      while ((getline line < file) > 0) {
        if (section != "" && line ~ /^#/) {
          n = match(line, /[^#]/) - 1
          if (!inside && substr(line, n + 2) == section) { inside = 1; level = n }
          else if (inside && n <= level) inside = 0
        }
        if (!inside) continue
        # demote the included file headings by one level so they sit under the document section
        if (line ~ /^#/) line = "#" line
        # links relative to the included file (sample grids) are made relative to the document
        out = ""; rest = line
        while ((i = index(rest, "](")) > 0) {
          out = out substr(rest, 1, i + 1); rest = substr(rest, i + 2)
          if (rest !~ /^([a-z]+:|\/|#)/) out = out dir
        }
        line = out rest
        print line
      }
      close(file); skipping = 1; next
    }
    /^<!-- END include .* -->$/ { skipping = 0 }
    !skipping { print }
  ' "$doc" > "$out"
  mv "$out" "$doc"
done
