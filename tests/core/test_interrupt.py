"""archsearch/core/interrupt.py: the first Ctrl-C waits for a safe point, a second one does not, an ignored one
stays so."""

from __future__ import annotations

import signal
import threading

import pytest

from archsearch.core import interrupt

pytestmark = pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                                reason="signal handlers can be set in the main thread only")


@pytest.fixture
def sigint_default():
    old = signal.signal(signal.SIGINT, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGINT, old)


def test_the_first_ctrl_c_raises_at_the_next_check(sigint_default) -> None:
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with interrupt.deferred():
            signal.raise_signal(signal.SIGINT)  # as inside a storage write: nothing raised here
            steps.append("after the signal")
            assert interrupt.requested()
            interrupt.check()  # the safe point
            steps.append("not reached")
    assert steps == ["after the signal"]
    assert not interrupt.requested() and signal.getsignal(signal.SIGINT) is signal.SIG_DFL


def test_a_ctrl_c_no_check_saw_raises_at_the_end_and_a_second_one_at_once(sigint_default) -> None:
    with pytest.raises(KeyboardInterrupt):
        with interrupt.deferred():
            signal.raise_signal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        with interrupt.deferred():
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)  # the second: raised here
            pytest.fail("the second Ctrl-C did not raise")


def test_an_ignored_sigint_stays_ignored(sigint_default) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with interrupt.deferred():
        signal.raise_signal(signal.SIGINT)
        assert not interrupt.requested()
        interrupt.check()
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
