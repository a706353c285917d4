"""A mitmproxy script addon that does nothing in the three hooks rumproxy uses: `scripts/bench`'s
`pass-hooks` configuration, the floor any `-s` addon with these hooks stands on (mitmproxy
dispatches every event through the script's addons). With `hooks_stream` set (`pass-hooks-stream`)
it also streams every response through a callable that returns each chunk as it is: the floor of an
addon that streams, what mitmproxy's streaming of a body costs by itself."""

from mitmproxy import ctx


def _forward(chunk: bytes) -> bytes:
    return chunk


class HooksOnly:
    def load(self, loader) -> None:
        loader.add_option("hooks_stream", bool, False, "Stream every response through a callable that changes nothing.")

    def request(self, flow) -> None:
        pass

    def responseheaders(self, flow) -> None:
        if ctx.options.hooks_stream:
            flow.response.stream = _forward

    def response(self, flow) -> None:
        pass


addons = [HooksOnly()]
