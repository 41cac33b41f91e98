"""Sections' results and the RESULTS.md writer."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path


@dataclass
class Section:
    key: str
    title: str
    setup: str = ""  # what was run, one paragraph
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    headline: list[str] = field(default_factory=list)  # one-liners for the summary at the top
    seconds: float = 0.0
    error: str | None = None

    def markdown(self) -> str:
        out = [f"## {self.title}", ""]
        if self.error:
            out += [f"**Not measured:** {self.error}", ""]
        if self.setup:
            out += [self.setup, ""]
        if self.rows:
            out.append("| " + " | ".join(self.headers) + " |")
            out.append("|" + "|".join("---" for _ in self.headers) + "|")
            out += ["| " + " | ".join(str(c) for c in row) + " |" for row in self.rows]
            out.append("")
        out += [f"- {n}" for n in self.notes]
        if self.notes:
            out.append("")
        out.append(f"_Section time: {self.seconds:.0f} s._")
        out.append("")
        return "\n".join(out)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine() -> list[str]:
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem = float("nan")
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    libs = ", ".join(f"{d} {_version(d)}" for d in ("httpx", "httpcore", "peewee", "tenacity", "textual", "rich",
                                                       "psycopg2-binary"))
    import sqlite3

    commit = _git("rev-parse", "--short", "HEAD")
    dirty = " (+ uncommitted changes)" if _git("status", "--porcelain", "--untracked-files=no") else ""
    return [
        f"- CPU: {_cpu_model()}, {os.cpu_count()} cores (nproc {len(os.sched_getaffinity(0))}), "
        f"{mem:.1f} GiB RAM; load average at start {load[0]:.2f}",
        f"- OS: {platform.platform()}",
        f"- Python {platform.python_version()} ({platform.python_implementation()}), SQLite {sqlite3.sqlite_version}",
        f"- {libs}",
        f"- storycheck {_version('storycheck')} at commit {commit or '?'}{dirty}",
    ]


def write(path: Path, sections: list[Section], *, quick: bool, argv: list[str], started: datetime.datetime,
          total_seconds: float) -> None:
    lines = [
        "# storycheck benchmarks",
        "",
        f"Written by `python -m benchmarks {' '.join(argv)}`".rstrip() + f" on {started:%Y-%m-%d %H:%M} UTC, "
        f"{'quick run (short windows, one repetition)' if quick else 'full run'}, {total_seconds:.0f} s in all.",
        "Benchmarks print figures; they are not pass/fail tests. Every comparison runs side by side in the",
        "same run, each client in a fresh process, with the simulator in its own process on loopback.",
        "",
        "## Machine",
        "",
        *machine(),
        "",
        "## Headline figures",
        "",
    ]
    for s in sections:
        lines += [f"- **{s.title}**: " + ("; ".join(s.headline) if s.headline else (s.error or "-"))]
    lines.append("")
    for s in sections:
        lines.append(s.markdown())
    path.write_text("\n".join(lines), encoding="utf-8")


def fmt(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def pct(x: float, digits: int = 1) -> str:
    return f"{100.0 * x:.{digits}f} %"


__all__ = ["Section", "write", "machine", "fmt", "pct"]
if __name__ == "__main__":  # pragma: no cover
    print("\n".join(machine()), file=sys.stdout)
