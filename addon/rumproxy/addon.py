"""The mitmproxy addon: wires the hooks to the rules, the trace context and the rewriters.

Fail open: whatever goes wrong while instrumenting a response, the client gets the response the
upstream sent, and the log gets one line saying why.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import weakref
from pathlib import Path

from mitmproxy import ctx, exceptions, http

from rumproxy import codecs, decision, flownotes, hosting, memo, pagerequest, reversehost, tracing, vectorstate, wholebody
from rumproxy.activerules import ActiveRules
from rumproxy.coalesce import CoalescingStream
from rumproxy.flownotes import UrlLabel, annotate
from rumproxy.headerview import Edit, HeaderView
from rumproxy.pagestream import page_stream, streamed_framing
from rumproxy.planning import Plan, instrumented_fields, make_plan, site, streamable
from rumproxy.redirects import FollowedTrace, RedirectTraces, client_of
from rumproxy.reload import RulesWatcher
from rumproxy.rules import Rule, RulesError, load_rules
from rumproxy.settings import MEMO_MIB, Settings, declare_options
from rumproxy.snippet import PageTrace
from rumproxy.stream import StreamOutcome
from rumproxy.streamnotices import OwnStreamNotices

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class FlowState:
    """What the request hook decided, for the response hooks of the same flow."""

    rule: Rule
    trace: PageTrace | None = None
    tracestate: str | None = None
    plan: Plan | None = None
    # The response's headers as responseheaders read them.
    response_headers: HeaderView | None = None


class RumInject:
    def __init__(self, default_rules: Path) -> None:
        self.default_rules = default_rules
        self.active: ActiveRules | None = None
        self.flows: weakref.WeakKeyDictionary[http.HTTPFlow, FlowState] = weakref.WeakKeyDictionary()
        self.memo = memo.RewriteMemo(MEMO_MIB << 20)
        self.settings: Settings | None = None  # set by configure(), with the rules the hooks wait for
        self.watcher = RulesWatcher(self._reload)
        self.stream_notices = OwnStreamNotices()
        self.redirects = RedirectTraces()
        self.unnamed_hosts = reversehost.UnnamedHostNotices()

    def load(self, loader) -> None:
        declare_options(loader, self.default_rules)

    def configure(self, updated: set[str]) -> None:
        # Nothing changes unless all of it is valid (mitmproxy then puts the options back and
        # configures again with them).
        settings = Settings.from_options(ctx.options)
        if "rum_rules" in updated:
            path = Path(ctx.options.rum_rules).expanduser()
            try:
                self.active = ActiveRules.of(load_rules(path))
            except RulesError as e:
                raise exceptions.OptionsError(f"rum_rules: {e}") from None
            self.watcher.watch(path, self.active.rules.read_files())
        if updated & {"rum_rules", "mode", "keep_host_header"}:
            self._check_reverse_host()
        self.settings = settings
        self.memo.budget = settings.memo_bytes

    def _check_reverse_host(self) -> None:
        if self.active is None:
            return
        # Options of mitmproxy's proxy server, which a host without one (tests, mitmweb's offline use) lacks.
        options = ctx.options
        modes, keep_host_header = getattr(options, "mode", ()), getattr(options, "keep_host_header", False)
        self.unnamed_hosts.configure(modes, keep_host_header)
        unnamed = reversehost.unnamed_upstreams(modes, keep_host_header, self.active.rules)
        if unnamed:
            logger.warning(reversehost.warning(unnamed, self.active.rules.source))

    def running(self) -> None:
        self.stream_notices.install()
        self.watcher.start()

    def done(self) -> None:
        self.watcher.stop()
        self.stream_notices.uninstall()

    def _reload(self, path: Path) -> None:
        try:
            self.active = ActiveRules.of(load_rules(path))
        except RulesError as e:
            logger.error(f"rules not reloaded, the last good rules stay active: {e}")
        except Exception as e:  # noqa: BLE001 - a reload must never take the proxy down
            logger.error(f"rules not reloaded, the last good rules stay active: {path}: {e!r}")
        else:
            self.watcher.watch(path, self.active.rules.read_files())  # the files it reads may be others now
            logger.info(f"rules reloaded from {path}: {len(self.active.rules.rules)} rule(s)")
            self._check_reverse_host()

    # --- request side ---

    def request(self, flow: http.HTTPFlow) -> None:
        if self.active is None or flow.response is not None:
            return
        try:
            self._request(flow)
        except Exception as e:  # noqa: BLE001 - fail open
            logger.error(f"{flow.request.pretty_url}: request left untouched: {e!r}")

    def _request(self, flow: http.HTTPFlow) -> None:
        active = self.active
        assert active is not None
        request = flow.request
        request_headers = request.headers
        headers = HeaderView(request_headers)
        host, port = site(request, headers)
        path = request.path.split("?", 1)[0]
        if path.startswith(hosting.PREFIX):
            entry = active.hosted.get(path)
            if entry is not None and active.rules.names_host(host, port):
                self._serve(flow, entry)
            return
        rule = active.rules.match(host, port, path)
        if rule is None and self.unnamed_hosts.enabled:
            self.unnamed_hosts.unmatched(flow, host, port, headers, active.rules)
        if rule is None or decision.is_never_a_page(headers):
            # Sub-resources and API calls outnumber pages many times over: not tracked, their
            # responses cost nothing (a debug line per response went through every mitmproxy addon
            # as add_log).
            return
        # Most navigations follow no redirect: a lookup only while some redirect waits.
        follows = None
        if self.redirects.waiting:
            follows = self.redirects.take(client_of(flow, headers.get(b"user-agent"), headers.get(b"referer")), request.path)
        upstream = pagerequest.prepare(request.method, headers, rule, prefer_gzip=self.settings.prefer_gzip, follows=follows)
        if upstream.edits:
            request_headers.fields = headers.edited(upstream.edits)
        self.flows[flow] = FlowState(rule, upstream.trace, upstream.tracestate)

    def _serve(self, flow: http.HTTPFlow, entry: hosting.HostedFile) -> None:
        request = flow.request
        answer = hosting.respond(entry, request.method, request.headers.get("if-none-match"), request.headers.get("accept-encoding"))
        flow.response = hosting.as_response(answer)
        annotate(flow, "served the agent bundle from " + entry.path)

    # --- response side ---

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        state = self.flows.get(flow)
        if state is None or flow.response is None:
            return
        try:
            self._responseheaders(flow, state)
        except Exception as e:  # noqa: BLE001 - fail open: headers are changed last
            self.flows.pop(flow, None)
            logger.error(f"{flow.request.pretty_url}: response left as received: {e!r}")
            annotate(flow, f"rule {state.rule.name}: error, left as received: {e!r}")

    def _responseheaders(self, flow: http.HTTPFlow, state: FlowState) -> None:
        response = flow.response
        assert response is not None
        headers = HeaderView(response.headers)
        if not state.rule.inject:
            self.flows.pop(flow, None)
            return self._trace_only(flow, state, headers)
        skip = decision.response_skip_reason(flow.request.method, response.status_code, headers, state.rule)
        if skip is None:
            state.plan = self._plan(flow, state, headers)
            if state.plan is None:
                skip = "Content-Security-Policy would block the snippet and csp.adjust is false"
        if skip is not None:
            self.flows.pop(flow, None)
            if state.trace is not None and decision.is_redirect(response.status_code, headers):
                self._remember_redirect(flow, state, headers[b"location"])
            return self._skipped(flow, state, skip)
        assert state.plan is not None
        if not self._should_stream(flow, state.plan, headers):
            state.response_headers = headers
            return  # the response hook rewrites the whole body
        self.flows.pop(flow, None)
        encoding = codecs.normalize_encoding(headers.get(b"content-encoding")) or "identity"
        stream = page_stream(
            flow.request, response, state.plan, encoding, headers, self.settings, self.memo,
            on_done=lambda outcome: self._streamed(flow, state, outcome),
        )  # fmt: skip
        # Headers go out before the body is seen: they describe the instrumented page. Should the
        # stream pass the body through after all (an AMP page, say), they still fit it.
        framing = streamed_framing(flow.request.http_version, headers)
        response.headers.fields = instrumented_fields(headers, state.rule, state.trace, state.tracestate, state.plan.csp, framing)
        response.stream = CoalescingStream(stream)
        self.stream_notices.expect(flow.request.host)

    def _remember_redirect(self, flow: http.HTTPFlow, state: FlowState, location: str) -> None:
        request = flow.request
        client = client_of(flow, request.headers.get("user-agent"), request.headers.get("referer"))
        self.redirects.remember(client, request.path, location, FollowedTrace(state.trace, state.tracestate))

    def _trace_only(self, flow: http.HTTPFlow, state: FlowState, headers: HeaderView) -> None:
        """A rule with inject: false still tells the client which trace its page is in."""
        response = flow.response
        assert response is not None
        if state.trace is not None:
            edits = tracing.expose(headers, state.trace, state.rule.trace, state.tracestate)
            response.headers.fields = headers.edited(edits)
        self._record(flow, state, "trace only (inject: false)")

    def _should_stream(self, flow: http.HTTPFlow, plan: Plan, headers: HeaderView) -> bool:
        response = flow.response
        assert response is not None
        if response.stream:
            return True  # mitmproxy streams it anyway (stream_large_bodies): stream it our way
        if self.settings.rewrites_whole(flow.request.http_version, headers.get(b"content-length")):
            return False
        return streamable(plan, headers)

    def _streamed(self, flow: http.HTTPFlow, state: FlowState, outcome: StreamOutcome) -> None:
        if outcome.injected:
            detail = memo.REMEMBERED if outcome.remembered else memo.HEAD_REMEMBERED if outcome.known_head else ""
            self._record(flow, state, f"injected while streaming ({outcome.placement}, byte {outcome.offset}){detail}")
        else:
            self._skipped(flow, state, outcome.reason)

    def response(self, flow: http.HTTPFlow) -> None:
        state = self.flows.pop(flow, None)
        if state is None or flow.response is None or state.plan is None:
            return
        body = flow.response.raw_content
        if body is None:
            # mitmproxy switched to streaming after responseheaders (stream_large_bodies)
            return self._skipped(flow, state, "body was streamed by mitmproxy (stream_large_bodies)")
        try:
            self._response(flow, state, state.plan, body)
        except Exception as e:  # noqa: BLE001 - fail open: nothing was changed yet
            logger.error(f"{flow.request.pretty_url}: response left as received: {e!r}")
            annotate(flow, f"rule {state.rule.name}: error, left as received: {e!r}")
        finally:
            vectorstate.clear()  # after ISA-L, before mitmproxy's code runs on

    def _response(self, flow: http.HTTPFlow, state: FlowState, plan: Plan, body: bytes) -> None:
        response = flow.response
        assert response is not None
        if not body:
            return self._skipped(flow, state, "empty body")
        response_headers = response.headers
        headers = state.response_headers
        if headers is None or headers.fields is not response_headers.fields:
            # Another addon edited the headers since responseheaders (an edit replaces the fields).
            headers = HeaderView(response_headers)
        encoding = codecs.normalize_encoding(headers.get(b"content-encoding")) or "identity"
        key = memo.page_key(flow.request, headers, self.settings.scan_limit) if self.memo.budget else None
        job = wholebody.Job(
            encoding=encoding,
            content_type=headers.get(b"content-type"),
            markup=plan.markup,
            markup_fixed=plan.markup_fixed,
            edit_policy=plan.edit_policy,
            scan_limit=self.settings.scan_limit,
            memo=self.memo,
            memo_key=key,
            label=UrlLabel(flow.request),
            splicing_stream=(
                functools.partial(page_stream, flow.request, response, plan, "gzip", headers, self.settings, self.memo, key=key)
                if encoding == "gzip" and self.settings.gzip_splice and streamable(plan, headers)
                else None
            ),
        )
        result = wholebody.rewrite(body, job)
        if result.body is None:
            return self._skipped(flow, state, result.reason)
        framing: dict[bytes, Edit] = {}
        if b"transfer-encoding" not in headers:
            framing[b"content-length"] = str(len(result.body))
        fields = instrumented_fields(headers, state.rule, state.trace, state.tracestate, plan.csp, framing)
        # Nothing above changed the response; these assignments cannot fail.
        response_headers.fields = fields
        response.raw_content = result.body
        self._record(flow, state, f"injected ({result.placement}, byte {result.offset}){result.detail}")

    def _plan(self, flow: http.HTTPFlow, state: FlowState, headers: HeaderView) -> Plan | None:
        assert self.active is not None
        return make_plan(flow.request, state.rule, state.trace, headers, self.active.bootstrap(state.rule))

    def _skipped(self, flow: http.HTTPFlow, state: FlowState, reason: str) -> None:
        logger.debug("%s: not injected: %s", UrlLabel(flow.request), reason)
        self._record(flow, state, f"skipped: {reason}")

    def _record(self, flow: http.HTTPFlow, state: FlowState, action: str) -> None:
        flownotes.record(flow, state.rule.name, state.trace, action)

