"""Compare every figure of :data:`isp_tf.figures.table.FIGURES` with README.md and a recomputation."""
from __future__ import annotations

import dataclasses
import fnmatch
import math
import pathlib
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence

from isp_tf.figures.table import FIGURES, Figure

REPO = pathlib.Path(__file__).resolve().parents[2]
README = REPO / "README.md"

OK, DRIFT, NOT_IN_README, SKIPPED, FAILED = "ok", "DRIFT", "NOT IN README", "skipped", "FAILED"


@dataclasses.dataclass
class Row:
    """The verdict on one figure."""

    figure: Figure
    kind: str
    status: str
    measured: Optional[float] = None
    line: Optional[int] = None
    note: str = ""

    @property
    def bad(self) -> bool:
        return self.status in (DRIFT, NOT_IN_README, FAILED)


def _normalised(text: str):
    """``text`` with every whitespace run as one space, and the line of each kept character."""
    chars, lines, line, space = [], [], 1, False
    for ch in text:
        if ch.isspace():
            space = True
            line += ch == "\n"
            continue
        if space and chars:
            chars.append(" ")
            lines.append(line)
        space = False
        chars.append(ch)
        lines.append(line)
    return "".join(chars), lines


def readme_lines(readme_text: str, figures: Iterable[Figure] = FIGURES) -> Dict[str, Optional[int]]:
    """``{figure key: README line where its text starts, or None}`` (whitespace and line breaks ignored)."""
    flat, lines = _normalised(readme_text)
    out = {}
    for f in figures:
        at = flat.find(" ".join(f.text.split()))
        out[f.key] = None if at < 0 else lines[at]
    return out


def within(figure: Figure, measured: float) -> bool:
    """Whether ``measured`` (scaled by ``figure.scale``) is within ``figure.tolerance`` of the stated value."""
    if measured is None or (isinstance(measured, float) and math.isnan(measured)):
        return False
    value = float(measured) * figure.scale
    return abs(value - figure.value) <= figure.tolerance + 1e-9 * max(1.0, abs(figure.value))


def select(figures: Sequence[Figure], only: Sequence[str] = ()) -> List[Figure]:
    """The figures whose key (or group) matches one of the ``only`` patterns (fnmatch, or a prefix)."""
    if not only:
        return list(figures)
    return [f for f in figures if any(fnmatch.fnmatch(name, p) or name.startswith(p)
                                      for p in only for name in (f.key, f.group))]


def check(figures: Sequence[Figure] = FIGURES, *, readme_text: Optional[str] = None,
          groups: Optional[Mapping[str, object]] = None, full: bool = False, repo: pathlib.Path = REPO,
          progress: bool = True, on_group: Optional[Callable[[str], None]] = None,
          debug: bool = False) -> List[Row]:
    """Recompute (or look up) each figure and compare it with its stated value and the README.

    ``groups``: the measurement groups (default :data:`isp_tf.figures.measure.GROUPS`); a group runs
    once, when the first figure needing it comes; ``full``: also run the ``expensive`` groups;
    ``debug``: a group that raises stops the check with its traceback (else its figures are FAILED).
    """
    from tqdm import tqdm

    if groups is None:
        from isp_tf.figures.measure import GROUPS as groups
    if readme_text is None:
        readme_text = (repo / "README.md").read_text()
    where = readme_lines(readme_text, figures)
    results: Dict[str, object] = {}
    rows = []
    bar = tqdm(figures, desc="figures", unit="figure", disable=not progress)
    for f in bar:
        group = groups[f.group]
        kind = group.kind
        line = where[f.key]
        if line is None:
            rows.append(Row(f, kind, NOT_IN_README, line=None,
                            note=f"the README no longer says {f.text!r}: update isp_tf/figures/table.py"))
            continue
        if kind == "test":
            rows.append(_test_row(f, line, repo))
            continue
        if kind == "expensive" and not full:
            rows.append(Row(f, kind, SKIPPED, None, line, "expensive: rerun with --full"))
            continue
        if f.group not in results:
            bar.set_postfix_str(f.group)
            if on_group is not None:
                on_group(f.group)
            try:
                results[f.group] = group.run()
            except Exception as exc:  # noqa: BLE001 - the figure cannot be confirmed: say why
                if debug:
                    raise
                results[f.group] = exc
        result = results[f.group]
        if isinstance(result, Exception):
            first = (str(result).strip().splitlines() or [""])[0]
            rows.append(Row(f, kind, FAILED, None, line, f"{type(result).__name__}: {first}"))
            continue
        if f.field not in result:
            rows.append(Row(f, kind, FAILED, None, line, f"{f.group} gave no {f.field!r}"))
            continue
        measured = float(result[f.field]) if result[f.field] is not None else None
        rows.append(Row(f, kind, OK if within(f, measured) else DRIFT, measured, line,
                        "compared with the committed file, not rerun" if kind == "committed" else ""))
    bar.close()
    return rows


def _test_row(f: Figure, line: int, repo: pathlib.Path) -> Row:
    """A bound a test asserts: the test file must still contain the assertion the table names."""
    path, _, text = f.field.partition("::")
    file = repo / path
    source = file.read_text() if file.is_file() else ""
    if not source:
        return Row(f, "test", DRIFT, None, line, f"{path} is gone: nothing tests this")
    if " ".join(text.split()) not in " ".join(source.split()):
        return Row(f, "test", DRIFT, None, line, f"{path} no longer asserts {text!r}")
    return Row(f, "test", OK, f.tolerance, line, f"{path} asserts {text!r}")


def _fmt(value: Optional[float], figure: Figure) -> str:
    if value is None:
        return "-"
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) and (abs(value) < 1e-3 or abs(value) >= 1e7):
        return f"{value:.3g}"
    return f"{value:,.4f}".rstrip("0").rstrip(".") if value != int(value) else f"{int(value):,}"


def format_rows(rows: Sequence[Row]) -> str:
    """A Markdown table of the verdicts and a summary line."""
    lines = ["| status | figure | stated | recomputed | tolerance | kind | README line | note |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        f = r.figure
        measured = None if r.measured is None else r.measured * (f.scale if r.kind != "test" else 1)
        lines.append(f"| {r.status} | {f.key} | {_fmt(f.value, f)} {f.unit} | {_fmt(measured, f)} | "
                     f"{'bound' if r.kind == 'test' else '+-' + _fmt(f.tolerance, f)} | {r.kind} | "
                     f"{r.line or '-'} | {r.note} |")
    return "\n".join(lines) + "\n\n" + summary(rows)


def summary(rows: Sequence[Row]) -> str:
    count = {s: [r.figure.key for r in rows if r.status == s] for s in (OK, DRIFT, NOT_IN_README, SKIPPED, FAILED)}
    committed = sum(r.kind == "committed" and r.status == OK for r in rows)
    text = (f"{len(rows)} figures: {len(count[OK])} ok ({committed} of them compared with committed results "
            f"files, not rerun), {len(count[SKIPPED])} skipped (expensive: --full reruns them)")
    for status, label in ((DRIFT, "drifted"), (NOT_IN_README, "not in the README"), (FAILED, "not recomputed")):
        if count[status]:
            text += f"; {len(count[status])} {label}: {', '.join(count[status])}"
    return text
