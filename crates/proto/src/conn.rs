//! [`Connection`]: one HTTP/1.x connection, either role, without IO.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{request, response, Method, Request, Response, StatusCode, Version};

use crate::config::Config;
use crate::decode::{Decoded, Decoder};
use crate::encode::Encoder;
use crate::error::{Error, ErrorKind};
use crate::event::Event;
use crate::fields::{self, ConnectionTokens, HeadFacts, KeepAliveParams};
use crate::framing::{body_framing, BodySize, Framing, Message};
use crate::head::parse::{
    check_incomplete_head, find_head_end, parse_request, parse_response, take_request,
    take_response,
};
use crate::head::write;
use crate::lines::{FieldLines, Relay};
use crate::persist;
use crate::role::Role;
use crate::state::{After, Exchange, MethodClass, Recv, Send};
use crate::write_buf::WriteBuf;

/// One HTTP/1.x connection in either role: bytes in, events out; calls in,
/// bytes out. See the [crate docs](crate) for the call order.
#[derive(Debug)]
pub struct Connection {
    role: Role,
    config: Arc<Config>,
    /// Received bytes not yet turned into events.
    buf: BytesMut,
    /// The peer's EOF was fed in.
    eof: bool,
    /// That EOF was not proven to be the peer's (see
    /// [`Connection::receive_unproven_eof`]).
    eof_unproven: bool,
    recv: Recv,
    send: Send,
    /// Request/response pairs in flight, oldest first.
    exchanges: VecDeque<Exchange>,
    /// Whether the connection may carry another exchange after the current ones.
    keep_alive: bool,
    /// Requests started on this connection (server: received; client: sent).
    started: u32,
    /// Client: the `Keep-Alive` parameters of the last response.
    peer_keep_alive: KeepAliveParams,
    /// Client: the requests the connection may carry in all, by the last
    /// `Keep-Alive: max` a response advertised (kept by responses without
    /// one, so the count goes on down).
    peer_request_limit: Option<u32>,
    /// Server: the last request announced the close itself and no byte has
    /// come after it (see [`Connection::peer_sent_last`]).
    peer_said_last: bool,
    /// Server: the `Keep-Alive` line of the last response that carried one.
    keep_alive_line: write::KeepAliveLine,
}

impl Connection {
    /// A new connection playing `role`, bounded by `config`.
    pub fn new(role: Role, config: Arc<Config>) -> Self {
        Connection {
            role,
            config,
            buf: BytesMut::new(),
            eof: false,
            eof_unproven: false,
            recv: Recv::Head { scanned: 0 },
            send: Send::Head,
            exchanges: VecDeque::new(),
            keep_alive: true,
            started: 0,
            peer_keep_alive: KeepAliveParams::default(),
            peer_request_limit: None,
            peer_said_last: false,
            keep_alive_line: write::KeepAliveLine::default(),
        }
    }

    /// A connection that already carried `requests_started` exchanges and was
    /// idle since, taken up again (a driver that set an idle connection aside
    /// keeps only this count). Request limits and `Keep-Alive: max` go on
    /// counting from it.
    pub fn resume(role: Role, config: Arc<Config>, requests_started: u32) -> Self {
        Connection {
            started: requests_started,
            ..Connection::new(role, config)
        }
    }

    /// The role this side plays.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The configuration.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    // ----- receiving ---------------------------------------------------------

    /// Feeds received bytes (split anywhere).
    pub fn receive(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The receive buffer, for a driver that reads straight into it (reserve
    /// space, read into the spare capacity). Equivalent to [`Connection::receive`]
    /// without the copy.
    pub fn recv_buf(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Received bytes not yet turned into events.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Feeds the peer's EOF (it closed its sending side).
    pub fn receive_eof(&mut self) {
        self.eof = true;
    }

    /// Feeds an EOF the transport could not prove was the peer's: the
    /// connection ended without the peer saying so (TLS without
    /// close_notify, which an attacker can forge by cutting the TCP stream).
    /// As [`Connection::receive_eof`], except that a close-delimited body
    /// ending there is [`ErrorKind::Truncated`], never complete.
    pub fn receive_unproven_eof(&mut self) {
        self.eof = true;
        self.eof_unproven = true;
    }

    /// Whether the peer's EOF was fed in.
    pub fn saw_eof(&self) -> bool {
        self.eof
    }

    /// The next event from the received bytes. Call until it returns
    /// [`Event::NeedData`] (feed more), [`Event::Paused`] (act first) or
    /// [`Event::Closed`].
    ///
    /// A remote error is sticky: every later call returns it again. A server
    /// answers it with [`Error::status`] (via [`Connection::send_response`], which
    /// stays possible when no response has started) and closes.
    pub fn next_event(&mut self) -> Result<Event, Error> {
        match &mut self.recv {
            Recv::Failed(e) => Err(e.clone()),
            Recv::Closed => Ok(Event::Closed),
            Recv::Switched => Ok(Event::Paused),
            Recv::Done => {
                self.discard_input();
                Ok(Event::Paused)
            }
            Recv::Head { .. } => self.read_head(),
            Recv::Body { decoder, then } => {
                let then = *then;
                let close_delimited = decoder.is_close_delimited();
                match decoder.decode(&mut self.buf, self.eof, &self.config) {
                    Ok(Decoded::Data(data)) => Ok(Event::Data(data)),
                    Ok(Decoded::NeedData) => Ok(Event::NeedData),
                    Ok(Decoded::End(_)) if close_delimited && self.eof_unproven => {
                        let e = Error::remote(ErrorKind::Truncated {
                            expected: None,
                            received: decoder.received(),
                        });
                        Err(self.fail_recv(e))
                    }
                    Ok(Decoded::End(trailers)) => {
                        self.received_message_end(then);
                        Ok(Event::End { trailers })
                    }
                    Err(e) => Err(self.fail_recv(e)),
                }
            }
        }
    }

    fn read_head(&mut self) -> Result<Event, Error> {
        if self.role == Role::Server {
            if !self.keep_alive {
                // A close was decided: no further request is read.
                self.recv = Recv::Done;
                self.discard_input();
                return Ok(Event::Paused);
            }
            if self.exchanges.len() >= self.config.max_pipelined.max(1)
                || self.exchanges.back().is_some_and(Exchange::may_switch)
            {
                return Ok(Event::Paused);
            }
        }
        // Empty lines before a message are ignored (RFC 9112 §2.2).
        while self.buf.starts_with(b"\r\n") {
            self.buf.advance(2);
            self.recv = Recv::Head { scanned: 0 };
        }
        if self.buf.is_empty() {
            if self.eof {
                self.recv = Recv::Closed;
                return Ok(Event::Closed);
            }
            return Ok(Event::NeedData);
        }
        if self.role == Role::Client && self.exchanges.is_empty() {
            return Err(self.fail_recv(Error::remote(ErrorKind::UnexpectedData)));
        }
        // A head that arrived whole is parsed and taken off the buffer in one
        // pass; anything else (a head still coming in, or one to refuse)
        // takes the general path below.
        if matches!(self.recv, Recv::Head { scanned: 0 }) {
            // Each arm returns its event itself (an event is large: one move
            // fewer than through a shared variable).
            match self.role {
                Role::Server => {
                    if let Some(parsed) = take_request(&mut self.buf, &self.config) {
                        // The head goes into the event where it lies: through
                        // a call by value it would be copied once more.
                        return match parsed {
                            Ok((head, facts)) => match self.request_started(&head, facts) {
                                Ok(body) => Ok(Event::Request { head, body }),
                                Err(e) => Err(self.fail_recv(e)),
                            },
                            Err(e) => Err(self.fail_recv(e)),
                        };
                    }
                }
                Role::Client => {
                    let as_lines = self.exchanges.front().is_some_and(|x| x.as_lines);
                    if let Some(parsed) = take_response(&mut self.buf, &self.config, as_lines) {
                        return parsed
                            .and_then(|(res, facts)| self.response_started(res, facts))
                            .map_err(|e| self.fail_recv(e));
                    }
                }
            }
        }
        let Recv::Head { scanned } = &mut self.recv else {
            unreachable!("read_head outside Recv::Head")
        };
        match find_head_end(&self.buf, scanned) {
            Err(kind) => Err(self.fail_recv(Error::remote(kind))),
            Ok(None) => {
                let is_request = self.role == Role::Server;
                if let Err(e) = check_incomplete_head(&self.buf, is_request, &self.config) {
                    return Err(self.fail_recv(e));
                }
                if self.eof {
                    let e = Error::remote(ErrorKind::Truncated {
                        expected: None,
                        received: 0,
                    });
                    return Err(self.fail_recv(e));
                }
                Ok(Event::NeedData)
            }
            Ok(Some(end)) => {
                let head = self.buf.split_to(end).freeze();
                self.recv = Recv::Head { scanned: 0 };
                let event = match self.role {
                    Role::Server => self.request_head(&head),
                    Role::Client => self.response_head(&head),
                };
                event.map_err(|e| self.fail_recv(e))
            }
        }
    }

    /// Server: a request head arrived.
    fn request_head(&mut self, head: &Bytes) -> Result<Event, Error> {
        let (req, facts) = parse_request(head, &self.config)?;
        let body = self.request_started(&req, facts)?;
        Ok(Event::Request { head: req, body })
    }

    /// Server: a request head was parsed; its exchange begins. Returns how
    /// its body is framed.
    fn request_started(&mut self, req: &Request<()>, facts: HeadFacts) -> Result<Framing, Error> {
        let framing = body_framing(Message::Request, req.version(), &facts)?;
        self.check_declared_length(framing)?;
        let mut tokens = facts.connection;
        if self.config.honour_proxy_connection {
            let p = facts.proxy_connection;
            tokens.close |= p.close;
            // RFC 9112 §9.3: an HTTP/1.0 request's `Connection: keep-alive`
            // may have been passed on by a blind relay between the client and
            // this proxy (the relay then waits for a close that never comes),
            // so only the client's own word to its proxy counts.
            tokens.keep_alive = if req.version() == Version::HTTP_10 {
                p.keep_alive
            } else {
                tokens.keep_alive || p.keep_alive
            };
        }
        self.started = self.started.saturating_add(1);
        let limit_reached = self
            .config
            .keep_alive
            .max_requests
            .is_some_and(|max| self.started >= max);
        self.peer_said_last = !persist::message_keeps_alive(req.version(), tokens);
        let close = !self.keep_alive
            || !self.config.keep_alive.enabled
            || limit_reached
            || self.peer_said_last;
        if close {
            self.keep_alive = false;
        }
        self.exchanges.push_back(Exchange {
            method: MethodClass::of(req.method()),
            version: req.version(),
            close,
            upgrade: tokens.upgrade && facts.upgrade,
            continue_pending: req.version() == Version::HTTP_11 && facts.expect_continue,
            request_done: false,
            informational: 0,
            as_lines: false,
        });
        self.recv = Recv::Body {
            decoder: Decoder::new(framing),
            then: if close { After::Close } else { After::Next },
        };
        Ok(framing)
    }

    /// Client: a response head arrived for the oldest request in flight.
    fn response_head(&mut self, head: &Bytes) -> Result<Event, Error> {
        let as_lines = self.exchanges.front().is_some_and(|x| x.as_lines);
        let (res, facts) = parse_response(head, &self.config, as_lines)?;
        self.response_started(res, facts)
    }

    /// Client: a response head was parsed; it answers the oldest request in
    /// flight.
    fn response_started(&mut self, res: Response<()>, facts: HeadFacts) -> Result<Event, Error> {
        let exchange = *self.exchanges.front().expect("checked by read_head");
        let status = res.status();
        if status == StatusCode::SWITCHING_PROTOCOLS && !exchange.upgrade {
            return Err(Error::remote(ErrorKind::BadStatus));
        }
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            // Bounded like everything else: a server streaming 1xx without
            // end is broken (or hostile).
            let limit = self.config.max_informational;
            let x = self.exchanges.front_mut().expect("checked by read_head");
            x.informational = x.informational.saturating_add(1);
            if usize::from(x.informational) > limit {
                return Err(Error::remote(ErrorKind::TooManyInformational { limit }));
            }
            return Ok(Event::Informational(res));
        }
        let framing = body_framing(
            Message::Response {
                request_method: exchange.method.method(),
                status,
            },
            res.version(),
            &facts,
        )?;
        self.check_declared_length(framing)?;
        let switch = status == StatusCode::SWITCHING_PROTOCOLS
            || (exchange.method == MethodClass::Connect && status.is_success());
        let keep = persist::response_keeps_alive(res.version(), facts.connection, framing);
        self.peer_keep_alive = facts.keep_alive_params;
        if let Some(max) = self.peer_keep_alive.max {
            // The response answers the oldest request in flight; those sent
            // after it are counted against the limit as they were started.
            let later = u32::try_from(self.exchanges.len() - 1).unwrap_or(u32::MAX);
            let answered = self.started.saturating_sub(later);
            self.peer_request_limit = Some(persist::peer_request_limit(answered, max));
        }
        if !keep || switch {
            self.keep_alive = false;
        }
        let then = if switch {
            After::Switch
        } else if !keep || exchange.close {
            After::Close
        } else {
            After::Next
        };
        self.recv = Recv::Body {
            decoder: Decoder::new(framing),
            then,
        };
        Ok(Event::Response {
            head: res,
            body: framing,
        })
    }

    /// A declared length beyond the body limit is refused before any of it is read.
    fn check_declared_length(&self, framing: Framing) -> Result<(), Error> {
        match (framing, self.config.max_body_bytes) {
            (Framing::Length(n), Some(limit)) if n > limit => {
                Err(Error::remote(ErrorKind::BodyTooLarge { limit }))
            }
            _ => Ok(()),
        }
    }

    fn received_message_end(&mut self, then: After) {
        match self.role {
            Role::Server => {
                if let Some(x) = self.exchanges.back_mut() {
                    x.request_done = true;
                    x.continue_pending = false;
                }
                self.recv = if then == After::Close || !self.keep_alive {
                    Recv::Done
                } else {
                    Recv::Head { scanned: 0 }
                };
            }
            Role::Client => {
                self.exchanges.pop_front();
                self.recv = match then {
                    After::Next => Recv::Head { scanned: 0 },
                    After::Close => Recv::Done,
                    After::Switch => {
                        self.send = Send::Switched;
                        Recv::Switched
                    }
                };
            }
        }
    }

    /// Records a receive-side error: sticky, and the connection will close. A
    /// server whose request could not even be parsed gets an exchange to answer
    /// the error on.
    fn fail_recv(&mut self, e: Error) -> Error {
        self.keep_alive = false;
        if self.role == Role::Server && matches!(self.recv, Recv::Head { .. }) {
            self.exchanges.push_back(Exchange {
                method: MethodClass::Other,
                version: Version::HTTP_11,
                close: true,
                upgrade: false,
                continue_pending: false,
                request_done: true,
                informational: 0,
                as_lines: false,
            });
        }
        self.recv = Recv::Failed(e.clone());
        e
    }

    // ----- sending -----------------------------------------------------------

    fn check_send_head(&self, call: &'static str) -> Result<(), Error> {
        match self.send {
            Send::Head => Ok(()),
            Send::Body { .. } => Err(Error::local(ErrorKind::IllegalCall(call))),
            Send::Done | Send::Switched | Send::Failed => Err(Error::local(
                ErrorKind::IllegalCall("the connection is closing"),
            )),
        }
    }

    /// Client: writes a request head into `out` and returns the framing its body
    /// must follow (stream it with [`Connection::send_data`], then
    /// [`Connection::send_end`]).
    ///
    /// drainpipe owns the framing and persistence fields: the caller's
    /// `Content-Length` is checked against `body`, `Transfer-Encoding`,
    /// `Keep-Alive` and `Connection` are replaced by what the connection decides
    /// (a caller's `Connection: close` is honoured, `upgrade` kept). `Host` comes
    /// from the URI's authority when absent. The target is sent in origin-form
    /// (authority-form for CONNECT).
    pub fn send_request(
        &mut self,
        head: &request::Parts,
        body: BodySize,
        out: &mut WriteBuf,
    ) -> Result<Framing, Error> {
        if self.role != Role::Client {
            return Err(Error::local(ErrorKind::IllegalCall(
                "send_request on a server connection",
            )));
        }
        self.check_send_head("a request head while a request body is being sent")?;
        let version = head.version;
        if version != Version::HTTP_11 && version != Version::HTTP_10 {
            return Err(Error::local(ErrorKind::Unsendable(
                "HTTP version other than 1.0 and 1.1",
            )));
        }
        let is_connect = head.method == Method::CONNECT;
        let target: &str = if is_connect {
            head.uri.authority().map(|a| a.as_str()).unwrap_or("")
        } else {
            head.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
        };
        if target.is_empty() {
            return Err(Error::local(ErrorKind::Unsendable(
                "CONNECT without an authority",
            )));
        }

        let mark = out.tail_len();
        let tail = out.tail_mut();
        // RFC 9112 §3.2.1: an empty path is sent as "/".
        let slash = !is_connect && target != "*" && !target.starts_with('/');
        if slash {
            let mut with_slash = String::with_capacity(target.len() + 1);
            with_slash.push('/');
            with_slash.push_str(target);
            write::request_line(&head.method, with_slash.as_bytes(), version, tail);
        } else {
            write::request_line(&head.method, target.as_bytes(), version, tail);
        }
        let relay = head.extensions.get::<Relay>();
        let fields = write_caller_fields(&head.headers, relay.map(|r| &r.added), tail);
        let result = (|| {
            let fields = fields?;
            // The caller's Host, written above, is sent as given; without one,
            // the target's authority is the host.
            if !fields.has_host {
                match fields::request_host(&head.uri, &head.headers) {
                    Some(host) => write::field(b"host", host, tail),
                    None if version == Version::HTTP_11 => {
                        return Err(Error::local(ErrorKind::Unsendable(
                            "no Host field and no authority in the URI",
                        )))
                    }
                    None => {}
                }
            }
            let framing = match (fields.content_length, body) {
                (Some(declared), BodySize::Exact(n)) if declared != n => {
                    return Err(Error::local(ErrorKind::BodyLengthMismatch {
                        declared,
                        sent: n,
                    }))
                }
                (Some(declared), _) => Framing::Length(declared),
                (None, BodySize::Exact(0)) if !method_expects_body(&head.method) => Framing::None,
                (None, BodySize::Exact(n)) => Framing::Length(n),
                (None, BodySize::Unknown) if version == Version::HTTP_11 => Framing::Chunked,
                (None, BodySize::Unknown) => {
                    return Err(Error::local(ErrorKind::Unsendable(
                        "a body of unknown length on HTTP/1.0",
                    )))
                }
            };
            let close = !self.keep_alive || !self.config.keep_alive.enabled || fields.tokens.close;
            let upgrade = fields.tokens.upgrade && fields.has_upgrade;
            write_framing(framing, tail);
            let connection: &[u8] = match (close, upgrade, version) {
                (true, true, _) => b"close, upgrade",
                (true, false, _) => b"close",
                (false, true, _) => b"upgrade",
                (false, false, Version::HTTP_10) => b"keep-alive",
                (false, false, _) => b"",
            };
            if !connection.is_empty() {
                write::field(b"connection", connection, tail);
            }
            tail.extend_from_slice(b"\r\n");
            Ok((framing, close, upgrade, fields.expects_continue))
        })();
        out.commit_tail(mark, result.is_ok());
        let (framing, close, upgrade, continue_pending) = result?;

        if close {
            self.keep_alive = false;
        }
        self.started = self.started.saturating_add(1);
        self.exchanges.push_back(Exchange {
            method: MethodClass::of(&head.method),
            version,
            close,
            upgrade,
            continue_pending,
            request_done: false,
            informational: 0,
            as_lines: relay.is_some(),
        });
        self.send = Send::Body {
            encoder: Encoder::new(framing),
            then: if close { After::Close } else { After::Next },
        };
        Ok(framing)
    }

    /// Client: whether the request being sent asked for `100 Continue`
    /// (`Expect: 100-continue` on HTTP/1.1) and its body is still to be sent:
    /// the body should wait for the server's `100`, its final response, or a
    /// short timeout (RFC 9110 §10.1.1), whichever comes first.
    pub fn awaits_continue(&self) -> bool {
        self.role == Role::Client
            && matches!(self.send, Send::Body { .. })
            && self
                .exchanges
                .back()
                .is_some_and(|x| x.continue_pending && x.version == Version::HTTP_11)
    }

    /// Server: writes `HTTP/1.1 100 Continue` if the request being answered
    /// expects it and neither it nor a final response went out yet. Call it when
    /// the handler starts reading the body. Returns whether it wrote.
    pub fn send_continue(&mut self, out: &mut WriteBuf) -> bool {
        if self.role != Role::Server || !matches!(self.send, Send::Head) {
            return false;
        }
        match self.exchanges.front_mut() {
            Some(x) if x.continue_pending && !x.request_done => {
                x.continue_pending = false;
                out.put_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                true
            }
            _ => false,
        }
    }

    /// Server: writes the head of the response to the oldest unanswered request
    /// into `out` and returns the framing its body must follow
    /// ([`Framing::None`]: send no data, just [`Connection::send_end`]).
    ///
    /// An informational status (1xx but 101) writes an interim head (nothing for
    /// an HTTP/1.0 request) and leaves the final response still to send. 101 to a
    /// request that asked to upgrade, or 2xx to CONNECT, switches protocols after
    /// [`Connection::send_end`].
    ///
    /// drainpipe owns the framing and persistence fields: a caller's
    /// `Content-Length` is checked against `body` (and kept for HEAD and 304),
    /// `Transfer-Encoding`, `Keep-Alive` and `Connection` are replaced by what the
    /// connection decides; a caller's `Connection: close` is honoured. The
    /// response carries `Connection: close` whenever the connection will close
    /// after it: the request asked, the request limit, a drain
    /// ([`Connection::close_after_current`]), a body delimited by the close (an
    /// HTTP/1.0 client and an unknown length), or an unread request body too large
    /// to discard. An HTTP/1.0 keep-alive request gets `Connection: keep-alive`
    /// and `Keep-Alive: timeout=T, max=M` (as configured; M = requests left).
    pub fn send_response(
        &mut self,
        head: &response::Parts,
        body: BodySize,
        out: &mut WriteBuf,
    ) -> Result<Framing, Error> {
        self.send_response_dated(head, body, None, out)
    }

    /// [`Connection::send_response`], adding `Date: <date>` when the head has
    /// no `Date` of its own (the driver keeps the current date, formatted once
    /// a second; RFC 9110 §6.6.1).
    pub fn send_response_dated(
        &mut self,
        head: &response::Parts,
        body: BodySize,
        date: Option<&HeaderValue>,
        out: &mut WriteBuf,
    ) -> Result<Framing, Error> {
        if self.role != Role::Server {
            return Err(Error::local(ErrorKind::IllegalCall(
                "send_response on a client connection",
            )));
        }
        self.check_send_head("a response head while a response body is being sent")?;
        let Some(exchange) = self.exchanges.front().copied() else {
            return Err(Error::local(ErrorKind::IllegalCall(
                "a response before a request",
            )));
        };
        let status = head.status;
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            return self.send_informational(head, exchange, out);
        }
        let switch = if status == StatusCode::SWITCHING_PROTOCOLS {
            if !exchange.upgrade {
                return Err(Error::local(ErrorKind::IllegalCall(
                    "101 to a request that did not ask to upgrade",
                )));
            }
            true
        } else {
            exchange.method == MethodClass::Connect && status.is_success()
        };
        if switch && !exchange.request_done {
            return Err(Error::local(ErrorKind::IllegalCall(
                "switching protocols before the request body was read",
            )));
        }

        let mark = out.tail_len();
        let tail = out.tail_mut();
        match head.extensions.get::<write::ReasonPhrase>() {
            Some(reason) => write::status_line_with(status, reason.as_bytes(), tail),
            None => write::status_line(status, tail),
        }
        let fields = write_caller_fields(&head.headers, head.extensions.get::<FieldLines>(), tail);
        // A block rather than a called closure: this runs for every response.
        let result = 'fields: {
            let fields = match fields {
                Ok(fields) => fields,
                Err(e) => break 'fields Err(e),
            };
            if let (Some(date), false) = (date, fields.has_date) {
                write::field(b"date", date.as_bytes(), tail);
            }
            let bodiless = exchange.method == MethodClass::Head
                || status == StatusCode::NO_CONTENT
                || status == StatusCode::NOT_MODIFIED
                || switch;
            let framing = match (bodiless, fields.content_length, body) {
                (true, _, _) => Framing::None,
                (false, Some(declared), BodySize::Exact(n)) if declared != n => {
                    break 'fields Err(Error::local(ErrorKind::BodyLengthMismatch {
                        declared,
                        sent: n,
                    }))
                }
                (false, Some(declared), _) => Framing::Length(declared),
                (false, None, BodySize::Exact(n)) => Framing::Length(n),
                (false, None, BodySize::Unknown) if exchange.version == Version::HTTP_11 => {
                    Framing::Chunked
                }
                (false, None, BodySize::Unknown) => Framing::UntilClose,
            };
            // The length a bodiless response advertises: HEAD tells what GET would
            // send; 304 may repeat the representation's; 204 and 101 none.
            let advertised = match (framing, exchange.method, status) {
                (Framing::None, _, StatusCode::NO_CONTENT | StatusCode::SWITCHING_PROTOCOLS) => {
                    None
                }
                (Framing::None, MethodClass::Head, _) => fields.content_length.or(match body {
                    BodySize::Exact(n) => Some(n),
                    BodySize::Unknown => None,
                }),
                (Framing::None, _, StatusCode::NOT_MODIFIED) => fields.content_length,
                _ => None,
            };
            let unread_ok = exchange.request_done
                || persist::unread_body_allows_reuse(
                    self.unread_request_body(),
                    exchange.continue_pending,
                    self.config.max_discard_bytes,
                );
            let keep = self.keep_alive
                && !exchange.close
                && !fields.tokens.close
                && framing != Framing::UntilClose
                && !switch
                && unread_ok;

            match advertised {
                Some(n) => write::content_length(n, tail),
                None => write_framing(framing, tail),
            }
            if status == StatusCode::SWITCHING_PROTOCOLS {
                write::field(b"connection", b"upgrade", tail);
            } else if switch {
                // A tunnel: no persistence fields.
            } else if !keep {
                write::field(b"connection", b"close", tail);
            } else if exchange.version == Version::HTTP_10 {
                write::field(b"connection", b"keep-alive", tail);
                self.keep_alive_line.write(
                    self.config.keep_alive.timeout_secs,
                    persist::requests_left(self.config.keep_alive.max_requests, self.started),
                    tail,
                );
            } else if self.config.keep_alive.announce_to_http11 {
                // On every response: some clients (Firefox) take a
                // response without it to mean their own default.
                self.keep_alive_line.write(
                    self.config.keep_alive.timeout_secs,
                    persist::requests_left(self.config.keep_alive.max_requests, self.started),
                    tail,
                );
            }
            tail.extend_from_slice(b"\r\n");
            Ok((framing, keep))
        };
        out.commit_tail(mark, result.is_ok());
        let (framing, keep) = result?;
        if !keep {
            self.keep_alive = false;
        }
        self.send = Send::Body {
            encoder: Encoder::new(framing),
            then: if switch {
                After::Switch
            } else if keep {
                After::Next
            } else {
                After::Close
            },
        };
        Ok(framing)
    }

    fn send_informational(
        &mut self,
        head: &response::Parts,
        exchange: Exchange,
        out: &mut WriteBuf,
    ) -> Result<Framing, Error> {
        // RFC 9110 §15.2: no 1xx to an HTTP/1.0 client.
        if exchange.version == Version::HTTP_10 {
            return Ok(Framing::None);
        }
        let mark = out.tail_len();
        let tail = out.tail_mut();
        write::status_line(head.status, tail);
        let fields = write_caller_fields(&head.headers, head.extensions.get::<FieldLines>(), tail);
        if fields.is_ok() {
            tail.extend_from_slice(b"\r\n");
        }
        out.commit_tail(mark, fields.is_ok());
        fields?;
        if head.status == StatusCode::CONTINUE {
            if let Some(x) = self.exchanges.front_mut() {
                x.continue_pending = false;
            }
        }
        Ok(Framing::None)
    }

    /// Server: what is left unread of the body of the request being answered,
    /// when the framing says (`None`: unknown).
    fn unread_request_body(&self) -> Option<u64> {
        // The request being answered is the front; its body is being received only
        // if it is also the back (later requests are read after it ends).
        if self.exchanges.len() != 1 {
            return Some(0);
        }
        match &self.recv {
            Recv::Body { decoder, .. } => decoder.remaining(),
            _ => Some(0),
        }
    }

    /// Writes body data of the message being sent.
    pub fn send_data(&mut self, data: Bytes, out: &mut WriteBuf) -> Result<(), Error> {
        let Send::Body { encoder, .. } = &mut self.send else {
            return Err(Error::local(ErrorKind::IllegalCall(
                "data outside a message body",
            )));
        };
        encoder.data(data, out).inspect_err(|e| {
            if matches!(e.kind(), ErrorKind::BodyLengthMismatch { .. }) {
                self.send = Send::Failed;
                self.keep_alive = false;
            }
        })
    }

    /// Ends the message being sent (trailers go out with chunked framing only).
    /// If its body fell short of the declared length, the message cannot be
    /// completed: the error says so and the connection must be closed.
    pub fn send_end(
        &mut self,
        trailers: Option<&HeaderMap>,
        out: &mut WriteBuf,
    ) -> Result<(), Error> {
        let Send::Body { encoder, then } = &mut self.send else {
            return Err(Error::local(ErrorKind::IllegalCall(
                "end outside a message",
            )));
        };
        let then = *then;
        if let Err(e) = encoder.end(trailers, out) {
            self.send = Send::Failed;
            self.keep_alive = false;
            return Err(e);
        }
        self.send = match self.role {
            Role::Server => {
                self.exchanges.pop_front();
                match then {
                    After::Switch => {
                        self.recv = Recv::Switched;
                        Send::Switched
                    }
                    After::Close => Send::Done,
                    After::Next if !self.keep_alive && self.exchanges.is_empty() => Send::Done,
                    After::Next => Send::Head,
                }
            }
            Role::Client => {
                if let Some(x) = self.exchanges.back_mut() {
                    x.request_done = true;
                }
                match then {
                    After::Close => Send::Done,
                    After::Next | After::Switch => Send::Head,
                }
            }
        };
        Ok(())
    }

    // ----- persistence and lifecycle -----------------------------------------

    /// Decides to close after the exchanges already begun: a server's next
    /// response head carries `Connection: close` and no further request is read;
    /// a client's next request carries `Connection: close`. This is what a
    /// graceful drain calls on every connection.
    pub fn close_after_current(&mut self) {
        self.keep_alive = false;
        if self.role == Role::Server && self.exchanges.is_empty() {
            if matches!(self.recv, Recv::Head { .. }) {
                self.recv = Recv::Done;
            }
            if matches!(self.send, Send::Head) {
                self.send = Send::Done;
            }
        }
    }

    /// The driver gave up waiting for the peer (a read timeout): nothing more is
    /// read. Returns the status owed: `408 Request Timeout` when a server was in
    /// the middle of a request head (answer it with [`Connection::send_response`],
    /// then close), `None` when nothing is owed (nothing had arrived, or a body
    /// was being read) and the connection just closes.
    pub fn time_out(&mut self) -> Option<StatusCode> {
        self.keep_alive = false;
        let mid_head = self.role == Role::Server
            && matches!(self.recv, Recv::Head { .. })
            && !self.buf.is_empty()
            && self.exchanges.is_empty()
            && matches!(self.send, Send::Head);
        let e = Error::remote(ErrorKind::Truncated {
            expected: None,
            received: 0,
        });
        if mid_head {
            // Leaves an exchange to answer the 408 on.
            self.fail_recv(e);
            return Some(StatusCode::REQUEST_TIMEOUT);
        }
        self.recv = Recv::Failed(e);
        if matches!(self.send, Send::Head) && self.exchanges.is_empty() {
            self.send = Send::Done;
        }
        None
    }

    /// Whether the connection may carry another exchange after the current ones.
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// Whether the connection must now be closed: our side sent its last message
    /// and no response is owed or awaited, or an error ended it, or the peer
    /// closed with nothing left to answer.
    pub fn must_close(&self) -> bool {
        let no_more_input = matches!(self.recv, Recv::Done | Recv::Closed | Recv::Failed(_));
        match (self.role, &self.send) {
            (_, Send::Failed) => true,
            (_, Send::Switched) => false,
            // A client: once no response can come, or none is awaited after its
            // last request.
            (Role::Client, _) if no_more_input => true,
            (Role::Client, Send::Done) => self.exchanges.is_empty(),
            (Role::Client, _) => false,
            // A server: once its last response is out, or nothing is owed and
            // no request can come.
            (Role::Server, Send::Done) => true,
            (Role::Server, Send::Head) => no_more_input && self.exchanges.is_empty(),
            (Role::Server, Send::Body { .. }) => false,
        }
    }

    /// Server: whether the client has nothing more to send. Its last request
    /// announced the close itself (HTTP/1.0 without `keep-alive`, or
    /// `Connection: close`; RFC 9112 §9.6: a client that sends close sends no
    /// further request), that request was read whole, and no byte came after
    /// it. Closing the socket then meets no unread input and cannot turn into
    /// a reset over the response, so it needs no lingering; when the server
    /// decided the close (a limit, a drain, an error) the client may have
    /// pipelined more and this is `false`.
    pub fn peer_sent_last(&self) -> bool {
        self.role == Role::Server
            && self.peer_said_last
            && matches!(self.recv, Recv::Done)
            && self.buf.is_empty()
    }

    /// Drops received bytes no request will be read from; a peer that
    /// announced its last request but sent more did not keep its word.
    fn discard_input(&mut self) {
        if !self.buf.is_empty() {
            self.peer_said_last = false;
            self.buf.clear();
        }
    }

    /// Whether nothing is in flight: no exchange begun, no byte of a next message
    /// buffered, both halves waiting for a head. An idle connection may be closed
    /// at once by a drain or an idle timeout.
    pub fn is_idle(&self) -> bool {
        self.exchanges.is_empty()
            && self.buf.is_empty()
            && matches!(self.recv, Recv::Head { .. })
            && matches!(self.send, Send::Head)
    }

    /// Whether a message is being received (a head started, or a body).
    pub fn is_receiving(&self) -> bool {
        match self.recv {
            Recv::Head { .. } => !self.buf.is_empty(),
            Recv::Body { .. } => true,
            _ => false,
        }
    }

    /// Whether a message body is being received.
    pub fn is_receiving_body(&self) -> bool {
        matches!(self.recv, Recv::Body { .. })
    }

    /// Exchanges begun and not finished (server: requests not yet answered;
    /// client: requests whose response has not ended). After a client reads a
    /// closing response these are the requests the server never answered.
    pub fn in_flight(&self) -> usize {
        self.exchanges.len()
    }

    /// Requests started on this connection (server: received; client: sent).
    pub fn requests_started(&self) -> u32 {
        self.started
    }

    /// Server: whether the request last received may switch protocols (it
    /// asked to upgrade, or it is CONNECT), so its response may hand the
    /// connection over.
    pub fn request_may_switch(&self) -> bool {
        self.exchanges.back().is_some_and(Exchange::may_switch)
    }

    /// Client: the `Keep-Alive` parameters the last response advertised.
    pub fn peer_keep_alive(&self) -> KeepAliveParams {
        self.peer_keep_alive
    }

    /// Client: how many more requests the server accepts on this connection
    /// beyond those already sent, by the last `Keep-Alive: max=M` it
    /// advertised (`M` more after the request that response answered; later
    /// responses without `max` do not lift it). `None` when no response
    /// advertised a `max`.
    pub fn peer_requests_left(&self) -> Option<u32> {
        self.peer_request_limit
            .map(|limit| limit.saturating_sub(self.started))
    }

    /// Client: until when this connection may be reused, by the server's
    /// `Keep-Alive: timeout=T` on the last response, which the driver received
    /// whole at `received_at` (see [`persist::reusable_until`]; `margin` is
    /// taken off `T`). `None` when the last response gave no timeout, even if
    /// an earlier one did.
    pub fn peer_reusable_until(&self, received_at: Instant, margin: Duration) -> Option<Instant> {
        persist::reusable_until(self.peer_keep_alive.timeout_secs, received_at, margin)
    }

    /// Client: whether the connection may carry another request now: it
    /// persists ([`Connection::keep_alive`]), nothing is in flight
    /// ([`Connection::is_idle`]), and the server's `Keep-Alive: max` is not
    /// used up ([`Connection::peer_requests_left`]). The server's
    /// `Keep-Alive: timeout` is a matter of time, which the driver checks with
    /// [`Connection::peer_reusable_until`].
    pub fn is_reusable(&self) -> bool {
        self.keep_alive && self.is_idle() && self.peer_requests_left() != Some(0)
    }

    /// Whether the protocol switched (a `101`, or a 2xx to CONNECT).
    pub fn is_switched(&self) -> bool {
        matches!(self.recv, Recv::Switched)
    }

    /// After a protocol switch: the bytes received beyond the switch, which
    /// belong to the new protocol. `None` if the protocol has not switched.
    pub fn take_switched(&mut self) -> Option<Bytes> {
        matches!(self.recv, Recv::Switched).then(|| self.buf.split().freeze())
    }

    /// Gives back the receive buffer's memory if it holds nothing (an idle
    /// connection keeps no buffer). The queue of exchanges in flight keeps
    /// its few dozen bytes: freed here, it was allocated again by the next
    /// request, an allocation and a free per keep-alive request; it goes
    /// with the connection (a parked one drops it).
    pub fn release_buffers(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
    }
}

/// What the caller's own fields said, gathered while writing them.
#[derive(Debug, Default)]
struct CallerFields {
    content_length: Option<u64>,
    tokens: ConnectionTokens,
    has_host: bool,
    has_upgrade: bool,
    has_date: bool,
    expects_continue: bool,
}

/// Writes the caller's fields except those the connection owns (framing and
/// persistence), collecting what they said.
///
/// Then `lines`, if any: their text as it is, what they hold counted as if
/// the map held it.
fn write_caller_fields(
    headers: &HeaderMap,
    lines: Option<&FieldLines>,
    dst: &mut BytesMut,
) -> Result<CallerFields, Error> {
    let mut f = CallerFields::default();
    for (name, value) in headers {
        if *name == header::CONTENT_LENGTH {
            // A list of identical values is one length (RFC 9110 §8.6); what
            // goes out is the single value the connection writes itself.
            for element in value.as_bytes().split(|&b| b == b',') {
                let n = fields::parse_decimal(fields::trim(element)).ok_or(Error::local(
                    ErrorKind::IllegalCall("an invalid Content-Length field"),
                ))?;
                if f.content_length.is_some_and(|m| m != n) {
                    return Err(Error::local(ErrorKind::IllegalCall(
                        "conflicting Content-Length fields",
                    )));
                }
                f.content_length = Some(n);
            }
            continue;
        }
        if *name == header::CONNECTION {
            f.tokens.add(value.as_bytes());
            continue;
        }
        if *name == header::TRANSFER_ENCODING || is_keep_alive(name) {
            continue;
        }
        if *name == header::HOST {
            f.has_host = true;
        } else if *name == header::UPGRADE {
            f.has_upgrade = true;
        } else if *name == header::DATE {
            f.has_date = true;
        } else if *name == header::EXPECT {
            f.expects_continue |= value.as_bytes().eq_ignore_ascii_case(b"100-continue");
        }
        write::field(name.as_str().as_bytes(), value.as_bytes(), dst);
    }
    if let Some(lines) = lines {
        if let Some(n) = lines.content_length {
            if f.content_length.is_some_and(|m| m != n) {
                return Err(Error::local(ErrorKind::IllegalCall(
                    "conflicting Content-Length fields",
                )));
            }
            f.content_length = Some(n);
        }
        f.has_date |= lines.date;
        f.has_host |= lines.host;
        f.has_upgrade |= lines.upgrade;
        f.expects_continue |= lines.expect_continue;
        dst.extend_from_slice(&lines.text);
    }
    Ok(f)
}

fn is_keep_alive(name: &HeaderName) -> bool {
    name.as_str() == "keep-alive"
}

fn write_framing(framing: Framing, dst: &mut BytesMut) {
    match framing {
        Framing::Length(n) => write::content_length(n, dst),
        Framing::Chunked => write::field(b"transfer-encoding", b"chunked", dst),
        Framing::None | Framing::UntilClose => {}
    }
}

/// Methods whose requests are defined to carry content, so an empty body is sent
/// as `Content-Length: 0` (RFC 9110 §8.6).
fn method_expects_body(method: &Method) -> bool {
    *method == Method::POST || *method == Method::PUT || *method == Method::PATCH
}
