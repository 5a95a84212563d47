"""What the Python suites share: the ok / bad / check counters, the summary that makes the exit status, and a free
port on the loopback."""
import socket
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


def finish():
    print(f"{counts['passed']} passed, {counts['failed']} failed")
    sys.exit(1 if counts["failed"] else 0)
