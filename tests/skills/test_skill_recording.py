"""perception.testing feeds a recorded session (an MCAP file as `perception record` writes it) to one skill
in-process: what it would have done on last week's recording, as a pytest."""

from __future__ import annotations

from skillkit import PLANTED, SCRIPT, write_session

from perception.messages import Caption
from perception.testing import private_bus, recorded_inputs, run_test
from skills import Alert, Output, Skill


class PhraseSpotter(Skill):
    """Alerts when a caption contains `word`."""

    name = "phrase-spotter"
    outputs = {"alerts": Output("alerts/{cam}", Alert)}

    def __init__(self, bus, word: str):
        super().__init__(bus)
        self.word = word

    async def on_caption(self, caption: Caption) -> None:
        if self.word in caption.text.split():
            self.publish(Alert(cam=caption.cam, phrase=caption.text, score=1.0, via="events", skill=self.name))


async def test_a_recording_drives_one_skill(tmp_path, small_model):
    session = tmp_path / "session.mcap"
    write_session(session, small_model, cam="rec0")
    with private_bus() as bus:
        spotter = PhraseSpotter(bus, word=PLANTED.split()[1])  # "purple": only the planted caption has it
        inputs = recorded_inputs(session, spotter.topics)
        assert [t for t, _ in inputs] == ["captions/rec0"] * len(SCRIPT)  # the skill's topics only
        result = await run_test(spotter, inputs)
    assert [a.phrase for a in result.of(Alert)] == [PLANTED]
    assert result.topics == ["alerts/rec0"] and result.counters["handled.on_caption"] == len(SCRIPT)
    everything = recorded_inputs(session)  # no topics: every message of a known type
    assert len(everything) == sum(n for _, n in SCRIPT) + 2 * len(SCRIPT)
