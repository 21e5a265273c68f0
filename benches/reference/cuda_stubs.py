#!/usr/bin/env python3
"""Stand-ins for the CUDA libraries that PyPI's Linux x86_64 torch wheel links.

    python cuda_stubs.py TORCH_DIR

The wheel's libraries name libcudart, libcublas, libcudnn, libnccl, ... as
DT_NEEDED; its metadata would pull several GB of nvidia-* wheels to provide
them. Its CPU kernels (MKL, oneDNN) are all in libtorch_cpu.so, so the wheel is
installed with --no-deps and this script writes, into TORCH_DIR/lib (on the
RPATH of torch's libraries, $ORIGIN), one stub .so per missing library with
its SONAME, its symbol versions and every symbol torch imports from it. A stub
that is ever called returns an error code (100 = "no device" in the CUDA
runtime), so torch.cuda.is_available() is False and every CPU path works
unchanged. Needs gcc, readelf and ldconfig. Used by benches/run.sh and
benches/reference/setup-transformers.sh.
"""
import glob, os, re, subprocess, sys, tempfile

torch_dir = sys.argv[1]
lib_dir = os.path.join(torch_dir, "lib")
sos = [p for p in glob.glob(os.path.join(torch_dir, "**", "*.so*"), recursive=True) if os.path.isfile(p)]
present = {os.path.basename(p) for p in sos}
system_libs = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
# Libraries whose symbols carry no version: recognise torch's imports by prefix.
UNVERSIONED = {"libnccl.so.2": r"nccl", "libcufile.so.0": r"cuFile",
               "libcusparseLt.so.0": r"cusparseLt", "libcuda.so.1": r"cu[A-Z]"}

def readelf(*args):
    return subprocess.run(["readelf", "-W", *args], check=True, capture_output=True, text=True).stdout

missing = {}  # soname -> {version name or None -> {symbol: type}}
for so in sos:
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", readelf("-d", so))
    miss = [n for n in needed if n not in present and n not in system_libs]
    if not miss:
        continue
    version_file, cur = {}, None  # version name -> library that defines it (verneed)
    for line in readelf("-V", so).splitlines():
        m = re.search(r"File: (\S+)", line)
        if m:
            cur = m.group(1)
            continue
        m = re.search(r"Name: (\S+)", line)
        if m and cur:
            version_file[m.group(1)] = cur
    for lib in miss:
        missing.setdefault(lib, {})
    for line in readelf("--dyn-syms", so).splitlines():
        f = line.split()
        if len(f) < 8 or f[6] != "UND" or f[4] != "GLOBAL":
            continue
        name, _, ver = f[7].partition("@")
        if ver:
            lib = version_file.get(ver)
            if lib in miss:
                missing[lib].setdefault(ver, {})[name] = f[3]
        else:
            for lib in miss:
                if lib in UNVERSIONED and re.match(UNVERSIONED[lib], name):
                    missing[lib].setdefault(None, {})[name] = f[3]

MSG = '"CUDA is not installed (CPU-only torch)"'
with tempfile.TemporaryDirectory() as tmp:
    for lib, versions in sorted(missing.items()):
        src, vscript = [f"/* CPU-only stand-in for {lib}: every call fails. */"], []
        for ver, syms in versions.items():
            for name, kind in sorted(syms.items()):
                if kind == "OBJECT":
                    src.append(f"char {name}[256];")
                elif re.search(r"(Error|Status)(String|Name)$", name):
                    src.append(f"const char *{name}(void) {{ return {MSG}; }}")
                else:
                    src.append(f"long {name}(void) {{ return 100; }}")
            if ver:
                vscript.append(ver + " { global: " + " ".join(n + ";" for n in sorted(syms)) + " };")
        c_file = os.path.join(tmp, lib + ".c")
        with open(c_file, "w") as fh:
            fh.write("\n".join(src) + "\n")
        cmd = ["gcc", "-shared", "-fPIC", "-O1", "-w", "-o", os.path.join(lib_dir, lib), c_file, "-Wl,-soname," + lib]
        if vscript:
            map_file = os.path.join(tmp, lib + ".map")
            with open(map_file, "w") as fh:
                fh.write("\n".join(vscript) + "\n")
            cmd.append("-Wl,--version-script=" + map_file)
        subprocess.run(cmd, check=True)
        print(f"  stub {lib}: {sum(len(s) for s in versions.values())} symbols", file=sys.stderr)
