"""Structured Outputs end to end: the SDK's `responses.parse` / `stream` with pydantic
models against the built-in model (grammar-constrained decoding), and the strict-schema
400s the hosted API gives for schemas outside the subset."""

from __future__ import annotations

import asyncio
import datetime
import enum
import uuid
from typing import Any, Literal

import openai
import pytest
from openai import AsyncOpenAI, OpenAI
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel, Field

from responsed.protocol.strict_schema import validate_output
from wire import check_sdk_response

MODEL = "smollm2"
# Decoding stops when the grammar is complete; the cap only bounds a runaway.
FAST: dict[str, Any] = {"temperature": 0, "max_output_tokens": 160}
INSTRUCTIONS = "Extract the information as JSON."


class CalendarEvent(BaseModel):
    name: str
    date: str
    participants: list[str]


class Address(BaseModel):
    street: str
    city: str


class Person(BaseModel):
    name: str
    address: Address


class ShoppingList(BaseModel):
    items: list[str] = Field(min_length=2, max_length=3)


class Mood(enum.Enum):
    HAPPY = "happy"
    SAD = "sad"
    ANGRY = "angry"


class Sentiment(BaseModel):
    mood: Mood


class Ticket(BaseModel):
    title: str
    priority: Literal["low", "medium", "high"]


class Circle(BaseModel):
    kind: Literal["circle"]
    radius: int


class Square(BaseModel):
    kind: Literal["square"]
    side: int


class Drawing(BaseModel):
    shape: Circle | Square


class Contact(BaseModel):
    name: str
    phone: str | None


class Rating(BaseModel):
    stars: int = Field(ge=1, le=5)


class Product(BaseModel):
    code: str = Field(pattern=r"^[A-Z]{3}-[0-9]{3}$")


class Appointment(BaseModel):
    day: datetime.date
    starts: datetime.datetime
    booking: uuid.UUID


class TreeNode(BaseModel):
    name: str
    children: list[TreeNode] = Field(max_length=2)


class Flags(BaseModel):
    is_open: bool
    count: int
    ratio: float


CASES: list[tuple[type[BaseModel], str]] = [
    (CalendarEvent, "Alice and Bob are going to a science fair on Friday."),
    (Person, "Ann lives at 5 Main Street in Springfield."),
    (ShoppingList, "Buy milk, eggs and bread."),
    (Sentiment, "I love this sunny day!"),
    (Ticket, "The login page is down for everyone."),
    (Drawing, "Draw a circle with radius 3."),
    (Contact, "Call Tom."),
    (Rating, "Give the film four stars out of five."),
    (Product, "The product code is ABC-123."),
    (Appointment, "Dentist on 2024-05-06 at 10:30 UTC."),
    (TreeNode, "Root 'a' has child 'b', and 'b' has child 'c'."),
    (Flags, "The shop is open, 3 visitors, ratio 0.5."),
]


def check_parsed(model: type[BaseModel], parsed: Any, text: str) -> None:
    """`parsed` is the model, and the text it came from validates (formats included)
    against the schema the SDK sent."""
    assert isinstance(parsed, model), parsed
    assert validate_output(to_strict_json_schema(model), text) is None


@pytest.mark.parametrize(("model", "prompt"), CASES, ids=[m.__name__ for m, _ in CASES])
def test_parse(client: OpenAI, model: type[BaseModel], prompt: str) -> None:
    response = client.responses.parse(
        model=MODEL,
        instructions=INSTRUCTIONS,
        input=prompt,
        text_format=model,
        **FAST,
    )
    check_sdk_response(response)
    assert response.status == "completed", response.incomplete_details
    assert response.text.format.type == "json_schema"  # type: ignore[union-attr]
    check_parsed(model, response.output_parsed, response.output_text)
    if model is TreeNode:  # the recursive $ref was followed, not just allowed
        assert response.output_parsed.children[0].children  # type: ignore[union-attr]


async def test_parse_async(aclient: AsyncOpenAI) -> None:
    async def one(model: type[BaseModel], prompt: str) -> Any:
        response = await aclient.responses.parse(
            model=MODEL, instructions=INSTRUCTIONS, input=prompt, text_format=model, **FAST
        )
        check_sdk_response(response)
        return response

    cases = [CASES[0], CASES[4], CASES[5]]  # CalendarEvent, Ticket, Drawing: queued together
    responses = await asyncio.gather(*(one(model, prompt) for model, prompt in cases))
    for (model, _), response in zip(cases, responses, strict=True):
        check_parsed(model, response.output_parsed, response.output_text)


@pytest.mark.parametrize(
    ("model", "prompt"),
    [CASES[0], CASES[3], CASES[6]],
    ids=["CalendarEvent", "Sentiment", "Contact"],
)
def test_stream(client: OpenAI, model: type[BaseModel], prompt: str) -> None:
    deltas: list[str] = []
    with client.responses.stream(
        model=MODEL, instructions=INSTRUCTIONS, input=prompt, text_format=model, **FAST
    ) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    assert len(deltas) > 1  # streamed, not one block
    assert "".join(deltas) == final.output_text
    check_parsed(model, final.output_parsed, final.output_text)
    message = final.output[0]
    assert message.type == "message"
    assert message.content[0].parsed == final.output_parsed  # type: ignore[union-attr]


async def test_stream_async(aclient: AsyncOpenAI) -> None:
    async with aclient.responses.stream(
        model=MODEL, instructions=INSTRUCTIONS, input=CASES[1][1], text_format=Person, **FAST
    ) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.output_text.done" in kinds
    check_parsed(Person, final.output_parsed, final.output_text)


class GetWeather(BaseModel):
    """Get the current weather for a city."""

    city: str
    unit: Literal["celsius", "fahrenheit"]


@pytest.mark.parametrize("stream", [False, True])
def test_pydantic_function_tool(client: OpenAI, stream: bool) -> None:
    tool = openai.pydantic_function_tool(GetWeather)
    args: dict[str, Any] = {
        "model": MODEL,
        "input": "What is the weather in Paris, in celsius?",
        "tools": [tool],
        "tool_choice": {"type": "function", "name": "GetWeather"},
        **FAST,
    }
    if stream:
        with client.responses.stream(**args) as events:
            response = events.get_final_response()
    else:
        response = client.responses.parse(**args)
        check_sdk_response(response)
    assert response.tools[0].strict is True  # type: ignore[union-attr]
    calls = [item for item in response.output if item.type == "function_call"]
    assert len(calls) == 1
    assert calls[0].name == "GetWeather"
    assert isinstance(calls[0].parsed_arguments, GetWeather)
    assert calls[0].parsed_arguments == GetWeather.model_validate_json(calls[0].arguments)
    assert validate_output(to_strict_json_schema(GetWeather), calls[0].arguments) is None


# -- the hosted API's 400s for schemas outside the strict subset ----------------------


def bad_request(call: Any) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as caught:
        call()
    error = caught.value
    assert error.status_code == 400
    assert error.type == "invalid_request_error"
    return error


@pytest.mark.parametrize("stream", [False, True])
def test_strict_text_format_rejected(client: OpenAI, stream: bool) -> None:
    """Refused before anything is streamed, as an HTTP 400."""
    schema = to_strict_json_schema(Person)
    del schema["$defs"]["Address"]["additionalProperties"]
    error = bad_request(
        lambda: client.responses.create(
            model=MODEL,
            input="x",
            stream=stream,
            text={
                "format": {
                    "type": "json_schema",
                    "name": "person",
                    "schema": schema,
                    "strict": True,
                }
            },
        )
    )
    assert error.param == "text.format.schema"
    assert error.code == "invalid_json_schema"
    assert error.body["message"] == (  # type: ignore[index]
        "Invalid schema for response_format 'person': In context=('$defs', 'Address'), "
        "'additionalProperties' is required to be supplied and to be false."
    )


def test_non_strict_text_format_accepted(client: OpenAI) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    response = client.responses.create(
        model=MODEL,
        input="Say yes.",
        text={
            "format": {"type": "json_schema", "name": "loose", "schema": schema, "strict": False}
        },
        **FAST,
    )
    assert response.text.format.strict is False  # type: ignore[union-attr]
    assert validate_output(schema, response.output_text) is None


class WithDefault(BaseModel):
    name: str
    count: int = 3


def test_parse_with_default_rejected(client: OpenAI) -> None:
    """The SDK keeps non-null defaults, which strict mode does not permit."""
    error = bad_request(
        lambda: client.responses.parse(model=MODEL, input="x", text_format=WithDefault)
    )
    assert error.param == "text.format.schema"
    assert "In context=('properties', 'count'), 'default' is not permitted." in error.message


def test_strict_function_rejected(client: OpenAI) -> None:
    parameters = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    tool = {"type": "function", "name": "get_weather", "parameters": parameters, "strict": True}
    error = bad_request(
        lambda: client.responses.create(model=MODEL, input="x", tools=[tool])  # type: ignore[list-item]
    )
    assert error.param == "tools[0].parameters"
    assert error.code == "invalid_function_parameters"
    assert error.body["message"] == (  # type: ignore[index]
        "Invalid schema for function 'get_weather': In context=(), 'required' is required "
        "to be supplied and to be an array including every key in properties. Missing 'unit'."
    )
