#!/usr/bin/env python3
"""Proves that scripts/install-deps.sh installs everything the build uses.

Reads strace logs of configure and build (scripts/build.sh with NUANCE_TRACE_DEPS=FILE writes FILE and FILE.build),
maps every file outside the repository that they opened or executed to the Debian package that owns it (dpkg's
file lists, as `dpkg -S` does), and fails unless each package is installed by install-deps.sh, is a dependency of
one it installs (Depends/Pre-Depends, recursively, as `apt-get install --no-install-recommends` pulls them in), or
is part of every Debian system (Essential: yes, or Priority: required).  A file that no package owns fails too
(/usr/local, /opt, a home folder: a hand-installed dependency), except machine state under /etc, /var, /tmp, /proc,
/sys, /dev, /run and ccache's own cache and configuration.

Usage: check_deps.py --packages LIST_FILE --repo DIR TRACE [TRACE ...]
"""
import argparse
import glob
import os
import re
import sys

# Files no package owns that any machine has or that the build's own tools keep (caches, configs, generated system
# files). Everything else outside the repository must come from a package.
UNOWNED_OK = ("/etc/", "/var/", "/tmp/", "/proc/", "/sys/", "/dev/", "/run/")

# Files programs read only when they happen to exist (glibc's locale alias table, locale data): never a build need;
# ld reads every file of /etc/ld.so.conf.d, whichever packages put them there.
OPTIONAL = ("/usr/share/locale/", "/usr/lib/locale/", "/usr/share/zoneinfo/", "/etc/ld.so.conf.d/")

PATH_RE = re.compile(r'^\d+\s+(?:openat2?|open|execve|access)\((?:AT_FDCWD, |\d+, )?"((?:[^"\\]|\\.)*)"')


def read_status(path="/var/lib/dpkg/status"):
    """Installed packages: name -> {depends: [[alternatives]], provides: [...], essential, priority}."""
    pkgs = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    for block in text.split("\n\n"):
        fields, key = {}, None
        for line in block.splitlines():
            if line.startswith((" ", "\t")) and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, _, val = line.partition(":")
                fields[key] = val.strip()
        name = fields.get("Package")
        if not name or "install ok installed" not in fields.get("Status", ""):
            continue

        def rel(field):
            out = []
            for group in fields.get(field, "").split(","):
                alts = [re.sub(r"\s*\(.*?\)|:\S+|\s*\[.*?\]|\s*<.*?>", "", a).strip() for a in group.split("|")]
                alts = [a for a in alts if a]
                if alts:
                    out.append(alts)
            return out

        pkgs[name] = {
            "depends": rel("Depends") + rel("Pre-Depends"),
            "provides": [a[0] for a in rel("Provides")],
            "essential": fields.get("Essential", "") == "yes",
            "priority": fields.get("Priority", ""),
        }
    return pkgs


def closure(roots, pkgs):
    providers = {}
    for name, p in pkgs.items():
        for v in p["provides"]:
            providers.setdefault(v, []).append(name)
    seen, todo, missing = set(), list(roots), []
    while todo:
        name = todo.pop()
        cands = ([name] if name in pkgs else []) + providers.get(name, [])
        if not cands:
            missing.append(name)
            continue
        for c in cands:
            if c in seen:
                continue
            seen.add(c)
            for alts in pkgs[c]["depends"]:
                # An alternative group is satisfied by whichever of its members is installed.
                installed = [a for a in alts if a in pkgs or a in providers]
                todo.extend(installed[:1] if installed else alts[:1])
    return seen, missing


def file_owners():
    owners = {}
    for lst in glob.glob("/var/lib/dpkg/info/*.list"):
        pkg = os.path.basename(lst)[:-5].split(":")[0]
        with open(lst, encoding="utf-8", errors="replace") as f:
            for line in f:
                owners.setdefault(line.rstrip("\n"), pkg)
    # dpkg-divert moves files; the diverted path belongs to the diverting package's file list already.
    return owners


def owner_of(path, owners):
    cands = [path, os.path.normpath(path)]
    for p in list(cands):
        # merged /usr: a file dpkg lists as /lib/x is opened as /usr/lib/x and vice versa.
        if p.startswith("/usr/"):
            cands.append(p[4:])
        else:
            cands.append("/usr" + p)
    # Follow links last: a -dev package's libfoo.so link is what the linker asked for.
    real = os.path.realpath(path)
    cands += [real, real[4:] if real.startswith("/usr/") else "/usr" + real]
    for c in cands:
        if c in owners:
            return owners[c]
    return None


def traced_paths(files):
    paths = set()
    for fn in files:
        with open(fn, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = PATH_RE.match(line)
                if m and m.group(1).startswith("/"):
                    paths.add(m.group(1).encode().decode("unicode_escape", errors="replace"))
    return paths


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--packages", required=True, help="file with the packages install-deps.sh installs, one a line")
    ap.add_argument("--repo", required=True)
    ap.add_argument("--machine-state", default=",".join(UNOWNED_OK),
                    help="comma-separated prefixes whose unowned files are machine state, not dependencies")
    ap.add_argument("traces", nargs="+")
    a = ap.parse_args()

    repo = os.path.realpath(a.repo)
    home = os.path.expanduser("~")
    own_dirs = [repo + "/", os.path.realpath(os.path.join(home, ".cache", "ccache")) + "/",
                os.path.realpath(os.path.join(home, ".config", "ccache")) + "/"]
    if os.environ.get("CCACHE_DIR"):
        own_dirs.append(os.path.realpath(os.environ["CCACHE_DIR"]) + "/")

    state = tuple(x for x in a.machine_state.split(",") if x)
    pkgs = read_status()
    with open(a.packages) as f:
        wanted = [l.strip() for l in f if l.strip() and not l.startswith("#")]
    base = [n for n, p in pkgs.items() if p["essential"] or p["priority"] == "required"]
    allowed, missing = closure(wanted + base, pkgs)
    not_installed = [w for w in wanted if w in missing]
    if not_installed:
        print("check-deps: install-deps.sh names packages that are not installed: " + ", ".join(not_installed))
        return 1

    owners = file_owners()
    by_pkg, unowned, checked = {}, [], 0
    for p in sorted(traced_paths(a.traces)):
        rp = os.path.realpath(p)
        if any(p.startswith(d) or rp.startswith(d) for d in own_dirs):
            continue
        if not os.path.isfile(p) or p.startswith(OPTIONAL):  # directories (many owners), pipes, optional files
            continue
        checked += 1
        pkg = owner_of(p, owners)
        if pkg is None:
            if not (p.startswith(state) or rp.startswith(state)):
                unowned.append(p)
            continue
        if pkg not in allowed:
            by_pkg.setdefault(pkg, []).append(p)

    print(f"check-deps: {checked} files outside the repository read by configure and build; "
          f"{len(allowed)} packages allowed ({len(wanted)} named by install-deps.sh, their dependencies, "
          f"and the essential set)")
    rc = 0
    if by_pkg:
        rc = 1
        print("check-deps: FAIL: the build used packages that scripts/install-deps.sh does not install "
              "(add them, or a package that depends on them):")
        for pkg, files in sorted(by_pkg.items()):
            shown = ", ".join(files[:3]) + (f" (+{len(files) - 3} more)" if len(files) > 3 else "")
            print(f"  {pkg}: {shown}")
    if unowned:
        rc = 1
        print("check-deps: FAIL: the build used files that no Debian package owns (hand-installed?):")
        for p in unowned[:20]:
            print(f"  {p}")
        if len(unowned) > 20:
            print(f"  (+{len(unowned) - 20} more)")
    if rc == 0:
        print("check-deps: OK: every file comes from a package install-deps.sh installs")
    return rc


if __name__ == "__main__":
    sys.exit(main())
