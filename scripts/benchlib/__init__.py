"""scripts/bench: what the RUM addon costs on top of plain mitmdump, and nginx sub_filter as a reference.

pages     the generated HTML pages and their pre-compressed copies
servers   nginx (origin and sub_filter reference) and mitmdump processes, CPU time and peak RSS
measure   wrk throughput, one request timed to its first body byte and its end, the body check
runner    one cell: a page in one encoding through every configuration, alternating
report    medians, ratios, the tables, the targets of issue 5, the machine, the JSON file
"""
