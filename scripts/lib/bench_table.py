"""Shared by the benchmark scripts' table printers (their heredocs put
scripts/lib on sys.path): the machine line and the Markdown table."""

import os
import platform


def machine_line(load_average=True):
    """Host, cores, CPU model and kernel (and the load average, which says
    how quiet the machine was while the run went)."""
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    line = f"machine: {platform.node()}, {os.cpu_count()} cores, {cpu}; kernel {platform.release()}"
    if load_average:
        line += "; load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    return line


def print_table(head, rows):
    """`head` and `rows` as a Markdown table with padded columns."""
    widths = [max(len(str(row[i])) for row in [head] + rows) for i in range(len(head))]
    line = lambda row: "| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |"
    print(line(head))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(line(row))
