"""Prose written by the run: verdicts that call a difference within the noise a tie, and the Key results box."""
import pytest

from genailab_core import prose


@pytest.mark.parametrize("ours, ours_se, base, base_se, higher, expected", [
    (0.92, 0.002, 0.90, 0.002, True, "beats"),          # 0.02 > 2 * sqrt(2) * 0.002 = 0.0057
    (0.90, 0.002, 0.92, 0.002, True, "loses to"),
    (0.92, 0.010, 0.90, 0.010, True, "ties with"),      # 0.02 <= 0.028
    (0.47, 0.01, 1.24, 0.02, False, "beats"),           # an L2: lower is better
    (1.24, 0.02, 0.47, 0.01, False, "loses to"),
    (1.0, 0.0, 1.0, 0.0, True, "ties with"),
])
def test_verdict_hand_cases(ours, ours_se, base, base_se, higher, expected):
    assert prose.verdict(ours, ours_se, base, base_se, higher_is_better=higher) == expected


def test_verdict_boundary_is_a_tie_and_bad_errors_are_refused():
    assert prose.verdict(1.5, 0.25, 1.0, 0.0) == "ties with"                      # exactly z * se: a tie
    assert prose.verdict(1.5 + 1e-9, 0.25, 1.0, 0.0) == "beats"
    with pytest.raises(ValueError, match="at least 3 seeds"):
        prose.verdict(1.0, float("nan"), 0.5)
    with pytest.raises(ValueError, match="finite means"):
        prose.verdict(float("inf"), 0.1, 0.5)


def test_key_results_is_a_markdown_block_quote_displayed_once(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj.data))
    assert prose.key_results(["NB beats Poisson by 39.2 nats"], "quick", "the same ranking") is None
    assert len(shown) == 1 and shown[0] == prose.key_results_markdown(["NB beats Poisson by 39.2 nats"], "quick",
                                                                       "the same ranking")
    assert shown[0].splitlines() == ["> **Key results** (this run, `quick` profile)", ">",
                                       "> - NB beats Poisson by 39.2 nats", ">", "> *Full profile:* the same ranking"]
    with pytest.raises(ValueError, match="at least one"):
        prose.key_results_markdown([], "quick")
