"""Reading the teacher's reply: strict JSON, fenced JSON or a lone number; else an abstention."""

from __future__ import annotations

import json
import math

import pytest

from rlaif import config as config_module
from rlaif.config import TeacherConfig
from rlaif.judges.teacher.rubric import (
    CRITERIA,
    RUBRIC_VERSION,
    normalised_weights,
    read_verdict,
    score_verdict,
)
from rlaif.types import Judgement

WEIGHTS = {c: getattr(TeacherConfig(), f"weight_{c}") for c in CRITERIA}
VERDICT = {
    "correctness": 10,
    "quality": 9,
    "idiomaticity": 9,
    "efficiency": 8,
    "documentation": 7,
    "reason": "neat",
}
# weights 0.3, 0.2, 0.1, 0.2, 0.2: (3.0 + 1.8 + 0.9 + 1.6 + 1.4) / 10 = 0.87
VERDICT_SCORE = 0.87


def parse_verdict(text: str, weights, finished: bool = True) -> Judgement:
    """What the teacher does with a reply: read it, then score it (or abstain saying why)."""
    raw = read_verdict(text)
    if isinstance(raw, str):
        return Judgement(abstained=raw)
    return score_verdict(raw, weights, finished)


def test_the_default_weights_are_the_seeds_with_quality_split():
    # the seed: correctness 0.3, quality 0.3, efficiency 0.2, documentation 0.2; here quality
    # 0.2 + idiomaticity 0.1 make up its 0.3
    assert WEIGHTS == {
        "correctness": 0.3,
        "quality": 0.2,
        "idiomaticity": 0.1,
        "efficiency": 0.2,
        "documentation": 0.2,
    }
    # The criteria are the config's weight_* keys, in their order.
    assert CRITERIA == ("correctness", "quality", "idiomaticity", "efficiency", "documentation")
    assert RUBRIC_VERSION


def test_plain_json():
    judgement = parse_verdict(json.dumps(VERDICT), WEIGHTS)

    assert judgement.abstained is None
    assert judgement.score == pytest.approx(VERDICT_SCORE, abs=1e-12)
    assert judgement.scores["idiomaticity"] == 9.0
    assert judgement.reason == "neat"


def test_fenced_json():
    judgement = parse_verdict(f"```json\n{json.dumps(VERDICT, indent=2)}\n```", WEIGHTS)

    assert judgement.score == pytest.approx(VERDICT_SCORE, abs=1e-12)


@pytest.mark.parametrize(("text", "score"), [("7", 0.7), ("  7.5 ", 0.75), ("8/10", 0.8)])
def test_a_lone_number_is_an_overall_score(text, score):
    judgement = parse_verdict(text, WEIGHTS)

    assert judgement.abstained is None
    assert judgement.score == pytest.approx(score)
    assert judgement.scores == {"overall": float(text.split("/")[0])}


def test_a_lone_number_for_truncated_code_is_capped_by_the_correctness_share():
    # correctness is 0.3 of the weight and must be 0: at most 0.7 whatever the number
    assert parse_verdict("10", WEIGHTS, finished=False).score == pytest.approx(0.7)
    assert parse_verdict("5", WEIGHTS, finished=False).score == pytest.approx(0.5)


def test_truncated_json_gets_correctness_zero():
    judgement = parse_verdict(json.dumps(VERDICT), WEIGHTS, finished=False)

    # 0.87 - 0.3 * 10 / 10 = 0.57
    assert judgement.scores["correctness"] == 0.0
    assert judgement.score == pytest.approx(0.57, abs=1e-12)


def test_weights_are_divided_by_their_sum():
    doubled = {c: 2 * w for c, w in WEIGHTS.items()}

    assert parse_verdict(json.dumps(VERDICT), doubled).score == pytest.approx(VERDICT_SCORE)
    assert normalised_weights(doubled)["correctness"] == pytest.approx(0.3)
    with pytest.raises(ValueError):
        normalised_weights(dict.fromkeys(CRITERIA, 0.0))


def test_the_reason_is_kept_to_one_line():
    judgement = parse_verdict(json.dumps({**VERDICT, "reason": "first\nsecond"}), WEIGHTS)

    assert judgement.reason == "first"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("no json here", "unparsable"),
        ("", "unparsable"),
        ("{not: json}", "unparsable: invalid JSON"),
        ("[1, 2, 3]", "unparsable"),
        (f"Here is my review: {json.dumps(VERDICT)}", "unparsable"),  # prose is not strict JSON
        (f"{json.dumps(VERDICT)} Hope this helps.", "unparsable: invalid JSON"),
        ("The score is 7", "unparsable"),
        ("14/10", "off-rubric: overall=14"),
        ("-1", "off-rubric: overall=-1"),
        (json.dumps({**VERDICT, "correctness": 14}), "off-rubric: correctness=14"),
        (json.dumps({**VERDICT, "correctness": -1}), "off-rubric: correctness=-1"),
        (json.dumps({**VERDICT, "efficiency": True}), "off-rubric: efficiency=True"),
        (json.dumps({**VERDICT, "quality": "9"}), "off-rubric: quality='9'"),
        (json.dumps({k: v for k, v in VERDICT.items() if k != "idiomaticity"}), "off-rubric"),
        ('{"correctness": NaN}', "off-rubric: correctness=nan"),
    ],
)
def test_anything_else_abstains(text, why):
    judgement = parse_verdict(text, WEIGHTS)

    assert judgement.abstained is not None and judgement.abstained.startswith(why)
    assert math.isnan(judgement.score)
    assert judgement.scores == {}


def test_a_config_with_every_rubric_weight_zero_is_refused():
    zero = [f"teacher.weight_{c}=0" for c in CRITERIA]

    with pytest.raises(config_module.ConfigError, match="rubric weights must not all be 0"):
        config_module.load(None, zero)
