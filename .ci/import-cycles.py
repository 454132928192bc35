#!/usr/bin/env python3
"""Fails if the modules of src/ import each other in a cycle.

Two levels are checked:
  * top-level modules (src/X.rs or src/X/): an edge A -> B for every `crate::B` path in A's files;
  * sibling files inside one folder (src/X/a.rs -> src/X/b.rs for `super::b` paths), leaving
    out the folder's mod.rs, which declares and re-exports its children by design.
Prints each cycle it finds and exits 1; prints the module graph and exits 0 otherwise.
"""
import pathlib, re, sys

src = pathlib.Path(__file__).resolve().parent.parent / "src"
top = {}  # module -> set of modules it uses
siblings = {}  # folder -> {file -> set of sibling files}

def strip_comments(text):
    return "\n".join(l.split("//", 1)[0] for l in text.splitlines())

def use_paths(text, root):
    """Names X in `root::X` paths, also inside grouped imports like `root::{X, Y::Z}`."""
    names = set()
    for m in re.finditer(root + r"::(\{[^;]*?\}|[A-Za-z_]\w*)", text, re.S):
        part = m.group(1)
        if part.startswith("{"):
            depth, item, items = 0, "", []
            for ch in part[1:-1]:
                if ch == "{": depth += 1
                if ch == "}": depth -= 1
                if ch == "," and depth == 0:
                    items.append(item); item = ""
                else:
                    item += ch
            items.append(item)
            names.update(i.strip().split("::")[0] for i in items if i.strip())
        else:
            names.add(part)
    return names

# Names the crate root re-exports (`pub use thread_pool::{ThreadPool, ...}`), so that a path like
# `crate::ThreadPool` counts as a use of its module.
reexported = {}
lib = strip_comments((src / "lib.rs").read_text())
for m in re.finditer(r"pub use (\w+)::([^;]*);", lib, re.S):
    if m.group(1) in ("crate", "self", "super", "inventory"):
        continue
    for name in re.findall(r"\b([A-Za-z_]\w*)\b", m.group(2)):
        reexported.setdefault(name, m.group(1))

for path in sorted(src.rglob("*.rs")):
    rel = path.relative_to(src)
    if rel.name == "lib.rs" and len(rel.parts) == 1:
        continue
    module = rel.parts[0].removesuffix(".rs")
    text = strip_comments(path.read_text())
    named = use_paths(text, r"(?<!\$)\bcrate")  # `$crate::` in a macro body expands in the user's crate
    deps = {reexported.get(n, n) for n in named}
    deps = {n for n in deps if (src / f"{n}.rs").exists() or (src / n).is_dir()}
    top.setdefault(module, set()).update(deps - {module})
    if len(rel.parts) >= 2 and rel.name != "mod.rs":
        folder = str(rel.parent)
        me = rel.name.removesuffix(".rs")
        sib = {n for n in use_paths(text, r"\bsuper") if (path.parent / f"{n}.rs").exists() and n != me}
        siblings.setdefault(folder, {}).setdefault(me, set()).update(sib)

def cycles(graph):
    found, state, stack = [], {}, []
    def visit(n):
        state[n] = 1; stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                found.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m)
        stack.pop(); state[n] = 2
    for n in sorted(graph):
        if n not in state:
            visit(n)
    return found

bad = [("src/", c) for c in cycles(top)]
for folder, graph in sorted(siblings.items()):
    bad += [(f"src/{folder}/", c) for c in cycles(graph)]
if bad:
    for where, c in bad:
        print(f"import cycle in {where}: {' -> '.join(c)}")
    sys.exit(1)
for m in sorted(top):
    print(f"{m:>13} -> {', '.join(sorted(top[m])) or '(nothing)'}")
print("no import cycle")
