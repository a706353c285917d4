"""A mitmproxy script addon that does nothing in the three hooks rumproxy uses: `scripts/bench`'s
`pass-hooks` configuration, the floor any `-s` addon with these hooks stands on (mitmproxy
dispatches every event through the script's addons)."""


class HooksOnly:
    def request(self, flow) -> None:
        pass

    def responseheaders(self, flow) -> None:
        pass

    def response(self, flow) -> None:
        pass


addons = [HooksOnly()]
