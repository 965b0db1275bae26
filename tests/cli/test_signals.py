"""SIGTERM like SIGINT: clean up, one line, exit 143 / 130; SIGKILL leftovers removed next time."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sreels.cli import main


def _start(out: Path, rows=1500):
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.Popen([sys.executable, "-m", "sreels.cli", "simulate", "--out", str(out), "--rows", str(rows),
                             "--seed", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_for_temp(out: Path, proc, timeout=120.0):
    """Wait until the run is writing (its temporary folder exists)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if list(out.parent.glob(f".{out.name}.sreels-tmp-*")):
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended before writing: {proc.communicate()}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no temporary folder appeared")


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_during_the_write_cleans_up_with_one_line(tmp_path, sig, code):
    out = tmp_path / "out"
    proc = _start(out)
    _wait_for_temp(out, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1 and f"interrupted by {signal.Signals(sig).name}" in lines[0], err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_sigkill_leftover_is_removed_by_the_next_run(tmp_path, capsys):
    out = tmp_path / "out"
    proc = _start(out)
    _wait_for_temp(out, proc)
    proc.kill()
    proc.wait(timeout=60)
    left = list(tmp_path.glob(".out.sreels-tmp-*"))
    assert left and not out.exists()
    assert main(["simulate", "--out", str(out), "--rows", "20", "--seed", "1"]) == 0
    assert "removed" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_signal_while_the_temporary_folder_is_created_leaves_nothing(tmp_path, monkeypatch):
    """The race the subprocess tests hit now and then: SIGTERM right after the temporary folder exists
    but before its name is known to the clean-up.  It is recorded there and raised where the folder
    is removed."""
    import tempfile

    from sreels import signals
    from sreels.outdir import output_directory

    real = tempfile.mkdtemp

    def mkdtemp_then_signal(*a, **k):
        d = real(*a, **k)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)  # the Python-level handler runs here, inside mkdtemp's caller
        return d

    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signals.install()
    try:
        monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp_then_signal)
        with pytest.raises(signals.Interrupted):
            with output_directory(tmp_path / "out"):
                pytest.fail("the block must not run after the signal")
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        signals._pending = None  # this process goes on testing
    assert list(tmp_path.iterdir()) == []


# ``sreels plan`` forks two children at its start (the fast path's prediction, plan.png): a signal or an error in
# the plan ends them; they must end silently, the parent's one line being the only output

def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            kids.append(int(stat.parent.name))
    return kids


def _plan(args, **kw):
    env = dict(os.environ, MPLBACKEND="Agg")
    env.pop("SREELS_DEBUG", None)
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, **kw)


@pytest.mark.skipif(not Path("/proc/self/stat").exists() or sys.platform != "linux",
                    reason="finds the plan's forked children in /proc (Linux)")
@pytest.mark.parametrize("sig, group", [(signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGINT, True)],
                         ids=["SIGTERM", "SIGINT", "SIGINT-to-the-group"])
def test_plan_signal_after_the_fork_is_one_line(tmp_path, sig, group):
    """The parent ends its children (SIGTERM from terminate) or the signal reaches them too (Ctrl-C in a terminal
    goes to the process group): no child's traceback, one line, exit 128 + signal, nothing left."""
    out = tmp_path / "plan"
    proc = _plan(["-m", "sreels.cli", "plan", "--out", str(out)], start_new_session=True)
    t0 = time.time()
    while len(_children(proc.pid)) < 2:
        if proc.poll() is not None:
            pytest.fail(f"the plan ended before forking its children: {proc.communicate()}")
        if time.time() - t0 > 120:
            proc.kill()
            pytest.fail("the plan forked no children")
        time.sleep(0.02)
    time.sleep(0.2)   # the children are importing (lmfit, matplotlib)
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err and "ForkProcess" not in err, err
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert lines == [f"sreels plan: interrupted by {signal.Signals(sig).name}; no partial output left"], err
    assert list(tmp_path.iterdir()) == []


def test_plan_error_after_the_fork_is_one_line(tmp_path):
    """An error in the plan's own process while its children import: the parent's one line only (exit 1)."""
    out = tmp_path / "plan"
    code = ("import sys\n"
            "import sreels.plan.planner as p\n"
            "def boom(*a, **k):\n"
            "    raise ValueError('boom in the joint Jacobian')\n"
            "p.joint_jacobian = boom\n"
            "from sreels.cli import main\n"
            f"sys.exit(main(['plan', '--out', {str(out)!r}]))\n")
    proc = _plan(["-c", code])
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert "Traceback" not in err and "ForkProcess" not in err, err
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1 and "internal error: ValueError: boom in the joint Jacobian" in lines[0], err
    assert list(tmp_path.iterdir()) == []


def _send_big_answer(conn):
    time.sleep(0.5)
    conn.send((True, b"x" * (4 << 20)))   # more than a pipe holds: the child blocks until it is read


def test_plan_child_is_ended_when_a_signal_interrupts_the_wait_for_its_answer():
    """SIGTERM while the plan waits for a child's answer (plan.png's bytes): the clean-up ends the child, it does
    not wait for it to finish sending into a pipe nobody reads (it waited until the child was killed)."""
    import threading

    from sreels import signals
    from sreels.plan import planner

    ctx = planner._fork_context()
    if ctx is None:
        pytest.skip("no fork start method here: the plan's children are a thread")

    class Job(planner._ForkedJob):
        what = "test's"

    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signals.install()
    try:
        job = Job(ctx, _send_big_answer)
        rescue = threading.Timer(30.0, lambda: job._proc.kill())   # the old behaviour: end the test, not hang
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
        rescue.start()
        t0 = time.time()
        with pytest.raises(signals.Interrupted):
            try:
                job._recv("the answer")
            finally:
                job.close()
        rescue.cancel()
        took = time.time() - t0
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        signals._pending = None
    assert took < 10, f"the clean-up waited {took:.1f} s for the child"


def _sigterm_blocked_forever(conn):
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})   # as a child stuck before it unblocks SIGTERM
    time.sleep(120)


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX signal masks")
def test_a_forked_child_that_cannot_take_sigterm_is_killed(monkeypatch):
    """A plan's forked child whose SIGTERM stays blocked (forked while another thread held a lock, it can stop before
    it unblocks the signal) is killed after CHILD_EXIT_S: the parent does not wait for it for ever."""
    import multiprocessing

    from sreels.plan import planner

    monkeypatch.setattr(planner, "CHILD_EXIT_S", 0.5)
    job = planner._ForkedJob(multiprocessing.get_context("fork"), _sigterm_blocked_forever)
    pid = job._proc.pid
    time.sleep(0.3)
    t0 = time.monotonic()
    job.close()   # (the child sleeps 120 s: only its kill ends it sooner)
    assert time.monotonic() - t0 < 10
    with pytest.raises(ProcessLookupError):   # ended and reaped
        os.kill(pid, 0)
