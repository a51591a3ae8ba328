"""harness.quiet: the libraries' warnings go to a log file, not the console; --verbose
shows them too; our own warnings and errors are untouched; global state is restored."""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path

import pytest

from harness.model.cache import CacheWarning
from harness.quiet import third_party_to_log


def chatter() -> None:
    """What the demo's libraries print: a transformers log warning and Python warnings
    raised from their modules."""
    from transformers.utils import logging as hf_logging

    hf_logging.get_logger("transformers.trainer").warning("loss_type=None was set")
    warnings.warn_explicit(
        "is_gradient_checkpointing is deprecated",
        FutureWarning,
        "transformers/modeling_utils.py",
        1,
        module="transformers.modeling_utils",
    )
    warnings.warn_explicit(
        "attention mask is not set", UserWarning, "torch/nn/x.py", 2, module="torch.nn.x"
    )


def test_quiet_console_and_a_log_file_holding_the_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = io.StringIO()
    log = tmp_path / "out" / "harness.log"
    with third_party_to_log(log, stream=stream):
        chatter()
    captured = capsys.readouterr()
    for shown in (stream.getvalue(), captured.out, captured.err):
        assert "loss_type" not in shown and "Warning" not in shown, shown
    text = log.read_text()
    assert "loss_type=None" in text
    assert "FutureWarning: is_gradient_checkpointing" in text
    assert "UserWarning: attention mask" in text


def test_verbose_shows_them_on_the_console_as_well(tmp_path: Path) -> None:
    stream = io.StringIO()
    log = tmp_path / "harness.log"
    with third_party_to_log(log, verbose=True, stream=stream):
        chatter()
    shown = stream.getvalue()
    assert "loss_type=None" in shown
    assert "FutureWarning" in shown and "UserWarning" in shown
    assert "loss_type=None" in log.read_text()


def test_nothing_said_no_file_written(tmp_path: Path) -> None:
    with third_party_to_log(tmp_path / "out" / "harness.log"):
        pass
    assert not (tmp_path / "out").exists()  # a command stopped by bad input leaves nothing


def test_our_warnings_and_errors_pass_through(tmp_path: Path) -> None:
    from harness.errors import UserError

    log = tmp_path / "harness.log"
    with pytest.warns(CacheWarning, match="cache is full"), third_party_to_log(log):
        warnings.warn("cache is full", CacheWarning, stacklevel=1)
    with pytest.raises(UserError, match="suite.yaml:3: bad"), third_party_to_log(log):
        raise UserError("suite.yaml:3: bad")


def test_global_state_is_restored(tmp_path: Path) -> None:
    from transformers.utils import logging as hf_logging

    lg = logging.getLogger("transformers")
    before = (lg.level, list(lg.handlers), lg.propagate, hf_logging.is_progress_bar_enabled())
    filters = list(warnings.filters)
    show = warnings.showwarning
    with third_party_to_log(tmp_path / "harness.log"):
        assert not hf_logging.is_progress_bar_enabled()
    after = (lg.level, list(lg.handlers), lg.propagate, hf_logging.is_progress_bar_enabled())
    assert after == before
    assert warnings.filters == filters and warnings.showwarning is show
