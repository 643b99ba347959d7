"""The supervisor's restart policy, exit classification, state file and requests (pure, no process)."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import pytest
from pydantic import ValidationError

from harness.stack.supervision import (
    REQUESTS_DIR,
    STATE_FILE,
    ComponentRecord,
    ExitStatus,
    RestartPolicy,
    SupervisorState,
    decide,
    is_crash,
    read_state,
    send_request,
    take_requests,
    write_state,
)

POLICY = RestartPolicy()


def test_backoff_doubles_from_one_second_and_is_capped_at_sixty() -> None:
    delays = []
    streak = 0
    restarts: list[float] = []
    now = 0.0
    for _ in range(9):
        d = decide(POLICY, uptime_s=5.0, streak=streak, restart_times=restarts, now=now)
        assert not d.give_up
        delays.append(d.delay_s)
        streak = d.streak
        now += 100.0  # spread out, so the crash-loop window never fills
        restarts = [now]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_a_component_that_stayed_up_120_s_starts_again_at_one_second() -> None:
    after_streak = decide(POLICY, uptime_s=119.9, streak=5, restart_times=[], now=0.0)
    assert after_streak.delay_s == 32 and after_streak.streak == 6
    stable = decide(POLICY, uptime_s=120.0, streak=5, restart_times=[], now=0.0)
    assert stable.delay_s == 1 and stable.streak == 1


def test_the_eleventh_crash_within_ten_minutes_gives_up() -> None:
    ten = [float(t) for t in range(0, 500, 50)]  # 10 restarts at t = 0 … 450 s
    assert len(ten) == POLICY.max_restarts
    d = decide(POLICY, uptime_s=1.0, streak=10, restart_times=ten, now=550.0)
    assert d.give_up and d.recent_restarts == 10
    # nine of them in the window: one more restart is allowed
    assert not decide(POLICY, uptime_s=1.0, streak=10, restart_times=ten[1:], now=550.0).give_up
    # the same ten, but the oldest is more than 600 s old by now: restart again
    later = decide(POLICY, uptime_s=1.0, streak=10, restart_times=ten, now=600.5)
    assert not later.give_up and later.recent_restarts == 9 and later.delay_s == 60


def test_a_policy_that_allows_no_restart_gives_up_at_the_first_crash() -> None:
    d = decide(RestartPolicy(max_restarts=0), uptime_s=1.0, streak=0, restart_times=[], now=0.0)
    assert d.give_up


@pytest.mark.parametrize(
    ("field", "value"), [("base_delay_s", 0), ("max_delay_s", -1), ("max_restarts", -1), ("window_s", 0)]
)
def test_an_invalid_policy_names_its_field(field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        RestartPolicy(**{field: value})


def test_a_cap_below_the_first_delay_is_refused() -> None:
    with pytest.raises(ValidationError, match="max_delay_s"):
        RestartPolicy(base_delay_s=5, max_delay_s=2)


@pytest.mark.parametrize(
    ("returncode", "crash"),
    [
        (0, False),
        (-signal.SIGTERM, False),
        (-signal.SIGINT, False),
        (-signal.SIGHUP, False),
        (-signal.SIGPIPE, False),
        (1, True),
        (143, True),
        (-signal.SIGKILL, True),
        (-signal.SIGSEGV, True),
        (-signal.SIGABRT, True),
    ],
)
def test_only_a_crash_calls_for_a_restart(returncode: int, crash: bool) -> None:
    assert is_crash(returncode) is crash


def test_exit_status_names_the_code_or_the_signal() -> None:
    assert ExitStatus.from_returncode(3).describe() == "code 3"
    assert ExitStatus.from_returncode(-9).describe() == "signal SIGKILL"
    assert ExitStatus.from_returncode(-9).model_dump() == {"code": None, "signal": "SIGKILL"}


def _state(restarts: int) -> SupervisorState:
    return SupervisorState(
        stack_id="abc",
        supervisor_pid=42,
        updated_at=1.0,
        components={
            "api": ComponentRecord(
                state="backoff",
                pid=7,
                started_at=2.0,
                restarts=restarts,
                last_exit=ExitStatus.from_returncode(-9),
                exited_at=3.0,
                last_restart_at=2.0,
                next_start_at=4.0,
            ),
            "am": ComponentRecord(state="running", pid=8, started_at=1.0),
        },
    )


def test_the_state_file_round_trips_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    write_state(tmp_path, _state(2))
    assert read_state(tmp_path) == _state(2)
    raw = json.loads((tmp_path / STATE_FILE).read_text())
    assert raw["components"]["api"]["last_exit"] == {"code": None, "signal": "SIGKILL"}
    assert raw["components"]["api"]["restarts"] == 2
    assert [p.name for p in tmp_path.iterdir()] == [STATE_FILE]


def test_a_missing_or_corrupt_state_file_reads_as_none(tmp_path: Path) -> None:
    assert read_state(tmp_path) is None
    (tmp_path / STATE_FILE).write_text('{"stack_id": "abc", "compo')
    assert read_state(tmp_path) is None
    (tmp_path / STATE_FILE).write_text(
        '{"stack_id": "a", "supervisor_pid": 1, "updated_at": 0, "components": {"x": {"state": "dead"}}}'
    )
    assert read_state(tmp_path) is None


def test_a_reader_never_sees_half_a_state_file(tmp_path: Path) -> None:
    write_state(tmp_path, _state(0))
    stop = threading.Event()
    seen: list[int | None] = []

    def reader() -> None:
        while not stop.is_set():
            s = read_state(tmp_path)
            seen.append(None if s is None else s.components["api"].restarts)

    thread = threading.Thread(target=reader)
    thread.start()
    for n in range(300):
        write_state(tmp_path, _state(n))
    stop.set()
    thread.join()
    assert seen and None not in seen


def test_requests_are_taken_once_oldest_first_and_bad_ones_are_reported(tmp_path: Path) -> None:
    send_request(tmp_path, "start", "airflow-api-server")
    send_request(tmp_path, "start", "alertmanager")
    folder = tmp_path / REQUESTS_DIR
    (folder / "0-bad.json").write_text('{"action": "explode", "component": "x", "requested_at": 0}')
    (folder / ".half-written.json").write_text("{")
    requests, problems = take_requests(tmp_path)
    assert [(r.action, r.component) for r in requests] == [
        ("start", "airflow-api-server"),
        ("start", "alertmanager"),
    ]
    assert len(problems) == 1 and "0-bad.json" in problems[0] and "action" in problems[0]
    assert take_requests(tmp_path) == ([], [])
    assert [p.name for p in folder.iterdir()] == [".half-written.json"], "a dot-file is not a request yet"


def test_no_requests_folder_means_no_requests(tmp_path: Path) -> None:
    assert take_requests(tmp_path) == ([], [])
