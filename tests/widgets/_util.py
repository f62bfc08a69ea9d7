"""Helpers shared by the widget tests: input layers must not change; waiting for a widget's job."""

import copy

import numpy as np

from matrestore._widgets._worker import State

ENDED = (State.DONE, State.FAILED, State.STOPPED)


def snapshot(layer):
    """Everything about a layer that a widget must not change."""
    return (np.array(layer.data, copy=True), tuple(layer.scale), tuple(layer.translate), layer.name,
            copy.deepcopy(dict(layer.metadata)))


def assert_unchanged(layer, snap):
    data, scale, translate, name, metadata = snap
    np.testing.assert_array_equal(np.asarray(layer.data), data)
    assert np.asarray(layer.data).dtype == data.dtype
    assert tuple(layer.scale) == scale and tuple(layer.translate) == translate and layer.name == name
    assert dict(layer.metadata) == metadata


def wait_done(qtbot, w, timeout=60000):
    """Wait until the widget's TaskRunner has ended (done, failed or stopped)."""
    qtbot.waitUntil(lambda: w.runner.state in ENDED, timeout=timeout)


def run_and_wait(qtbot, w, timeout=60000):
    w.run()
    wait_done(qtbot, w, timeout)
    return w.runner.state
