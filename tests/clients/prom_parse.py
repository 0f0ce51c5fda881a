"""Parses a Prometheus text exposition (stdin) with prometheus_client's own parser and prints
one sample per line: name<TAB>sorted labels (k=v,...)<TAB>value. Exits non-zero if the text
does not parse, or if a family has no HELP or TYPE (the parser then types it 'unknown')."""
import sys

from prometheus_client.parser import text_string_to_metric_families

text = sys.stdin.read()
for family in text_string_to_metric_families(text):
    if family.type == "unknown" or not family.documentation:
        sys.exit(f"family {family.name}: no TYPE or HELP")
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        print(f"{s.name}\t{labels}\t{s.value!r}")
