"""The official openai Python SDK against a running gateway: chat, streaming, embeddings
(the SDK asks for base64 by default), the Responses API (streamed and not), legacy
completions and models. Usage: openai_sdk.py BASE_URL VIRTUAL_KEY.
Exits non-zero, naming the failed check, if anything is off."""

import sys

from openai import OpenAI


def main() -> None:
    base_url, key = sys.argv[1], sys.argv[2]
    client = OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=10)

    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}], max_tokens=16
    )
    assert reply.choices[0].message.content, "chat: empty reply"
    assert reply.usage and reply.usage.total_tokens > 0, "chat: no usage"

    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage:
            usage = chunk.usage
    assert text, "stream: no content"
    assert usage is not None, "stream: no usage chunk"

    embedded = client.embeddings.create(model="text-embedding-3-small", input=["one", "two"])
    assert len(embedded.data) == 2, "embeddings: wrong count"
    assert all(isinstance(x, float) for x in embedded.data[0].embedding), "embeddings: not floats"

    response = client.responses.create(
        model="gpt-4o-mini", instructions="Be brief.", input="Hello", max_output_tokens=16
    )
    assert response.output_text, "responses: empty output"
    assert response.status == "completed", f"responses: status {response.status}"
    assert response.usage and response.usage.total_tokens > 0, "responses: no usage"

    events = client.responses.create(model="gpt-4o-mini", input="Hello", stream=True)
    deltas, completed = "", None
    for event in events:
        if event.type == "response.output_text.delta":
            deltas += event.delta
        elif event.type == "response.completed":
            completed = event.response
    assert deltas, "responses stream: no text"
    assert completed is not None and completed.output_text == deltas, "responses stream: no end"
    assert completed.usage and completed.usage.output_tokens > 0, "responses stream: no usage"

    completion = client.completions.create(model="gpt-4o-mini", prompt="Say hi", max_tokens=16)
    assert completion.choices[0].text, "completions: empty text"
    assert completion.usage and completion.usage.total_tokens > 0, "completions: no usage"

    models = [m.id for m in client.models.list()]
    assert "gpt-4o-mini" in models, f"models: {models}"

    try:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
        raise AssertionError("unknown model: no error")
    except Exception as error:  # the SDK's NotFoundError
        assert getattr(error, "status_code", None) == 404, f"unknown model: {error!r}"
    print("openai sdk: ok")


if __name__ == "__main__":
    main()
