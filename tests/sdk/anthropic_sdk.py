"""The official anthropic Python SDK against a running gateway: a message, a streamed one, a
token count, and an error in Anthropic's shape. Usage: anthropic_sdk.py BASE_URL VIRTUAL_KEY. Exits non-zero, naming the failed check."""

import sys

import anthropic


def main() -> None:
    base_url, key = sys.argv[1], sys.argv[2]
    client = anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0, timeout=10)

    message = client.messages.create(
        model="claude-sonnet", max_tokens=64, system="Be brief.",
        messages=[{"role": "user", "content": "Hello"}],
    )
    assert message.content and message.content[0].text, "message: empty"
    assert message.stop_reason == "end_turn", f"message: stop_reason {message.stop_reason}"
    assert message.usage.output_tokens > 0, "message: no usage"

    with client.messages.stream(
        model="claude-sonnet", max_tokens=64, messages=[{"role": "user", "content": "Hello"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text, "stream: no text"
    assert final.stop_reason == "end_turn", f"stream: stop_reason {final.stop_reason}"

    counted = client.beta.messages.count_tokens(
        model="claude-sonnet", system="Be brief.", messages=[{"role": "user", "content": "Hello"}],
        betas=["token-counting-2024-11-01"],
    )
    # An estimate: at least one token per word, at most one per byte.
    assert 2 <= counted.input_tokens <= len("Be brief.Hello"), f"count: {counted.input_tokens}"

    try:
        client.messages.create(
            model="no-such-model", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
        raise AssertionError("unknown model: no error")
    except anthropic.NotFoundError as error:
        assert error.body["error"]["type"] == "not_found_error", f"error shape: {error.body}"
    print("anthropic sdk: ok")


if __name__ == "__main__":
    main()
