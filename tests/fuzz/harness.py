"""The fuzz harness: the worker process (restarted after a crash or timeout) and the mutations."""
from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


class Worker:
    """A long-lived ``worker.py``; :meth:`run` returns its report, or ``crash`` / ``timeout``."""

    def __init__(self, timeout: float = 10.0):
        self.timeout, self.proc, self.restarts = timeout, None, 0

    def _start(self):
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen([sys.executable, str(HERE / "worker.py")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT, env=env,
                                     text=True, bufsize=1)
        ready = self._line(120.0)
        if not ready or not json.loads(ready).get("ready"):
            raise RuntimeError("the fuzz worker did not start")

    def _line(self, timeout):
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            if not sel.select(timeout):
                return None                          # timeout
            return self.proc.stdout.readline()       # "" at EOF: the worker died
        finally:
            sel.close()

    def _kill(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
            self.restarts += 1

    def run(self, fmt: str, path: str) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            self._start()
        try:
            self.proc.stdin.write(json.dumps({"fmt": fmt, "path": path}) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            self._kill()
            return {"outcome": "crash", "minicnn": False, "message": "worker died"}
        line = self._line(self.timeout)
        if line is None:
            self._kill()
            return {"outcome": "timeout", "minicnn": False, "message": f"no answer in {self.timeout} s"}
        if line == "":
            rc = self.proc.wait()
            self.proc = None
            self.restarts += 1
            return {"outcome": "crash", "minicnn": False, "message": f"exit code {rc}"}
        return json.loads(line)

    def close(self):
        if self.proc is not None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


# ------------------------------------------------------------------------------------ mutations
EXTREMES = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 10 ** 12, 2 ** 63 - 1, 2 ** 64 - 1)
TEXT_NUMBERS = (b"0", b"-1", b"1000000000000", b"99999999999999999999", b"1e308", b"nan", b"2147483648")


def apply_ops(data: bytes, ops, hotspots) -> bytes:
    """Apply byte-level mutations; ``hotspots`` are offsets of header fields (sizes, counts, digits)."""
    b = bytearray(data)
    for op in ops:
        kind = op[0]
        n = len(b)
        if kind == "flip" and n:
            pos, bit = op[1] % n, op[2]
            b[pos] ^= 1 << bit
        elif kind == "truncate":
            del b[op[1] % (n + 1):]
        elif kind == "insert":
            pos = op[1] % (n + 1)
            b[pos:pos] = op[2]
        elif kind == "delete" and n:
            pos = op[1] % n
            del b[pos:pos + op[2]]
        elif kind == "overwrite" and n:
            pos = op[1] % n
            b[pos:pos + len(op[2])] = op[2]
        elif kind == "field" and hotspots:
            pos, width, value = hotspots[op[1] % len(hotspots)], op[2], EXTREMES[op[3] % len(EXTREMES)]
            if pos < len(b):
                b[pos:pos + width] = (value % (1 << (8 * width))).to_bytes(width, "little")
        elif kind == "number" and hotspots:
            pos = hotspots[op[1] % len(hotspots)]
            if pos < len(b) and chr(b[pos]).isdigit():
                end = pos
                while end < len(b) and chr(b[end]).isdigit():
                    end += 1
                b[pos:end] = TEXT_NUMBERS[op[2] % len(TEXT_NUMBERS)]
    return bytes(b)


def hotspots(data: bytes) -> list[int]:
    """Offsets worth editing: zip size/offset/count fields, digit runs (JSON / npy headers), the first bytes."""
    spots = list(range(0, min(len(data), 64), 4))
    for sig, fields in ((b"PK\x03\x04", (14, 18, 22, 26, 28)), (b"PK\x01\x02", (16, 20, 24, 28, 30, 42)),
                        (b"PK\x05\x06", (8, 10, 12, 16))):
        start = 0
        while (i := data.find(sig, start)) >= 0 and len(spots) < 4000:
            spots.extend(i + f for f in fields)
            start = i + 1
    i = 0
    while i < len(data) and len(spots) < 8000:
        if chr(data[i]).isdigit() and (i == 0 or not chr(data[i - 1]).isdigit()):
            spots.append(i)
        i += 1
    return sorted(set(spots))
