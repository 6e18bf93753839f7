#!/usr/bin/env python3
"""Turns a request captured from a real client into a fixture: its structure as sent (every
field, item and block type, tool shapes), its long texts cut to their first words, and only the
first few tools, so that the repository keeps the shape and none of the client's prompts.

    scripts/trim_fixture.py CAPTURE.json OUT.json
"""
import json
import sys

MAX_TEXT = 80
MAX_TOOLS = 4


def trim(value, key=None):
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + " [...]"
    if isinstance(value, list):
        if key == "tools":
            # The first few client tools, and every tool of another kind (hosted, namespaces).
            plain = [v for v in value if v.get("type", "function") in ("function", "custom")
                     and "tools" not in v]
            other = [v for v in value if v not in plain]
            value = plain[:MAX_TOOLS] + [dict(v, tools=v["tools"][:1]) if "tools" in v else v
                                         for v in other]
        return [trim(v) for v in value]
    if isinstance(value, dict):
        # Schemas are structure: kept whole, but their descriptions cut.
        return {k: trim(v, k) for k, v in value.items()}
    return value


def main():
    capture = json.load(open(sys.argv[1]))
    body = json.loads(capture["body"])
    headers = {k.lower(): v for k, v in capture["headers"].items()
               if k.lower() in ("anthropic-beta", "anthropic-version", "accept", "content-type")}
    out = {"path": capture["path"], "headers": headers, "body": trim(body)}
    json.dump(out, open(sys.argv[2], "w"), indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
