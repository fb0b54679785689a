"""wrk as bench/api.py drives it: one load thread, a Lua script per request shape, and
the figures read from the script's `done` hook (JSON on wrk's last line).

wrk runs with `-t1`: one thread, so it takes at most one core from the servers it
measures, however many connections it holds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

INSTALL = "apt-get install wrk  (the Debian/Ubuntu package `wrk`)"
TIMEOUT = "30s"  # a slower answer counts as an error, not as a latency

# Prints the run's figures as one JSON line; latencies are in microseconds.
DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\n{"requests": %d, "duration_us": %d, "status_errors": %d, "socket_errors": %d, '
    .. '"p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def find() -> str | None:
    """wrk's path, or None when it is not installed."""
    return shutil.which("wrk")


def version(path: str) -> str:
    """wrk's version line (`wrk -v` prints it and exits non-zero)."""
    run = subprocess.run([path, "-v"], capture_output=True, text=True, check=False)
    return (run.stdout + run.stderr).strip().splitlines()[0]


@dataclass(frozen=True)
class Result:
    """One wrk run: requests per second, latency percentiles in seconds, failures."""

    requests: int
    seconds: float
    p50_s: float
    p99_s: float
    status_errors: int  # answers with a status of 400 or more
    socket_errors: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def lua_string(text: str) -> str:
    """`text` as a Lua string literal."""
    return json.dumps(text)  # a JSON string is a valid Lua string for this ASCII text


def script(
    folder: Path,
    name: str,
    headers: dict[str, str],
    body: str | None = None,
    ids: Path | None = None,
    path_prefix: str = "",
    query: str = "",
) -> Path:
    """Write a wrk Lua script: a POST of `body`, a GET of `path_prefix` + a random line
    of the `ids` file + `query`, or (neither) a plain GET of the URL; with `headers`."""
    lines = [f"wrk.headers[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items()]
    if body is not None:
        lines += [
            'wrk.method = "POST"',
            "wrk.headers['Content-Type'] = 'application/json'",
            f"wrk.body = {lua_string(body)}",
        ]
    if ids is not None:
        lines += [
            "local ids = {}",
            f"for line in io.lines({lua_string(str(ids))}) do ids[#ids + 1] = line end",
            "math.randomseed(os.time())",
            "request = function()",
            f"  local path = {lua_string(path_prefix)} .. ids[math.random(#ids)] .. "
            f"{lua_string(query)}",
            "  return wrk.format(nil, path)",
            "end",
        ]
    path = folder / f"{name}.lua"
    path.write_text("\n".join(lines) + "\n" + DONE)
    return path


def run(wrk: str, url: str, lua: Path, connections: int, seconds: int) -> Result:
    """Run wrk (`-t1`) against `url` for `seconds` with `connections` open."""
    done = subprocess.run(
        [
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            f"--timeout={TIMEOUT}",
            "-s",
            str(lua),
            url,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=seconds + 120,
    )
    last = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not last:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}{done.stderr}")
    figures = json.loads(last[-1])
    return Result(
        requests=figures["requests"],
        seconds=figures["duration_us"] / 1e6,
        p50_s=figures["p50_us"] / 1e6,
        p99_s=figures["p99_us"] / 1e6,
        status_errors=figures["status_errors"],
        socket_errors=figures["socket_errors"],
    )
