"""Browser tests of the modes a client is not configured for (transparent, TUN, WireGuard):
Chromium runs in a network namespace of its own, the app, the intake and mitmdump behind it
(netns). Each module makes its topology: a `network` fixture and its addresses."""
