"""What the Python suites share: the ok / bad / check counters, the summary that makes the exit status, a free
port on the loopback, the openai client, and a server process's memory and its stop."""
import signal
import socket
import subprocess
import sys

counts = {"passed": 0, "failed": 0}


def ok(name):
    counts["passed"] += 1
    print("ok  ", name, flush=True)


def bad(name, why=""):
    counts["failed"] += 1
    print("FAIL", name, why, flush=True)


def check(cond, name, why=""):
    (ok if cond else bad)(name, *([why] if not cond else []))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def need_openai(suite):
    """The official client, or the suite ends saying how to get it."""
    try:
        import openai
        return openai
    except ImportError:
        print(f"{suite} needs the openai package (PyPI): bash tools/setup.sh installs it into .venv")
        sys.exit(1)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))


def stop(proc, grace=60):
    """SIGTERM, then the exit status (killed after grace seconds)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.returncode


def finish():
    print(f"{counts['passed']} passed, {counts['failed']} failed")
    sys.exit(1 if counts["failed"] else 0)
