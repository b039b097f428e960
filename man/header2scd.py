#!/usr/bin/env python3
"""Turn a public header (include/mproc/X.h) into the scdoc source of its section 3 page, mproc_X(3).

The header comments are the one source of the reference pages: the page's NAME lists every function
the header declares (each gets an alias page linking to this one), its SYNOPSIS the prototypes, its
DESCRIPTION the header's opening comment and then, in header order, each declaration block with the
comment written above it. A "---- Title ----" comment starts a subsection.

  header2scd.py --page HEADER            print the page name (mproc_X)
  header2scd.py --functions HEADER...    print "page function" for every function declared
  header2scd.py --scd VERSION HEADER     print the scdoc source of the page
  header2scd.py --build SCDOC VERSION OUTDIR HEADER
      render the page into OUTDIR/man3/mproc_X.3 with scdoc and make OUTDIR/man3/FUNCTION.3 a
      link to it for every function (links of functions no longer declared are removed)
  header2scd.py --render SCDOC VERSION OUT SOURCE.scd
      render a hand-written page (@VERSION@ replaced)
"""
import os
import re
import subprocess
import sys
from pathlib import Path

FUNC = re.compile(r"\b(mproc_[a-z0-9_]+)\s*\(")
SECTION = re.compile(r"^-{2,}\s*(.*?)\s*-*$")


def page_name(header):
    return "mproc_" + Path(header).stem


def split_blocks(text):
    """The header between its guard and extern "C" lines, as ('comment', lines) and ('code', lines)
    blocks. A comment is a block only when it starts a line; trailing comments stay in the code."""
    lines = text.splitlines()
    body, skip = [], 0
    for ln in lines:
        s = ln.strip()
        if s.startswith("#ifndef MPROC_") and s.endswith("_H") or s.startswith("#define MPROC_") and s.endswith("_H"):
            continue
        if s.startswith("#include"):
            continue
        if s == "#ifdef __cplusplus":
            skip = 1
            continue
        if skip:
            if s == "#endif":
                skip = 0
            continue
        body.append(ln)
    while body and body[-1].strip() == "#endif":
        body.pop()
    blocks, i = [], 0
    while i < len(body):
        ln = body[i]
        if ln.startswith("/*"):
            com = [ln]
            while "*/" not in com[-1] and i + 1 < len(body):
                i += 1
                com.append(body[i])
            blocks.append(("comment", com))
        elif ln.strip():
            if not blocks or blocks[-1][0] != "code":
                blocks.append(("code", []))
            blocks[-1][1].append(ln)
        elif blocks and blocks[-1][0] == "code":
            blocks.append(("blank", []))
        i += 1
    return blocks


def comment_lines(com):
    """The text of a /* ... */ comment, one entry a line, the frame removed, indentation kept."""
    text = "\n".join(com)
    text = text.strip()
    assert text.startswith("/*") and text.endswith("*/"), text
    text = text[2:-2]
    out = []
    for ln in text.split("\n"):
        ln = re.sub(r"^\s*\* ?", "", ln) if re.match(r"^\s*\*", ln) else ln.strip()
        out.append(ln.rstrip())
    while out and not out[0].strip():
        out.pop(0)
    while out and not out[-1].strip():
        out.pop()
    if out:
        out[0] = out[0].lstrip()
    return out


def strip_comments(code):
    return re.sub(r"/\*.*?\*/", " ", code, flags=re.S)


def prototypes(code_lines):
    """(name, one-line declaration) for each function a code block declares."""
    code = strip_comments("\n".join(ln for ln in code_lines if not ln.lstrip().startswith("#")))
    out, depth, cur = [], 0, ""
    for ch in code:
        cur += ch
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth = max(depth - 1, 0)
        elif ch == ";" and depth == 0:
            stmt = " ".join(cur.split())
            cur = ""
            if stmt.startswith("typedef"):
                continue
            m = FUNC.search(stmt)
            if m:
                out.append((m.group(1), stmt))
    return out


def functions(header):
    text = Path(header).read_text()
    names = []
    for kind, lines in split_blocks(text):
        if kind == "code":
            names += [n for n, _ in prototypes(lines)]
    return names


def esc(s):
    """Text for scdoc: its markup characters literal, `code` in bold."""
    s = s.replace("\\", "\\\\").replace("*", "\\*").replace("_", "\\_")
    s = re.sub(r"`([^`]+)`", r"*\1*", s)
    if s[:1] in "#-.;|:[]+":
        s = "\\" + s
    return s


def lit(s):
    return s.replace("\\", "\\\\")


def render_text(lines, out):
    """Comment text: paragraphs joined into one line each; lines indented by two spaces or more
    (tables in the comments) kept as literal blocks."""
    para, litblock = [], []

    def flush_para():
        if para:
            out.append(esc(" ".join(p.strip() for p in para)))
            out.append("")
            para.clear()

    def flush_lit():
        if litblock:
            out.append("```")
            out.extend(lit(x) for x in litblock)
            out.append("```")
            out.append("")
            litblock.clear()

    for ln in lines + [""]:
        if not ln.strip():
            flush_para()
            flush_lit()
        elif ln.startswith("  "):
            flush_para()
            litblock.append(ln)
        else:
            flush_lit()
            para.append(ln)


def render_code(lines, out):
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    out.append("```")
    out.extend(lit(x) for x in lines)
    out.append("```")
    out.append("")


def scd(version, header):
    text = Path(header).read_text()
    blocks = split_blocks(text)
    page = page_name(header)
    head = comment_lines(blocks[0][1]) if blocks and blocks[0][0] == "comment" else []
    if blocks and blocks[0][0] == "comment":
        blocks = blocks[1:]
    n = head.index("") if "" in head else len(head)
    first = re.sub(r"^mproc:\s*", "", " ".join(x.strip() for x in head[:n]))
    m = re.match(r"(.*?)\.(\s|$)", first)
    title = m.group(1) if m else first
    rest = first[len(m.group(0)):].strip() if m else ""
    intro = ([rest] if rest else []) + head[n:]
    names, protos = [], []
    for kind, lines in blocks:
        if kind == "code":
            for n, p in prototypes(lines):
                names.append(n)
                protos.append(p)
    others = sorted(page_name(h) for h in Path(header).parent.glob("*.h") if page_name(h) != page)
    out = [f'{page}(3) "mproc {version}" "mproc manual"', ""]
    out += ["# NAME", "", esc(", ".join(names) + " - " + title), ""]
    out += ["# LIBRARY", "", "mproc (*libmproc*, *-lmproc*; *pkg-config --cflags --libs mproc*)", ""]
    out += ["# SYNOPSIS", "", "```", "#include <mproc.h>", ""] + [lit(p) for p in protos] + ["```", ""]
    out += ["# DESCRIPTION", ""]
    render_text(intro, out)
    pending = []  # a comment waiting for the declarations it describes
    for kind, lines in blocks + [("end", [])]:
        if kind == "comment":
            c = comment_lines(lines)
            sm = SECTION.match(" ".join(c)) if len(c) == 1 else None
            if sm:
                if pending:
                    render_text(pending, out)
                    pending = []
                out += [f"## {esc(sm.group(1))}", ""]
                continue
            if pending:
                render_text(pending, out)
            pending = c
        elif kind == "code":
            render_code(lines, out)
            if pending:
                render_text(pending, out)
                pending = []
        elif kind == "end" and pending:
            render_text(pending, out)
    out += ["# SEE ALSO", "", esc(", ".join(f"{o}(3)" for o in others + []) + ", mproc(7)"), ""]
    return "\n".join(out)


def run_scdoc(scdoc, source, out):
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        subprocess.run([scdoc], input=source.encode(), stdout=f, check=True)
    os.replace(tmp, out)


def build(scdoc, version, outdir, header):
    man3 = Path(outdir) / "man3"
    man3.mkdir(parents=True, exist_ok=True)
    page = page_name(header)
    run_scdoc(scdoc, scd(version, header), str(man3 / f"{page}.3"))
    for old in man3.iterdir():
        if old.is_symlink() and os.readlink(old) == f"{page}.3":
            old.unlink()
    for name in functions(header):
        link = man3 / f"{name}.3"
        if name != page:
            if link.is_symlink() or link.exists():
                link.unlink()  # the function moved here from another header
            link.symlink_to(f"{page}.3")


def main(argv):
    if len(argv) == 3 and argv[1] == "--page":
        print(page_name(argv[2]))
    elif len(argv) >= 3 and argv[1] == "--functions":
        for h in argv[2:]:
            for n in functions(h):
                print(page_name(h), n)
    elif len(argv) == 4 and argv[1] == "--scd":
        sys.stdout.write(scd(argv[2], argv[3]))
    elif len(argv) == 6 and argv[1] == "--build":
        build(*argv[2:])
    elif len(argv) == 6 and argv[1] == "--render":
        Path(argv[4]).parent.mkdir(parents=True, exist_ok=True)
        run_scdoc(argv[2], Path(argv[5]).read_text().replace("@VERSION@", argv[3]), argv[4])
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
