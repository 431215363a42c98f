#!/usr/bin/env python3
"""wolfSSL ABI check: every wolfSSL function the given objects reference must be marked WOLFSSL_ABI.

Azure Sphere exposes only wolfSSL's WOLFSSL_ABI functions to applications. This lists the undefined symbols
of each object (nm -u), keeps the wolfSSL ones (wolf*, wc_*), and checks each against the set of functions
the installed wolfSSL headers declare with WOLFSSL_ABI. It prints every object and every function checked,
and exits 1 when one is not an ABI function or when nothing was checked at all. --forbid NAME refuses a
function even when it is WOLFSSL_ABI: the Azure Sphere build must not load key files (the DeviceAuth key never
leaves the security subsystem; key loading is the host platform's alone).

Usage: wolfssl_abi_check.py --nm NM --include INCLUDE_DIR [--forbid NAME]... OBJECT...
"""
import argparse
import pathlib
import re
import subprocess
import sys

ABI_DECLARATION = re.compile(r"\bWOLFSSL_ABI\s+WOLFSSL_API\s+[^;(]*?\b(\w+)\s*\(")
WOLFSSL_SYMBOL = re.compile(r"^(wolf\w+|wc_\w+)$")


def abi_functions(include_dir: pathlib.Path) -> set:
    """Names declared with WOLFSSL_ABI in include_dir/wolfssl/**/*.h (comments removed first)."""
    names = set()
    for header in sorted((include_dir / "wolfssl").rglob("*.h")):
        text = header.read_text(errors="replace")
        text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
        text = re.sub(r"//[^\n]*", " ", text)
        names.update(ABI_DECLARATION.findall(text))
    return names


def undefined_wolfssl_symbols(nm: str, obj: str) -> list:
    out = subprocess.run([nm, "-u", obj], check=True, capture_output=True, text=True).stdout
    names = set()
    for line in out.splitlines():
        fields = line.split()
        if fields and WOLFSSL_SYMBOL.match(fields[-1]):
            names.add(fields[-1])
    return sorted(names)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nm", required=True)
    parser.add_argument("--include", required=True, type=pathlib.Path)
    parser.add_argument("--forbid", action="append", default=[], metavar="NAME",
                        help="a wolfSSL function the objects must not reference, ABI or not")
    parser.add_argument("objects", nargs="+")
    args = parser.parse_args()

    abi = abi_functions(args.include)
    if not abi:
        print(f"wolfSSL ABI check: no WOLFSSL_ABI declaration under {args.include}/wolfssl: install libwolfssl-dev")
        return 1
    print(f"wolfSSL ABI check: {len(abi)} WOLFSSL_ABI functions in {args.include}/wolfssl")
    forbidden = set(args.forbid)
    if forbidden:
        print("wolfSSL ABI check: forbidden in this build: " + ", ".join(sorted(forbidden)))
    checked = 0
    refused = []
    banned = []
    for obj in args.objects:
        names = undefined_wolfssl_symbols(args.nm, obj)
        print(f"  {obj}: {len(names)} wolfSSL function(s)")
        for name in names:
            checked += 1
            ok = name in abi
            if name in forbidden:
                print(f"    FORBIDDEN {name}")
                banned.append(f"{name} ({pathlib.Path(obj).name})")
                continue
            print(f"    {'ok     ' if ok else 'NOT ABI'} {name}")
            if not ok:
                refused.append(f"{name} ({pathlib.Path(obj).name})")
    if checked == 0:
        print("wolfSSL ABI check: FAILED: the objects reference no wolfSSL function, so nothing was checked")
        return 1
    if refused:
        print("wolfSSL ABI check: FAILED: not WOLFSSL_ABI (Azure Sphere does not export them): " + ", ".join(refused))
    if banned:
        print("wolfSSL ABI check: FAILED: forbidden in this build (key-file loading belongs to the host platform): "
              + ", ".join(banned))
    if refused or banned:
        return 1
    print(f"wolfSSL ABI check: passed: {checked} reference(s), all WOLFSSL_ABI")
    return 0


if __name__ == "__main__":
    sys.exit(main())
