"""mitmproxy's "Streaming response from" notice: dropped once per stream the addon announced."""

from __future__ import annotations

import logging

import pytest

from rumproxy.streamnotices import MITMPROXY_LOGGER, OwnStreamNotices


def notice(host: str) -> logging.LogRecord:
    return logging.LogRecord(MITMPROXY_LOGGER, logging.INFO, __file__, 1, f"Streaming response from {host}.", None, None)


def test_one_notice_is_dropped_per_expected_stream_of_that_host():
    notices = OwnStreamNotices()
    notices.expect("shop.test")
    notices.expect("shop.test")
    assert not notices.filter(notice("shop.test"))
    assert notices.filter(notice("other.test"))
    assert not notices.filter(notice("shop.test"))
    assert notices.filter(notice("shop.test")), "a third stream, not the addon's, keeps its notice"


@pytest.mark.parametrize(
    "message",
    ["Streaming request to shop.test.", "shop.test: GET / << 200 OK", "Streaming response from shop.test, or so"],
)
def test_other_records_pass(message):
    notices = OwnStreamNotices()
    notices.expect("shop.test")
    record = logging.LogRecord(MITMPROXY_LOGGER, logging.INFO, __file__, 1, message, None, None)
    assert notices.filter(record)


def test_a_host_name_ending_in_a_dot_is_matched_whole():
    notices = OwnStreamNotices()
    notices.expect("shop.test.")
    assert notices.filter(notice("shop.test"))
    assert not notices.filter(notice("shop.test."))


def test_notices_that_never_came_are_forgotten_past_the_limit():
    notices = OwnStreamNotices(limit=3)
    for host in ("a.test", "b.test", "c.test"):
        notices.expect(host)
    notices.expect("d.test")  # a fourth host: the three that never logged are forgotten
    assert notices.filter(notice("a.test"))
    assert not notices.filter(notice("d.test"))


def test_installed_on_mitmproxys_server_logger_it_filters_what_that_logger_logs(caplog):
    notices = OwnStreamNotices()
    notices.install()
    try:
        notices.expect("shop.test")
        with caplog.at_level(logging.INFO, logger=MITMPROXY_LOGGER):
            logging.getLogger(MITMPROXY_LOGGER).info("Streaming response from shop.test.")
            logging.getLogger(MITMPROXY_LOGGER).info("Streaming response from shop.test.")
        assert caplog.messages == ["Streaming response from shop.test."]
    finally:
        notices.uninstall()
    assert notices not in logging.getLogger(MITMPROXY_LOGGER).filters
