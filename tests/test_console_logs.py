"""`make run`'s logs say what happened, not that nothing did: beat's routine ticks, and the
sweeps that found nothing to do, are DEBUG; a sweep that did something, and anything that
failed, print as before. The tests keep their Redis keys out of development's database."""

import logging

import pytest
from django.conf import settings

from config.log_format import QuietTicks

SWEEP = "payouts.tasks.reversals_process_due"


@pytest.fixture
def quiet():
    tasks = [entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()]
    return QuietTicks(tasks=tasks, routine=["console.tasks.heartbeat_stamp"])


def celery_record(logger: str, message: str, args, *, data=None, level=logging.INFO):
    """A record as Celery's own loggers make it (its trace and strategy pass the task's
    details as the message's arguments and as ``data``)."""
    record = logging.LogRecord(logger, level, __file__, 1, message, args, None)
    if data is not None:
        record.data = data
    return record


def success(name: str, result: str) -> logging.LogRecord:
    data = {"id": "abc", "name": name, "return_value": result, "runtime": 0.01}
    return celery_record(
        "celery.app.trace",
        "Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s",
        (data,),
        data=data,
    )


def test_an_idle_sweep_and_its_tick_are_debug_and_hidden_at_info(quiet):
    sending = celery_record(
        "celery.beat", "Scheduler: Sending due task %s (%s)", ("process-reversals", SWEEP)
    )
    received = celery_record(
        "celery.worker.strategy", "Task %(name)s[%(id)s] received", None, data={"name": SWEEP}
    )
    idle = success(SWEEP, "{'claimed': 0, 'reversed': 0, 'failed': 0}")

    assert [quiet.filter(record) for record in (sending, received, idle)] == [False] * 3
    assert {record.levelname for record in (sending, received, idle)} == {"DEBUG"}


def test_a_sweep_that_did_something_still_says_so_at_info(quiet):
    busy = success(SWEEP, "{'claimed': 2, 'reversed': 2, 'failed': 0}")

    assert quiet.filter(busy) is True
    assert busy.levelname == "INFO"


def test_the_heartbeat_is_always_a_tick_and_other_tasks_are_untouched(quiet):
    heartbeat = success("console.tasks.heartbeat_stamp", "{'stamped_at': 1764960000}")
    on_demand = success("payouts.tasks.order_transfers_send", "{'sent': 0}")
    failed = celery_record("celery.app.trace", "Task failed", None, level=logging.ERROR)

    assert quiet.filter(heartbeat) is False
    assert quiet.filter(on_demand) is True and on_demand.levelname == "INFO"
    assert quiet.filter(failed) is True and failed.levelname == "ERROR"


def test_ticks_show_when_the_log_level_is_debug(quiet):
    root = logging.getLogger()
    saved = root.level
    root.setLevel(logging.DEBUG)
    try:
        assert quiet.filter(success(SWEEP, "{'claimed': 0}")) is True
    finally:
        root.setLevel(saved)


def test_the_console_handler_applies_it():
    handler = settings.LOGGING["handlers"]["console"]

    assert "quiet_ticks" in handler["filters"]
    assert settings.LOGGING["filters"]["quiet_ticks"]["()"] == "config.log_format.QuietTicks"


def test_the_tests_keep_their_redis_keys_out_of_developments_database():
    assert settings.CELERY_BROKER_URL != settings.DEVELOPMENT_BROKER_URL
