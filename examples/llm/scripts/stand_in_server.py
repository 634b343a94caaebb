"""A scripted stand-in for an OpenAI-compatible server, used once to record the cache that
ships with this example (no model runs on the machine that recorded it). It answers every
chat completion with the module below; `clab run --offline` replays that recorded answer.

    python3 scripts/stand_in_server.py &   # listens on 127.0.0.1:11434
    clab run --force
"""

import json
from http.server import BaseHTTPRequestHandler, HTTPServer

MODULE = '''"""Turn titles into URL slugs."""

import re
import unicodedata


def slugify(text: str, separator: str = "-") -> str:
    """Lowercase ASCII slug of `text`, words joined by `separator`."""
    if not separator:
        raise ValueError("separator must not be empty")
    ascii_text = (
        unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    )
    words = re.split(r"[^a-z0-9]+", ascii_text.lower())
    return separator.join(word for word in words if word)
'''


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        self.rfile.read(length)
        body = json.dumps(
            {
                "choices": [
                    {"message": {"role": "assistant", "content": f"```python\n{MODULE}```\n"}}
                ],
                "usage": {"prompt_tokens": 180, "completion_tokens": 120},
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    HTTPServer(("127.0.0.1", 11434), Handler).serve_forever()
