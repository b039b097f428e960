"""The Python snippets of docs/manager.md, run unmodified against an mproc manager:
tests/test_pydialect.c starts mproc-manager at the address they name (tcp:127.0.0.1:50000, key
b"secret") and runs this.

    docs_snippets.py [DOC]    run each ```python block that connects to a manager (calls
                              .connect()), in order, each in a namespace of its own under a 60 s
                              alarm; the other blocks are compiled only. Prints "RAN n", exits
                              non-zero (with the traceback) on the first failure.
"""
import pathlib
import re
import signal
import sys


def main():
    doc = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else
                       pathlib.Path(__file__).resolve().parents[2] / "docs" / "manager.md")
    blocks = re.findall(r"^```python\n(.*?)^```", doc.read_text(), re.S | re.M)
    assert blocks, f"no python blocks in {doc}"
    ran = 0
    for i, code in enumerate(blocks):
        compiled = compile(code, f"{doc.name} python block {i + 1}", "exec")
        if ".connect()" not in code:
            continue
        signal.alarm(60)
        exec(compiled, {"__name__": "__main__"})
        signal.alarm(0)
        ran += 1
    print(f"RAN {ran}", flush=True)


if __name__ == "__main__":
    main()
