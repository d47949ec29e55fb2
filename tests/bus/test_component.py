"""The component runtime on a real proxy: declared outputs route by type, typed inputs filter, one bad
message or handler never stops a component, and the test harness returns what a component published."""

from __future__ import annotations

import pytest

from bus.component import Component, Input, Output, component_inputs, on
from bus.message import Message, register
from perception.testing import private_bus, run_test


@register
class Ping(Message):
    TYPE = "test.Ping"
    cam: str
    n: int


@register
class Pong(Message):
    TYPE = "test.Pong"
    cam: str
    n: int


class Echo(Component):
    """Answers every Ping with a Pong on pong/<cam>; raises on n == 13; counts any message on raw/."""

    name = "echo"
    outputs = {"pongs": Output("pong/{cam}", Pong)}

    def __init__(self, bus):
        super().__init__(bus)
        self.raw: list[str] = []

    @on("ping/{cam}", Ping)
    def on_ping(self, ping: Ping) -> None:
        if ping.n == 13:
            raise ValueError("unlucky")
        self.publish(Pong(cam=ping.cam, n=ping.n))

    @on("raw/")
    @on("more/")
    async def on_raw(self, env) -> None:
        self.raw.append(env.topic)


def test_declarations_are_data():
    inputs = component_inputs(Echo)
    assert {(i.topic, i.type, i.handler) for i in inputs} == {
        ("ping/{cam}", Ping, "on_ping"),
        ("raw/", None, "on_raw"),
        ("more/", None, "on_raw"),
    }
    assert Input("ping/{cam}", Ping, "x").prefix == "ping/"
    assert Echo.outputs["pongs"].topic_for(Pong(cam="cam7", n=1)) == "pong/cam7"


def test_an_output_template_must_name_message_fields():
    with pytest.raises(TypeError, match="no field"):
        Output("pong/{camera}", Pong)


def test_publish_refuses_an_undeclared_type():
    with private_bus() as bus:
        echo = Echo(bus)
        with pytest.raises(RuntimeError, match="before run"):
            echo.publish(Pong(cam="c", n=1))
        echo.pub = object()  # connected or not, the declaration is checked first
        with pytest.raises(TypeError, match="declares no single output for Ping"):
            echo.publish(Ping(cam="c", n=1))


async def test_typed_inputs_outputs_and_a_raising_handler():
    with private_bus() as bus:
        echo = Echo(bus)
        inputs = [
            Ping(cam="a", n=1),
            Ping(cam="b", n=13),
            ("ping/a", Pong(cam="a", n=99)),
            Ping(cam="a", n=2),
            ("raw/x", Pong(cam="z", n=0)),
            ("more/y", Ping(cam="z", n=0)),
        ]
        result = await run_test(echo, inputs)
    assert result.topics == ["pong/a", "pong/a"]  # n=13 raised, the Pong on ping/ was not a Ping
    assert [p.n for p in result.of(Pong)] == [1, 2]
    assert echo.raw == ["raw/x", "more/y"]
    c = result.counters
    assert c["received"] == 6 and c["errors"] == 1 and c["errors.on_ping"] == 1 and c["ignored"] == 1
    assert c["handled.on_ping"] == 2 and c["handled.on_raw"] == 2 and c["published"] == 2
