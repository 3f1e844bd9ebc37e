"""Hostile input and faults, one row per case: every case ends in a correct result or one clear line before any
work (never a traceback), and leaves no process, half-written file or stale lock behind.

``CASES`` is the table: (case, input, expected outcome, driver). Each driver builds its input in ``tmp_path``
(malformed measurement files are cut from a real one), runs it and asserts the outcome."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from conftest import MAIN_20NS_FILE
from ferrolib import catalog, paths, provenance, validation
from ferrolib.cli import main
from ferrolib.training import result_path
from ferrolib.training import loop as loop_module

from run_helpers import computations, counting

TINY_TRAIN = ["--device", "synthetic-asymmetric", "--data", "synthetic", "--profile", "smoke", "--epochs", "1",
              "--no-progress"]
ENV = {**os.environ, "PYTHONPATH": str(paths.ROOT), "FERROLIB_CACHE": str(paths.CACHE)}


# ------------------------------------------------------------------------------------------------- inputs
BASE = {"device_id": '"synthetic-asymmetric"', "data": '"synthetic"', "epochs": "1", "train_limit": "64",
        "eval_limit": "50", "hidden": "[8]", "snapshot_epochs": "[0]", "batch_size": "32"}
"""``[base]`` of a tiny synthetic sweep: fractions of a second per run."""


def sweep_file(tmp: Path, grid: str = "", run: str = "", name: str = '"h"', algorithms: str = '["fp"]',
               **base: str) -> Path:
    """A tiny synthetic sweep file (fp: a synthetic device has no area for the energy ledger) with extra
    ``[sweep]`` and ``[run]`` lines and ``[base]`` values replaced."""
    path = tmp / "h.toml"
    values = "\n".join(f"{key} = {value}" for key, value in {**BASE, **base}.items())
    path.write_text(f'[sweep]\nname = {name}\nalgorithms = {algorithms}\n{grid}\n[base]\n{values}\n[run]\n'
                    f'{run}\n')
    return path


def real_measurement() -> str:
    path = paths.SHARED_MEASUREMENTS / MAIN_20NS_FILE
    if not path.exists():
        pytest.skip("the LBE247 measurements are not available")
    return path.read_text()


def without_stated_counts(text: str) -> str:
    """The file with the summary block's ``num_LTP``/``num_LTD`` columns removed."""
    lines = text.split("\n")
    header, values = lines[4].split(","), lines[5].split(",")
    keep = [i for i, column in enumerate(header) if column not in ("num_LTP", "num_LTD")]
    lines[4], lines[5] = ",".join(header[i] for i in keep), ",".join(values[i] for i in keep)
    return "\n".join(lines)


def measurement(tmp: Path, cut: Callable[[str], str]) -> Path:
    """A measurement file in ``tmp/ID170ZR5000/`` made from the real 20 ns file by ``cut``."""
    path = tmp / "ID170ZR5000" / Path(MAIN_20NS_FILE).name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(cut(real_measurement()))
    return path


def cut_lines(text: str, n: int) -> str:
    return "\n".join(text.rstrip("\n").split("\n")[:-n]) + "\n"


def drop_line(text: str, index: int) -> str:
    lines = text.split("\n")
    return "\n".join(lines[:index] + lines[index + 1:])


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def can_mount_tmpfs(directory: Path, options: str) -> bool:
    """Mount a tmpfs with ``options`` on ``directory`` (needs root); False where that is not possible."""
    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)],
                          capture_output=True).returncode == 0


@pytest.fixture
def mounts():
    """Mount points made by a test, unmounted afterwards."""
    made: list[Path] = []
    yield made
    for directory in made:
        subprocess.run(["umount", "-l", str(directory)], capture_output=True)


def tmpfs(directory: Path, options: str, mounts: list[Path]) -> bool:
    if can_mount_tmpfs(directory, options):
        mounts.append(directory)
        return True
    return False


# ------------------------------------------------------------------------------------------------ drivers
@dataclass
class Outcome:
    code: int
    lines: list[str]


def cli(capsys, arguments: list[str]) -> Outcome:
    capsys.readouterr()
    code = main([str(a) for a in arguments])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return Outcome(code, err.strip().splitlines())


def one_line(outcome: Outcome, expected: str, command: str) -> None:
    assert outcome.code == 2, outcome
    assert len(outcome.lines) == 1, outcome.lines
    assert outcome.lines[0].startswith(f"ferrolib {command}: error: ") and expected in outcome.lines[0], outcome.lines


def no_leftovers(root: Path) -> None:
    """No temporary file and no lock file under ``root``."""
    left = [p for p in root.rglob("*") if p.name.endswith((".tmp", ".lock"))]
    assert not left, left


class Context:
    """What a driver gets: the test's tmp_path, capsys, monkeypatch, a training counter and mount points."""

    def __init__(self, tmp_path, capsys, monkeypatch, mounts):
        self.tmp, self.capsys, self.monkeypatch, self.mounts = tmp_path, capsys, monkeypatch, mounts
        self.log = tmp_path / "computations.log"
        monkeypatch.setattr(loop_module, "build_network", counting(self.log))

    def trained(self) -> int:
        return computations(self.log)


def train_line(arguments: list, expected: str) -> Callable[[Context], None]:
    def drive(c: Context) -> None:
        one_line(cli(c.capsys, ["train", *TINY_TRAIN, "--results-dir", c.tmp / "results", *arguments]), expected,
                 "train")
        assert c.trained() == 0

    return drive


def sweep_line(expected: str, own_measurements: bool = False, **file) -> Callable[[Context], None]:
    """A sweep file that must stop with one line before any run; ``own_measurements`` points
    ``FERROLIB_MEASUREMENTS`` at the shared set, so its devices resolve without a committed fit."""
    def drive(c: Context) -> None:
        if own_measurements:
            c.monkeypatch.setenv("FERROLIB_MEASUREMENTS", str(paths.SHARED_MEASUREMENTS))
        one_line(cli(c.capsys, ["sweep", sweep_file(c.tmp, **file), "--results-dir", c.tmp / "results",
                                "--workers", "1"]), expected, "sweep")
        assert c.trained() == 0 and not list(c.tmp.rglob("*.nc"))

    return drive


def measurement_line(cut: Callable[[str], str], expected: str) -> Callable[[Context], None]:
    def drive(c: Context) -> None:
        path = measurement(c.tmp, cut)
        outcome = cli(c.capsys, ["device", "fit", path])
        one_line(outcome, expected, "device")
        assert str(path.resolve()) in outcome.lines[0]

    return drive


def env_line(name: str, value: str, arguments: list, expected: str) -> Callable[[Context], None]:
    def drive(c: Context) -> None:
        c.monkeypatch.setenv(name, value.format(tmp=c.tmp))
        command = arguments[0]
        one_line(cli(c.capsys, [a.format(tmp=c.tmp) for a in arguments]), expected, command)
        assert c.trained() == 0

    return drive


def snapped_width(c: Context) -> None:
    from ferrolib.cli import build_parser
    from ferrolib.cli.train import config_from_args

    args = build_parser().parse_args(["train", "--device", "ID170ZR5000", "--pulse-width", "2.00001e-8"])
    assert config_from_args(args).pulse_width == 2e-8  # the measured width: the committed key, not a new one


def sweep_toml_is_a_directory(c: Context) -> None:
    folder = c.tmp / "dir.toml"
    folder.mkdir()
    one_line(cli(c.capsys, ["sweep", folder]), "is a directory, not a sweep file", "sweep")


def unreachable_scheduler(c: Context) -> None:
    started = time.monotonic()
    outcome = cli(c.capsys, ["sweep", sweep_file(c.tmp), "--results-dir", c.tmp / "results",
                             "--scheduler", "tcp://127.0.0.1:1"])
    one_line(outcome, "scheduler tcp://127.0.0.1:1: unreachable within 10 s", "sweep")
    assert time.monotonic() - started < 30 and c.trained() == 0


def data_info_unreadable(c: Context) -> None:
    folder = c.tmp / "only"
    folder.mkdir()
    (folder / "ID1ZR5_Summary.dat").write_bytes(b"\x89HDF\r\n\x1a\n\x00\x00")
    one_line(cli(c.capsys, ["data", "info", "--source", folder]), "no readable measurement file", "data")


def sweeps_folder_is_a_file(c: Context) -> None:
    (c.tmp / "results").mkdir()
    (c.tmp / "results" / "sweeps").write_text("in the way")
    one_line(cli(c.capsys, ["sweep", sweep_file(c.tmp), "--results-dir", c.tmp / "results", "--workers", "1"]),
             "sweeps folder", "sweep")
    assert c.trained() == 0


def sweeps_folder_read_only(c: Context) -> None:
    sweeps = c.tmp / "results" / "sweeps"
    if not tmpfs(sweeps, "ro,size=64k", c.mounts):
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    one_line(cli(c.capsys, ["sweep", sweep_file(c.tmp), "--results-dir", c.tmp / "results", "--workers", "1"]),
             "read-only file system (EROFS)", "sweep")
    assert c.trained() == 0


def fit_save_read_only(c: Context) -> None:
    path = measurement(c.tmp, lambda text: text)
    save = c.tmp / "devices"
    if not tmpfs(save, "ro,size=64k", c.mounts):
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    c.monkeypatch.setattr("ferrolib.fitting.fit_ramp", _no_fit)
    one_line(cli(c.capsys, ["device", "fit", path, "--save", save]), "read-only file system (EROFS)", "device")


def fit_save_onto_a_folder(c: Context) -> None:
    path = measurement(c.tmp, lambda text: text)
    save = c.tmp / "devices"
    catalog.fitted_device_path("ID170ZR5000", 2e-8, "piecewise", save).mkdir(parents=True)
    c.monkeypatch.setattr("ferrolib.fitting.fit_ramp", _no_fit)
    one_line(cli(c.capsys, ["device", "fit", path, "--save", save]), "is a directory, where the fit would be written",
             "device")


def _no_fit(*args, **kwargs):
    raise AssertionError("fitted before the output folder was checked")


def full_disk_at_the_result(c: Context) -> None:
    """The finished run cannot be written: one line with its run key, nothing half-written, the last checkpoint
    kept, and the next start finishes from it with the same numbers."""
    results = c.tmp / "results"
    original = Path.write_bytes

    def no_space_for_results(self, data):
        if self.name.endswith(".tmp") and ".nc." in self.name:  # the result's temporary file, not the checkpoint's
            original(self, data[:1000])
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, data)

    c.monkeypatch.setattr(Path, "write_bytes", no_space_for_results)
    two_epochs = ["train", *TINY_TRAIN, "--epochs", "2", "--results-dir", results]  # a checkpoint after epoch 1
    outcome = cli(c.capsys, two_epochs)
    one_line(outcome, "disk full (ENOSPC)", "train")
    assert "the finished run" in outcome.lines[0] and "run key" in outcome.lines[0] and "checkpoint" in outcome.lines[0]
    assert list(results.glob("runs/*.ckpt.pt")) and not list(results.glob("runs/*.nc"))
    no_leftovers(results)
    c.monkeypatch.setattr(Path, "write_bytes", original)
    assert cli(c.capsys, two_epochs).code == 0
    assert len(list(results.glob("runs/*.nc"))) == 1 and not list(results.glob("runs/*.ckpt.pt"))
    no_leftovers(results)


def full_disk_before_the_checkpoint(c: Context) -> None:
    """A disk without room for a checkpoint fails before the first epoch (a real 64 KiB tmpfs where it can be
    mounted, else a simulated ENOSPC of the probe)."""
    results = c.tmp / "results"
    if not tmpfs(results, "size=64k", c.mounts):
        def no_space(fd):
            raise OSError(errno.ENOSPC, "No space left on device")

        c.monkeypatch.setattr(provenance.os, "fsync", no_space)
    one_line(cli(c.capsys, ["train", *TINY_TRAIN, "--results-dir", results]), "disk full (ENOSPC)", "train")
    assert c.trained() == 0
    no_leftovers(results)


def atomic_write_full_disk(c: Context) -> None:
    folder = c.tmp / "small"
    real = tmpfs(folder, "size=64k", c.mounts)
    target = folder / "big.bin"

    def write(tmp: Path) -> None:
        if not real:
            tmp.write_bytes(b"x" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device")
        tmp.write_bytes(b"x" * 200_000)

    with pytest.raises(provenance.WriteError) as error:
        provenance.atomic_write(target, write)
    assert str(error.value) == f"{target}: cannot write: disk full (ENOSPC); nothing half-written was left"
    assert list(folder.iterdir()) == []


def atomic_write_onto_a_folder_or_below_a_file(c: Context) -> None:
    (c.tmp / "taken").mkdir()
    (c.tmp / "file").write_text("x")
    for target, problem in ((c.tmp / "taken", "is a directory (EISDIR)"),
                            (c.tmp / "file" / "x.json", "a path component is a file, not a directory (ENOTDIR)")):
        with pytest.raises(provenance.WriteError) as error:
            provenance.write_json({"a": 1}, target)
        assert str(error.value) == f"{target}: cannot write: {problem}; nothing half-written was left"
    assert not list(c.tmp.rglob("*.tmp"))


def orphan_of_a_killed_summary_write(c: Context) -> None:
    """A sweep summary's ``.tmp`` left by a SIGKILL is removed on the next start; a live writer's is kept."""
    sweeps = c.tmp / "results" / "sweeps"
    sweeps.mkdir(parents=True)
    orphan = sweeps / f".h_0123456789ab.nc.{dead_pid()}.k1ll3d.tmp"
    alive = sweeps / f".h_0123456789ab.nc.{os.getpid()}.wr1t1n.tmp"
    orphan.write_bytes(b"half a summary")
    alive.write_bytes(b"being written")
    assert cli(c.capsys, ["sweep", sweep_file(c.tmp), "--results-dir", c.tmp / "results", "--workers", "1"]).code == 0
    assert not orphan.exists() and alive.exists()
    alive.unlink()
    no_leftovers(c.tmp / "results")


HOLDER = textwrap.dedent("""
    import sys, time
    from ferrolib import provenance
    with provenance.key_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(120)
""")


def stopped_lock_owner(c: Context) -> None:
    """A run started while an identical one is stopped (SIGSTOP) says so (owner pid, age) and gives up after the
    stated time-out instead of waiting forever."""
    from ferrolib.cli import build_parser
    from ferrolib.cli.train import config_from_args

    config = config_from_args(build_parser().parse_args(["train", *TINY_TRAIN]))
    path = result_path(config, c.tmp / "results")
    path.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, env=ENV, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        os.kill(holder.pid, signal.SIGSTOP)
        c.monkeypatch.setenv("FERROLIB_LOCK_TIMEOUT", "1")
        started = time.monotonic()
        outcome = cli(c.capsys, ["train", *TINY_TRAIN, "--results-dir", c.tmp / "results"])
        assert time.monotonic() - started < 30
    finally:
        holder.kill()
        os.kill(holder.pid, signal.SIGCONT)
        holder.wait(10)
    assert outcome.code == 2 and len(outcome.lines) <= 2, outcome.lines
    assert f"held by stopped process {holder.pid}" in outcome.lines[-1] and "gave up after 1 s" in outcome.lines[-1]
    assert c.trained() == 0


def lock_of_a_dead_owner(c: Context) -> None:
    """A lock file of a dead owner does not block and is removed."""
    path = c.tmp / "runs" / "abc.nc"
    path.parent.mkdir()
    lock = path.with_name("abc.nc.lock")
    lock.write_text(f"{dead_pid()} {time.time() - 100:.3f}\n")
    started = time.monotonic()
    with provenance.key_lock(path, stopped_timeout_s=5):
        assert lock.read_text().split()[0] == str(os.getpid())
    assert time.monotonic() - started < 2 and not lock.exists()
    lock.write_text(f"{dead_pid()} {time.time():.3f}\n")
    assert provenance.clean_folder(path.parent) == [lock] and not lock.exists()


LAUNCH = textwrap.dedent("""
    import functools, signal, sys
    # as from a terminal: a shell starts background jobs (and so pytest run with &) with Ctrl-C ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from ferrolib import sweep
    from fake_runs import sleeping_train
    sweep.run_sweep = functools.partial(sweep.run_sweep, run=sleeping_train)  # workers that never finish
    from ferrolib.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def sweep_process(c: Context) -> tuple[subprocess.Popen, Path]:
    """``ferrolib sweep`` with 2 workers whose runs sleep, in its own session (so a signal to its group is a
    terminal's Ctrl-C), waited for until both workers run."""
    path = sweep_file(c.tmp, grid="seeds = [0, 1, 2, 3]")
    results = c.tmp / "results"
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(paths.ROOT), str(Path(__file__).parent)])}
    process = subprocess.Popen([sys.executable, "-c", LAUNCH, "sweep", str(path), "--results-dir", str(results),
                                "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
                               start_new_session=True)
    deadline = time.monotonic() + 90
    while len(list(results.glob("started-*"))) < 2:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the workers did not start"
        time.sleep(0.2)
    return process, results


def descendants(pid: int) -> set[int]:
    """Process ids whose parent chain leads to ``pid`` (from /proc)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def session_members(session: int) -> set[int]:
    """Live (not zombie) processes of session ``session``."""
    members = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[4]) == session and fields[0] != "Z":
            members.add(int(stat.parent.name))
    return members


def wait_gone(session: int, seconds: float) -> set[int]:
    deadline = time.monotonic() + seconds
    while session_members(session) and time.monotonic() < deadline:
        time.sleep(0.2)
    return session_members(session)


def ctrl_c_on_a_sweep(c: Context) -> None:
    process, results = sweep_process(c)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=180)  # generous: a loaded 2-core machine shuts workers down slowly
    assert process.returncode == 130 and "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if not line.startswith("sweep h:")]  # the progress bar
    assert len(lines) == 1 and lines[0].startswith("ferrolib sweep: interrupted;"), lines
    assert not wait_gone(process.pid, 60), "a worker outlived the interrupted sweep"
    no_leftovers(results)
    c.capsys.readouterr()
    assert main(["sweep", str(c.tmp / "h.toml"), "--results-dir", str(results), "--dry-run"]) == 0
    states = [line.split()[0] for line in c.capsys.readouterr().out.splitlines()]
    assert len(states) == 4 and set(states) <= {"cached", "to"}  # resumable: finished runs cached, none stale


def killed_sweep_parent(c: Context) -> None:
    process, _ = sweep_process(c)
    workers = descendants(process.pid)
    assert len(workers) >= 2
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)
    assert not wait_gone(process.pid, 60), "workers outlived their killed parent"


@dataclass
class Case:
    case: str
    given: str
    expected: str
    drive: Callable[[Context], None]


CASES = [
    Case("sweep name is an absolute path", 'name = "/elsewhere/evil"', "one line: not a name; nothing written",
         sweep_line("[sweep] name '/elsewhere/evil' is not a name", name='"/elsewhere/evil"')),
    Case("sweep name climbs out", 'name = "../../escaped"', "one line: not a name",
         sweep_line("[sweep] name '../../escaped' is not a name", name='"../../escaped"')),
    Case("device id is a path", "train --device ../ID170ZR5000", "one line: not a name",
         train_line(["--device", "../ID170ZR5000"], "--device '../ID170ZR5000' is not a name")),
    Case("sweep device is a path", 'devices = ["ID170ZR5000", "../ID170ZR5000"]', "one line: not a name",
         sweep_line("[sweep] devices[1] '../ID170ZR5000' is not a name",
                    grid='devices = ["ID170ZR5000", "../ID170ZR5000"]')),
    Case("two widths within the tolerance", "pulse_widths = [2e-8, 2.00001e-8]", "one line: the same pulse width",
         sweep_line("2e-08 and 2.00001e-08 are the same pulse width", grid="pulse_widths = [2e-8, 2.00001e-8]")),
    Case("width beside a measured one", "train --pulse-width 2.00001e-8", "snapped to the measured 2e-8",
         snapped_width),
    Case("fractional seed", "seeds = [0, 1.5]", "one line: seeds[1] must be an integer",
         sweep_line("[sweep] seeds[1] must be an integer, got float 1.5", grid="seeds = [0, 1.5]")),
    Case("seeds not a list", "seeds = 1", "one line: must be a list",
         sweep_line("[sweep] seeds must be a list, got int 1", grid="seeds = 1")),
    Case("epochs as text", 'epochs = "1"', "one line: epochs must be int",
         sweep_line("[base] epochs must be int, got str '1'", epochs='"1"')),
    Case("workers as text", 'n_workers = "two"', "one line: n_workers must be an integer >= 1",
         sweep_line("[run] n_workers must be an integer >= 1, got str 'two'", run='n_workers = "two"')),
    Case("seed at 2**59", "train --seed 576460752303423488", "one line: seed range (numba's int64 limit)",
         train_line(["--seed", str(2**59)], f"seed must be in 0..{validation.MAX_SEED}")),
    Case("negative seed", "train --seed -1", "one line: seed range", train_line(["--seed", "-1"], "got -1")),
    Case("threads variable not a number", "FERROLIB_THREADS=two ferrolib train", "one line naming the variable",
         env_line("FERROLIB_THREADS", "two", ["train", *TINY_TRAIN, "--results-dir", "{tmp}/results"],
                  "FERROLIB_THREADS: number of threads must be a positive integer, got 'two'")),
    Case("measurements variable not a folder", "FERROLIB_MEASUREMENTS=<missing> ferrolib data info",
         "one line naming the variable", env_line("FERROLIB_MEASUREMENTS", "{tmp}/missing", ["data", "info"],
                                                  "$FERROLIB_MEASUREMENTS is not a directory holding")),
    Case("sweep file is a directory", "ferrolib sweep dir.toml/", "one line: is a directory",
         sweep_toml_is_a_directory),
    Case("unreachable scheduler", "--scheduler tcp://127.0.0.1:1", "one line within the 10 s time-out",
         unreachable_scheduler),
    Case("folder with one unreadable Summary", "ferrolib data info --source DIR", "one line: no readable file",
         data_info_unreadable),
    Case("measurement cut at a line boundary", "20 ns file without num_LTP/num_LTD, last 20 rows cut",
         "one line: the ramp ends short of its header's settings",
         measurement_line(lambda t: cut_lines(without_stated_counts(t), 20), "file truncated?")),
    Case("measurement cut mid-number", "20 ns file cut inside its last number", "one line: cut short mid-line",
         measurement_line(lambda t: t.rstrip("\n")[:-4], "cut short mid-line")),
    Case("measurement with a row lost inside", "20 ns file without its 40th row", "one line: not successive steps",
         measurement_line(lambda t: drop_line(without_stated_counts(t), 46), "not successive steps of the ramp")),
    Case("device with unknown area", 'devices = ["ID294YR"]', "one line naming the device, before training",
         sweep_line("device ID294YR: area unknown", own_measurements=True,
                    grid='devices = ["ID294YR"]\npulse_widths = [5e-4]', algorithms='["mp"]')),
    Case("synthetic device in a sweep", 'device_id = "synthetic-asymmetric", algorithms = ["mp"]',
         "one line naming the device, before training",
         sweep_line("device synthetic-asymmetric: area unknown", algorithms='["mp"]')),
    Case("sweeps folder is a file", "results/sweeps is a file", "one line before any run", sweeps_folder_is_a_file),
    Case("sweeps folder read-only", "results/sweeps on a read-only tmpfs", "one line before any run",
         sweeps_folder_read_only),
    Case("fit --save read-only", "device fit FILE --save <read-only tmpfs>", "one line before fitting",
         fit_save_read_only),
    Case("fit --save onto a folder", "device fit FILE --save DIR, DIR/<target name>/ exists",
         "one line before fitting", fit_save_onto_a_folder),
    Case("full disk at the result", "ENOSPC while the finished result is written",
         "one line with the run key; checkpoint kept; the rerun finishes", full_disk_at_the_result),
    Case("full disk before the checkpoint", "results on a 64 KiB tmpfs", "one line before the first epoch",
         full_disk_before_the_checkpoint),
    Case("atomic write on a full disk", "atomic_write of 200 kB into a 64 KiB tmpfs",
         "WriteError naming the file; nothing left", atomic_write_full_disk),
    Case("atomic write onto a folder or below a file", "write_json onto DIR, FILE/x.json",
         "WriteError naming the file", atomic_write_onto_a_folder_or_below_a_file),
    Case("orphan of a killed summary write", ".<summary>.<dead pid>.*.tmp in results/sweeps",
         "removed at the next start (a live writer's kept)", orphan_of_a_killed_summary_write),
    Case("lock held by a stopped run", "train while an identical run is SIGSTOPped",
         "one line (owner pid, age); gives up after the time-out", stopped_lock_owner),
    Case("lock file of a dead owner", "<key>.lock recording a dead pid", "no wait; the lock file removed",
         lock_of_a_dead_owner),
    Case("Ctrl-C on a 2-worker sweep", "SIGINT to the sweep's process group",
         "one line, exit 130, no worker left, resumable", ctrl_c_on_a_sweep),
    Case("killed sweep parent", "SIGKILL to a 2-worker sweep", "both workers end within seconds",
         killed_sweep_parent),
]


@pytest.mark.parametrize("case", CASES, ids=[c.case for c in CASES])
def test_hostile_case(case: Case, tmp_path, capsys, monkeypatch, mounts):
    case.drive(Context(tmp_path, capsys, monkeypatch, mounts))
