"""The model stand-in speaks the chat completions wire format the official `openai` client expects, on both the
OpenAI and the Azure OpenAI paths, including its failure modes."""

from __future__ import annotations

import aiohttp
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from loadtest.model_standin import ModelStandIn, Scripted, count_tokens, pieces

QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": "How do I scale the bot out?"}]
QUESTION_TEXT = "How do I scale the bot out?"


def openai_client(model: ModelStandIn, **options: object) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=model.openai_base_url, api_key="test-key", max_retries=0, **options)  # type: ignore[arg-type]


async def test_a_streamed_answer_has_its_chunks_a_finish_reason_and_the_usage_last(model: ModelStandIn) -> None:
    model.script("Scale out with more workers.")
    async with openai_client(model) as client:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=QUESTION, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Scale out with more workers."
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.prompt_tokens == count_tokens(QUESTION_TEXT)
    assert usage.completion_tokens == len(pieces(text)) == 5
    assert all(c.usage is None for c in chunks[:-1])
    assert {c.id for c in chunks} == {chunks[0].id}
    assert chunks[0].id.startswith("chatcmpl-")
    assert chunks[0].model == "gpt-4o-mini-2024-07-18"
    assert model.served_tokens() == (usage.prompt_tokens, usage.completion_tokens)


async def test_without_include_usage_the_stream_has_no_usage_chunk(model: ModelStandIn) -> None:
    async with openai_client(model) as client:
        stream = await client.chat.completions.create(model="m", messages=QUESTION, stream=True)
        chunks = [chunk async for chunk in stream]
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


async def test_a_non_streamed_answer_is_one_completion_with_usage(model: ModelStandIn) -> None:
    async with openai_client(model) as client:
        completion = await client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
    assert completion.choices[0].message.content == model.default_answer
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == len(pieces(model.default_answer))


async def test_the_azure_path_takes_the_deployment_api_version_and_api_key(model: ModelStandIn) -> None:
    client = openai.AsyncAzureOpenAI(
        azure_endpoint=model.azure_endpoint,
        azure_deployment="chat",
        api_version="2024-10-21",
        api_key="test-key",
        max_retries=0,
    )
    async with client:
        stream = await client.chat.completions.create(
            model="chat", messages=QUESTION, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
    # Azure's first chunk carries the prompt filter results and no choices, id or model.
    assert chunks[0].choices == []
    assert chunks[0].id == ""
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == model.default_answer
    assert chunks[-1].usage is not None
    (request,) = model.requests
    assert (request.deployment, request.api_version, request.authorization) == ("chat", "2024-10-21", "api-key")


async def test_the_azure_path_accepts_an_entra_token_and_refuses_no_credentials(model: ModelStandIn) -> None:
    async def token() -> str:
        return "entra-token"

    client = openai.AsyncAzureOpenAI(
        azure_endpoint=model.azure_endpoint, api_version="2024-10-21", azure_ad_token_provider=token, max_retries=0
    )
    async with client:
        await client.chat.completions.create(model="chat", messages=QUESTION)
    assert model.requests[-1].authorization == "bearer"
    url = f"{model.base_url}/openai/deployments/chat/chat/completions?api-version=2024-10-21"
    async with aiohttp.ClientSession() as session, session.post(url, json={"messages": QUESTION}) as response:
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "invalid_api_key"
    no_version = url.split("?")[0]
    async with aiohttp.ClientSession() as session, session.post(no_version, headers={"api-key": "k"}) as response:
        assert response.status == 404  # no api-version


async def test_429_says_when_to_retry_and_500_is_a_server_error(model: ModelStandIn) -> None:
    model.script(Scripted(status=429, retry_after=7), Scripted(status=500))
    async with openai_client(model) as client:
        with pytest.raises(openai.RateLimitError) as limited:
            await client.chat.completions.create(model="m", messages=QUESTION, stream=True)
        assert limited.value.response.headers["retry-after"] == "7"
        assert limited.value.code == "rate_limit_exceeded"
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(model="m", messages=QUESTION)
        await client.chat.completions.create(model="m", messages=QUESTION)  # the script is used up
    assert (model.errors(429), model.errors(500), model.answers) == (1, 1, 1)
    assert model.served_tokens()[1] == len(pieces(model.default_answer))


async def test_the_slow_mode_delays_the_first_byte_past_a_client_timeout(model: ModelStandIn) -> None:
    model.slow(2.0)
    async with openai_client(model, timeout=0.3) as client:
        with pytest.raises(openai.APITimeoutError):
            await client.chat.completions.create(model="m", messages=QUESTION, stream=True)
    model.recover()
    model.script(Scripted(delay=0.2, text="late but here"))
    async with openai_client(model) as client:
        completion = await client.chat.completions.create(model="m", messages=QUESTION)
    assert completion.choices[0].message.content == "late but here"
