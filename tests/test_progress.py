"""Progress: bars with an ETA on a terminal, plain lines in a pipe, silence for quick work."""

from __future__ import annotations

import io

from rich.console import Console

from prodgen.progress import ProgressBoard, duration


def piped() -> tuple[Console, io.StringIO]:
    stream = io.StringIO()
    return Console(file=stream, force_terminal=False), stream


def test_piped_lines_give_count_elapsed_and_eta_on_every_update_at_interval_zero() -> None:
    console, stream = piped()
    with ProgressBoard(console, interval_s=0) as board, board.task("upscale coffee.jpg", 4, "tiles") as task:
        for _ in range(4):
            task.advance()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("upscale coffee.jpg: 1/4 tiles (25 %), 0 s elapsed, about 0 s left")
    assert lines[3].startswith("upscale coffee.jpg: 4/4 tiles (100 %)")
    assert lines[-1].startswith("upscale coffee.jpg: done in")
    assert "\x1b" not in stream.getvalue()  # no escape codes into a pipe


def test_piped_steps_print_each_step_once_work_is_slow() -> None:
    console, stream = piped()
    with ProgressBoard(console, interval_s=0) as board, board.task("dcgan") as task:
        task.step("dcgan: exporting ONNX")
        task.step("dcgan: publishing")
    assert stream.getvalue().splitlines()[:2] == [
        "dcgan: exporting ONNX: 0 s elapsed",
        "dcgan: publishing: 0 s elapsed",
    ]


def test_quick_work_prints_nothing_into_a_pipe() -> None:
    console, stream = piped()
    with ProgressBoard(console, interval_s=60) as board, board.task("generate dcgan", 16, "pictures") as task:
        task.step("dcgan: exporting ONNX")
        task.update(16)
    assert stream.getvalue() == ""


def test_a_terminal_gets_a_bar_with_count_and_eta() -> None:
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=100)
    with ProgressBoard(console) as board, board.task("upscale coffee.jpg", 12, "tiles") as task:
        task.update(3)
        board._bars.refresh()
    shown = stream.getvalue()
    assert "upscale coffee.jpg" in shown and "3/12" in shown and "tiles" in shown and "ETA" in shown


def test_durations_read_like_a_person_says_them() -> None:
    assert [duration(s) for s in (4.6, 125, 5400)] == ["5 s", "2 min 05 s", "1 h 30 min"]


def test_work_measured_in_fractions_shows_its_share_only() -> None:
    console, stream = piped()
    with ProgressBoard(console, interval_s=0) as board, board.task("measuring") as task:
        task.update(0.4, 1.0)
    assert stream.getvalue().splitlines()[0] == "measuring: 40 %, 0 s elapsed, about 0 s left"
