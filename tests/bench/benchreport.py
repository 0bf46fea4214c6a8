"""What the report steps of the bench-*.sh scripts share: reading the raw
figures (WORKDIR/results/NAME.txt, one "key=value" a line) and writing a
markdown table. The scripts run their reports with PYTHONPATH set to this
directory.
"""

import os
import sys


def load(workdir, pattern, names):
    """{name: {key: value}} from WORKDIR/results/(pattern % name).txt for
    each of names; where a key repeats, its last line wins."""
    R = {}
    for n in names:
        d = {}
        with open(os.path.join(workdir, "results", pattern % n + ".txt")) as f:
            for line in f:
                k, _, v = line.rstrip("\n").partition("=")
                d[k] = v
        R[n] = d
    return R


def start(pattern, extra=()):
    """For a report step run as `python3 - WORKDIR TOOLS SCALE`: the workdir,
    the tools (a list), the scale, and the figures of the tools and of the
    names in extra (load())."""
    workdir, tools, scale = sys.argv[1:4]
    tools = tools.split(",")
    return workdir, tools, scale, load(workdir, pattern, tools + list(extra))


def number(R, t, k):
    """R[t][k] as a float; None when it is missing or not a number."""
    try:
        return float(R[t][k])
    except (KeyError, ValueError):
        return None


def secs(v):
    """Seconds for a table cell: two decimals below 10, one above."""
    return "%.2f" % v if v < 10 else "%.1f" % v


def mib(kib):
    """KiB (GNU time's %M) as whole MiB."""
    return "%.0f" % (kib / 1024)


def md_table(header, table, left):
    """The markdown lines of a table: header, then the rows of table (lists
    of strings as long as header), padded to the widest cell; the columns
    whose index is in left are left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in [header] + table) for i in range(len(header))]

    def md_line(cells):
        return "| " + " | ".join(c.ljust(w) if i in left else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"
    lines = [md_line(header),
             "|" + "|".join(("-" * (w + 1) + ":") if i not in left else "-" * (w + 2)
                            for i, w in enumerate(widths)) + "|"]
    return lines + [md_line(r) for r in table]
