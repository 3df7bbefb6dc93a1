"""The expat extractor (one Python callback per element): the reference the libxml2-based
p4cs.rules.extract.extract_xml is tested against."""

from __future__ import annotations

import pyexpat
from typing import Iterable

from p4cs.rules.model import parse_xml_path


class _Done(Exception):
    pass


def reference_extract_xml(doc: bytes | str, paths: Iterable[str]) -> dict[str, str]:
    """Values of XML tag sequences (canonical `a:1/b/c` text, see model.parse_xml_path).

    A sequence may start at any depth (so `purchase/totalAmount` also finds a purchase inside a
    SOAP body); each step is a child of the previous one; `:n` selects the n-th element of that
    name within its parent (1-based). The value is the text content of the first matching
    element in document order, whitespace-stripped. Parsing stops as soon as every sequence is
    resolved. Namespace prefixes are ignored (local names match).
    """
    specs = [(p, parse_xml_path(p)) for p in dict.fromkeys(paths)]
    if not specs:
        return {}
    results: dict[str, str] = {}
    relevant = {name for _, steps in specs for name, _ in steps}
    first_steps: dict[str, list[tuple[int, int | None]]] = {}
    for pid, (_, steps) in enumerate(specs):
        first_steps.setdefault(steps[0][0], []).append((pid, steps[0][1]))
    n_paths = len(specs)
    pending = [True] * n_paths
    remaining = [n_paths]

    # frame: (child-count dict of relevant names, tuple of (pid, step) partial matches)
    stack: list[tuple[dict, tuple]] = [({}, ())]
    captures: list[list] = []  # [depth, pids, parts] for elements whose text is being read
    empty: tuple = ()
    capturing: set[int] = set()  # paths whose first match is open (nested matches come later)

    p = pyexpat.ParserCreate()
    p.buffer_text = True
    try:
        p.SetParamEntityParsing(pyexpat.XML_PARAM_ENTITY_PARSING_NEVER)
    except AttributeError:  # pragma: no cover - very old expat
        pass

    def chardata(data: str) -> None:
        for c in captures:
            c[2].append(data)

    def start(name: str, attrs) -> None:
        local = name.rpartition(":")[2]
        if local not in relevant:
            stack.append(({}, empty))
            return
        parent = stack[-1]
        counts = parent[0]
        idx = counts.get(local, 0) + 1
        counts[local] = idx
        live = []
        done = []
        for pid, want in first_steps.get(local, empty):
            if pending[pid] and (want is None or want == idx):
                (done if len(specs[pid][1]) == 1 else live).append((pid, 0))
        for pid, k in parent[1]:
            if pending[pid]:
                steps = specs[pid][1]
                nm, want = steps[k + 1]
                if nm == local and (want is None or want == idx):
                    (done if k + 2 == len(steps) else live).append((pid, k + 1))
        stack.append(({}, tuple(live) if live else empty))
        if done:
            pids = [pid for pid, _ in done if pid not in capturing]
            if not pids:
                return
            capturing.update(pids)
            captures.append([len(stack), pids, []])
            p.CharacterDataHandler = chardata

    def end(name: str) -> None:
        depth = len(stack)
        stack.pop()
        if captures and captures[-1][0] == depth:
            _, pids, parts = captures.pop()
            if not captures:
                p.CharacterDataHandler = None
            text = "".join(parts).strip()
            capturing.difference_update(pids)
            for pid in pids:
                if pending[pid]:
                    pending[pid] = False
                    results[specs[pid][0]] = text
                    remaining[0] -= 1
            if remaining[0] == 0:
                raise _Done

    p.StartElementHandler = start
    p.EndElementHandler = end
    try:
        p.Parse(doc, True)
    except _Done:
        pass
    except (pyexpat.ExpatError, ValueError, UnicodeError, LookupError, RecursionError):
        pass  # malformed: what was complete before the error stays, the rest is absent
    return results
