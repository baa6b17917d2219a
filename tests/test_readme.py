"""The README as a newcomer runs it (issue 18): every ``diffussm`` command in it parses and passes the
CLI's own checks, every script it names exists and takes the flags it is given, the cheap commands run
as written, and its table of notebook times is the one the timing script prints."""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from diffussm_lib.cli import build_parser, check_sampling_args
from diffussm_lib.sampling import parse_labels

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
CHEAP = [  # run as written, in a scratch folder beside the repository's checkpoints
    "diffussm sample --checkpoint checkpoints/mnist_diffussm --num-samples 20 --labels all "
    "--guidance 1.2 --output-dir samples/",
]


def readme_commands() -> list[str]:
    """Shell lines of the README's ```bash blocks and its inline `diffussm ...` / `python ...` spans,
    comments dropped, loop variables given their first value."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("for ") or line in ("done", ""):
                continue
            lines.append(line.removesuffix("; done").strip())
    lines += re.findall(r"`((?:diffussm|python) [^`]+)`", README)
    loops = dict(re.findall(r"for (\w+) in (\S+)", README))
    return [re.sub(r"\$(\w+)", lambda m: loops.get(m.group(1), m.group(0)), c) for c in lines]


def cli_argvs() -> list[list[str]]:
    argvs = []
    for cmd in readme_commands():
        for part in cmd.split("&&"):
            words = shlex.split(part)
            if words[:1] == ["diffussm"]:
                argvs.append(words[1:])
            elif "diffussm_lib" in words[:-1] and words[0] in ("torchrun", "python"):
                argvs.append(words[words.index("diffussm_lib") + 1 :])
    return argvs


def test_the_readme_has_commands():
    assert len(cli_argvs()) >= 8 and any(a[0] == "sample" for a in cli_argvs())
    assert all(c in README for c in CHEAP)


@pytest.mark.parametrize("argv", cli_argvs(), ids=lambda a: " ".join(a)[:60])
def test_every_diffussm_command_in_the_readme_is_valid(argv):
    """Parsed by the CLI's parser (unknown flags, bad values) and checked like the CLI checks them
    before any work (sample counts, steps, guidance; --labels all needs a multiple of 10)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:
        pytest.fail(f"README command `diffussm {' '.join(argv)}` does not parse (exit {e.code})")
    if args.command in ("sample", "evaluate"):
        check_sampling_args(args)
    if args.command == "sample":
        parse_labels(args.labels, args.num_samples, 10)


def script_commands() -> list[list[str]]:
    return [
        shlex.split(c)
        for c in readme_commands()
        if re.match(r"python (scripts|benchmarks)/\S+\.py", c)
    ]


@pytest.mark.parametrize("words", script_commands(), ids=lambda w: " ".join(w[1:3]))
@pytest.mark.slow
def test_every_script_in_the_readme_takes_its_flags(words):
    script = REPO / words[1]
    assert script.is_file(), f"README names {words[1]}, which does not exist"
    positional = [w for w in words[2:][:1] if not w.startswith("-")]  # a subcommand, if any
    out = subprocess.run(
        [sys.executable, str(script), *positional, "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    for flag in (w.split("=")[0] for w in words[2:] if w.startswith("--")):
        assert flag in out.stdout, f"`{' '.join(words)}`: {words[1]} has no {flag}"


@pytest.mark.slow
@pytest.mark.parametrize("cmd", CHEAP)
def test_the_cheap_readme_commands_run_as_written(tmp_path, cmd):
    (tmp_path / "checkpoints").symlink_to(REPO / "checkpoints")
    words = shlex.split(cmd)
    out = subprocess.run(
        [sys.executable, "-m", "diffussm_lib", *words[1:], "--no-progress"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "samples" / "samples.npz").is_file() and list(
        (tmp_path / "samples").glob("*.png")
    )


@pytest.mark.slow
def test_the_readme_table_of_notebook_times_is_the_measured_one():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from execute_notebooks import load_times, times_table
    finally:
        sys.path.pop(0)
    table = (
        README.split("<!-- notebook-times -->\n", 1)[1]
        .split("<!-- /notebook-times -->", 1)[0]
        .strip()
    )
    assert table == times_table(load_times()), (
        "run `python scripts/execute_notebooks.py --table` into the README"
    )
    names = {p.stem for p in (REPO / "notebooks").glob("[0-9][0-9]_*.py")}
    assert set(load_times()) == names, "every notebook has a measured time"


def test_notebook_times_name_the_machine_of_each_mode():
    """``measured_on``: one machine once; machines that differ by mode, each with its mode."""
    from diffussm_lib.env import measured_on

    assert measured_on({"fast": {"hardware": "A"}, "full": {"hardware": "A"}}) == "A"
    assert measured_on({"fast": {"hardware": "B"}, "full": {"hardware": "A"}}) == "fast: B; full: A"


@pytest.mark.slow
def test_the_readme_table_of_scan_orders_is_the_stored_one():
    """The README's scan-order table is what ``bench_scan_orders.py --table`` prints from the stored runs."""
    table = (
        README.split("<!-- scan-orders -->\n", 1)[1].split("<!-- /scan-orders -->", 1)[0].strip()
    )
    results = REPO / "benchmarks" / "results"
    new = results / "scan_orders.json"
    has_runs = new.is_file() and json.loads(new.read_text()).get("runs")
    stored = new if has_runs else results / "scan_orders_2025_width64.json"  # the earlier study
    script = REPO / "benchmarks" / "bench_scan_orders.py"
    out = subprocess.run(
        [sys.executable, str(script), "--table", "--out", str(stored)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert table == out, f"run `python {script.name} --table --out {stored.name}` into the README"


@pytest.mark.slow
def test_the_readme_speedrun_result_is_the_stored_one():
    """The README's "train your own" result is what ``bench_speedrun.py --summary`` prints from the
    stored runs, and benchmarks/results/speedrun.md is its ``--table``."""
    block = README.split("<!-- speedrun -->\n", 1)[1].split("<!-- /speedrun -->", 1)[0].strip()
    script = str(REPO / "benchmarks" / "bench_speedrun.py")
    out = subprocess.run(
        [sys.executable, script, "--summary"], capture_output=True, text=True, check=True
    ).stdout
    assert block == out.strip(), (
        "run `python benchmarks/bench_speedrun.py --summary` into the README"
    )
    table = subprocess.run(
        [sys.executable, script, "--table"], capture_output=True, text=True, check=True
    ).stdout
    md = (REPO / "benchmarks" / "results" / "speedrun.md").read_text()
    assert md.split("<!-- table -->\n", 1)[1].strip() == table.strip(), (
        "run `python benchmarks/bench_speedrun.py --table` into benchmarks/results/speedrun.md"
    )


def test_the_readme_other_machine_numbers_are_the_stored_run():
    """The "Intel Xeon kind" paragraph quotes the stored run at that machine's image count."""
    runs = json.loads((REPO / "benchmarks" / "results" / "speedrun.json").read_text())["runs"]
    m = re.search(
        r"`--max-steps` to that count \(([\d,]+) steps = ([\d,]+) images.*?gave FID-LeNet ([\d.]+)\s+"
        r"\(floor ([\d.]+) at this N\) and class accuracy ([\d.]+)% at\s+w = ([\d.]+)",
        README,
        re.S,
    )
    assert m, "the README's other-machine paragraph changed: update this test"
    steps, images, fid, floor, acc, w = m.groups()
    run = runs[f"recipe | seed 0 | {steps.replace(',', '')} steps, 1 thread, train.lr=0.001"]
    ev = run["eval"][f"ema w={float(w):g}"]
    assert run["images"] == int(images.replace(",", ""))
    assert (fid, floor, acc) == (
        f"{ev['fid']:.2f}",
        f"{ev['floor']:.2f}",
        f"{100 * ev['class_accuracy']:.1f}",
    )


@pytest.mark.slow
def test_the_readme_sampler_study_is_the_stored_one():
    """The README's sampler block and benchmarks/results/samplers.md are what
    ``bench_samplers.py --markdown`` prints from the stored runs."""
    block = README.split("<!-- samplers -->\n", 1)[1].split("<!-- /samplers -->", 1)[0].strip()
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_samplers.py"), "--markdown"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert block == out, "put `python benchmarks/bench_samplers.py --markdown` into the README"
    assert out in (REPO / "benchmarks" / "results" / "samplers.md").read_text()
