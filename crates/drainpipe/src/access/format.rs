//! Access-log line formats: `combined` (Apache/nginx's, which log tools
//! read), `json` (one object per line, every field), or a template of text
//! and `$variables`.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use http::HeaderValue;

use super::record::Record;

/// A line format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// `$remote_addr - - [$time_local] "$request" $status $bytes_sent
    /// "$referer" "$user_agent"`.
    Combined,
    /// One JSON object per line with every field.
    Json,
    /// Text with `$variables` (see [`VARIABLES`]).
    Template(Vec<Piece>),
}

/// A part of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Written as is.
    Text(String),
    /// A field's value.
    Var(Var),
}

/// The fields, as named in templates and as JSON keys.
pub const VARIABLES: [&str; 22] = [
    "time",
    "time_local",
    "remote_addr",
    "method",
    "target",
    "version",
    "request",
    "status",
    "bytes_received",
    "bytes_sent",
    "request_time",
    "host",
    "user_agent",
    "referer",
    "connection_id",
    "connection_requests",
    "upstream_addr",
    "upstream_connect_time",
    "upstream_response_time",
    "upstream_reused",
    "retries",
    "close_reason",
];

/// A field (one of [`VARIABLES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Var(Field);

/// The fields, in the order of [`VARIABLES`]: a template is parsed into
/// these once, so writing a line never looks a name up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Time,
    TimeLocal,
    RemoteAddr,
    Method,
    Target,
    Version,
    Request,
    Status,
    BytesReceived,
    BytesSent,
    RequestTime,
    Host,
    UserAgent,
    Referer,
    ConnectionId,
    ConnectionRequests,
    UpstreamAddr,
    UpstreamConnectTime,
    UpstreamResponseTime,
    UpstreamReused,
    Retries,
    CloseReason,
}

impl Field {
    /// Every field, in the order of [`VARIABLES`].
    const ALL: [Field; 22] = [
        Field::Time,
        Field::TimeLocal,
        Field::RemoteAddr,
        Field::Method,
        Field::Target,
        Field::Version,
        Field::Request,
        Field::Status,
        Field::BytesReceived,
        Field::BytesSent,
        Field::RequestTime,
        Field::Host,
        Field::UserAgent,
        Field::Referer,
        Field::ConnectionId,
        Field::ConnectionRequests,
        Field::UpstreamAddr,
        Field::UpstreamConnectTime,
        Field::UpstreamResponseTime,
        Field::UpstreamReused,
        Field::Retries,
        Field::CloseReason,
    ];
}

/// The combined format as a template: text between fields.
const COMBINED: [(&str, Field); 7] = [
    ("", Field::RemoteAddr),
    (" - - [", Field::TimeLocal),
    ("] \"", Field::Request),
    ("\" ", Field::Status),
    (" ", Field::BytesSent),
    (" \"", Field::Referer),
    ("\" \"", Field::UserAgent),
];

/// A template names a variable that does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownVariable(pub String);

impl std::fmt::Display for UnknownVariable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unknown access log variable ${} (known: ${})",
            self.0,
            VARIABLES.join(", $")
        )
    }
}

impl std::error::Error for UnknownVariable {}

impl std::str::FromStr for Format {
    type Err = UnknownVariable;

    /// `"combined"`, `"json"`, or a template: `$name` is a variable (also
    /// `${name}`, to be followed by a letter), `$$` a `$`.
    fn from_str(s: &str) -> Result<Format, UnknownVariable> {
        match s {
            "combined" => return Ok(Format::Combined),
            "json" => return Ok(Format::Json),
            _ => {}
        }
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = s;
        while let Some(at) = rest.find('$') {
            text.push_str(&rest[..at]);
            rest = &rest[at + 1..];
            if let Some(after) = rest.strip_prefix('$') {
                text.push('$');
                rest = after;
                continue;
            }
            let (name, after) = match rest.strip_prefix('{') {
                Some(braced) => match braced.find('}') {
                    Some(end) => (&braced[..end], &braced[end + 1..]),
                    None => return Err(UnknownVariable(braced.to_string())),
                },
                None => {
                    let end = rest
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(rest.len());
                    (&rest[..end], &rest[end..])
                }
            };
            let index = VARIABLES
                .iter()
                .position(|v| *v == name)
                .ok_or_else(|| UnknownVariable(name.to_string()))?;
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Var(Var(Field::ALL[index])));
            rest = after;
        }
        text.push_str(rest);
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Format::Template(pieces))
    }
}

/// A field's value.
enum Value<'a> {
    Text(&'a str),
    Header(Option<&'a HeaderValue>),
    Number(u64),
    Seconds(Option<Duration>),
    Bool(Option<bool>),
    Time(SystemTime, TimeStyle),
    Ip(std::net::IpAddr),
    Uri(&'a http::Uri),
    /// `METHOD target VERSION`.
    Request(&'a Record),
    None,
}

#[derive(Clone, Copy)]
enum TimeStyle {
    Rfc3339 = 0,
    Clf = 1,
}

impl Format {
    /// Writes `r` as one line (without its newline) into `out`.
    pub(super) fn write(&self, r: &Record, out: &mut String) {
        match self {
            Format::Combined => {
                for (text, field) in COMBINED {
                    out.push_str(text);
                    write_plain(out, value(r, field), true);
                }
                out.push('"');
            }
            Format::Json => {
                out.push('{');
                for (i, (name, field)) in VARIABLES.iter().zip(Field::ALL).enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push('"');
                    out.push_str(name);
                    out.push_str("\":");
                    write_json(out, value(r, field));
                }
                out.push('}');
            }
            Format::Template(pieces) => {
                for piece in pieces {
                    match piece {
                        Piece::Text(t) => out.push_str(t),
                        // Escaped as in the combined format: a template may
                        // put a field in quotes.
                        Piece::Var(v) => write_plain(out, value(r, v.0), true),
                    }
                }
            }
        }
    }
}

fn value(r: &Record, field: Field) -> Value<'_> {
    let up = r.upstream.as_ref();
    match field {
        Field::Time => Value::Time(r.time, TimeStyle::Rfc3339),
        Field::TimeLocal => Value::Time(r.time, TimeStyle::Clf),
        Field::RemoteAddr => r.remote.map_or(Value::None, |a| Value::Ip(a.ip())),
        Field::Method => Value::Text(r.method.as_str()),
        Field::Target => Value::Uri(&r.target),
        Field::Version => Value::Text(version(r.version)),
        Field::Request => Value::Request(r),
        Field::Status => Value::Number(u64::from(r.status)),
        Field::BytesReceived => Value::Number(r.bytes_received),
        Field::BytesSent => Value::Number(r.bytes_sent),
        Field::RequestTime => Value::Seconds(Some(r.request_time)),
        Field::Host => Value::Header(r.host.as_ref()),
        Field::UserAgent => Value::Header(r.user_agent.as_ref()),
        Field::Referer => Value::Header(r.referer.as_ref()),
        Field::ConnectionId => Value::Number(r.connection_id),
        Field::ConnectionRequests => Value::Number(u64::from(r.connection_requests)),
        Field::UpstreamAddr => up.map_or(Value::None, |u| Value::Text(&u.addr)),
        Field::UpstreamConnectTime => {
            // A reused connection took no time to open.
            Value::Seconds(up.map(|u| u.connect_time.unwrap_or_default()))
        }
        Field::UpstreamResponseTime => Value::Seconds(up.map(|u| u.response_time)),
        Field::UpstreamReused => Value::Bool(up.map(|u| u.reused)),
        Field::Retries => up.map_or(Value::None, |u| Value::Number(u64::from(u.retries))),
        Field::CloseReason => r.close_reason.map_or(Value::None, Value::Text),
    }
}

/// A request target as received: origin-form (nearly always) is the URI's
/// path and query as they are, without formatting the URI anew.
fn target(uri: &http::Uri) -> std::borrow::Cow<'_, str> {
    match uri.path_and_query() {
        Some(pq) if uri.scheme().is_none() && uri.authority().is_none() => pq.as_str().into(),
        _ => uri.to_string().into(),
    }
}

fn version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_11 => "HTTP/1.1",
        http::Version::HTTP_09 => "HTTP/0.9",
        _ => "HTTP/?",
    }
}

/// Writes a field as plain text: "-" when absent; `quoted` escapes `"` and
/// `\` (inside the combined format's quotes), and control bytes always.
fn write_plain(out: &mut String, v: Value<'_>, quoted: bool) {
    match v {
        Value::Text(t) => escape_plain(out, t, quoted),
        Value::Header(Some(h)) => escape_plain(out, &String::from_utf8_lossy(h.as_bytes()), quoted),
        Value::Number(n) => out.push_str(itoa::Buffer::new().format(n)),
        Value::Seconds(Some(d)) => write_seconds(out, d),
        Value::Bool(Some(b)) => out.push_str(if b { "true" } else { "false" }),
        Value::Time(t, style) => write_time(out, t, style),
        Value::Ip(std::net::IpAddr::V4(ip)) => {
            // Four numbers, without the formatting machinery.
            for (i, octet) in ip.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(itoa::Buffer::new().format(octet));
            }
        }
        Value::Ip(ip) => {
            let _ = write!(out, "{ip}");
        }
        Value::Uri(uri) => escape_plain(out, &target(uri), quoted),
        Value::Request(r) => {
            out.push_str(r.method.as_str());
            out.push(' ');
            escape_plain(out, &target(&r.target), quoted);
            out.push(' ');
            out.push_str(version(r.version));
        }
        Value::None | Value::Header(None) | Value::Seconds(None) | Value::Bool(None) => {
            out.push('-')
        }
    }
}

fn escape_plain(out: &mut String, text: &str, quoted: bool) {
    // Nearly always printable ASCII with nothing to escape: copied at once.
    if text
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && !(quoted && (b == b'"' || b == b'\\')))
    {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        match c {
            '"' | '\\' if quoted => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// Seconds with six decimals (microseconds, rounded), without floating
/// point formatting.
fn write_seconds(out: &mut String, d: Duration) {
    let micros = (d.as_nanos() + 500) / 1000;
    out.push_str(itoa::Buffer::new().format(micros / 1_000_000));
    out.push('.');
    let mut buf = itoa::Buffer::new();
    let frac = buf.format(micros % 1_000_000);
    for _ in frac.len()..6 {
        out.push('0');
    }
    out.push_str(frac);
}

fn write_json(out: &mut String, v: Value<'_>) {
    match v {
        Value::Number(n) => out.push_str(itoa::Buffer::new().format(n)),
        Value::Seconds(Some(d)) => write_seconds(out, d),
        Value::Bool(Some(b)) => out.push_str(if b { "true" } else { "false" }),
        Value::Text(t) => json_string(out, t),
        Value::Header(Some(h)) => json_string(out, &String::from_utf8_lossy(h.as_bytes())),
        Value::Time(..) | Value::Request(_) | Value::Ip(_) | Value::Uri(_) => {
            let mut text = String::new();
            write_plain(&mut text, v, false);
            json_string(out, &text);
        }
        Value::None | Value::Header(None) | Value::Seconds(None) | Value::Bool(None) => {
            out.push_str("null")
        }
    }
}

fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Writes `t` (UTC) as RFC 3339 with milliseconds, or in the common log
/// format's `10/Oct/2000:13:55:36 +0000`.
fn write_time(out: &mut String, t: SystemTime, style: TimeStyle) {
    // The text up to the second, made once per second per thread.
    thread_local! {
        static SECOND: std::cell::RefCell<[(u64, String); 2]> =
            const { std::cell::RefCell::new([(u64::MAX, String::new()), (u64::MAX, String::new())]) };
    }
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|cache| {
        let mut cache = cache.borrow_mut();
        let (cached, text) = &mut cache[style as usize];
        if *cached != secs {
            text.clear();
            write_second(text, secs, style);
            *cached = secs;
        }
        out.push_str(text);
    });
    if let TimeStyle::Rfc3339 = style {
        let _ = write!(out, ".{:03}Z", since.subsec_millis());
    }
}

/// The part of [`write_time`] up to the second: `2000-10-10T13:55:36`, or
/// `10/Oct/2000:13:55:36 +0000`.
fn write_second(out: &mut String, secs: u64, style: TimeStyle) {
    let (y, m, d) = civil(secs / 86_400);
    let s = secs % 86_400;
    let (hh, mm, ss) = (s / 3600, s / 60 % 60, s % 60);
    match style {
        TimeStyle::Rfc3339 => {
            let _ = write!(out, "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}");
        }
        TimeStyle::Clf => {
            const MONTHS: [&str; 12] = [
                "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
            ];
            let _ = write!(
                out,
                "{d:02}/{}/{y:04}:{hh:02}:{mm:02}:{ss:02} +0000",
                MONTHS[(m - 1) as usize]
            );
        }
    }
}

/// The civil date (year, month 1-12, day 1-31) of `days` since 1970-01-01
/// (Howard Hinnant's days-to-civil algorithm).
fn civil(days: u64) -> (i64, u32, u32) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Upstream;

    fn record() -> Record {
        let req = http::Request::post("/upload?x=1")
            .header("host", "example.com")
            .header("user-agent", "curl/8 \"quoted\"")
            .body(())
            .unwrap();
        let mut r = Record::new(&req, Some("10.0.0.7:5555".parse().unwrap()), 42, 3);
        // 2000-10-10 13:55:36.250 UTC
        r.time = SystemTime::UNIX_EPOCH + Duration::from_millis(971_186_136_250);
        r.status = 201;
        r.bytes_received = 1000;
        r.bytes_sent = 321;
        r.request_time = Duration::from_micros(1500);
        r
    }

    #[test]
    fn combined_is_the_common_log_format_plus_referer_and_agent() {
        let mut out = String::new();
        Format::Combined.write(&record(), &mut out);
        assert_eq!(
            out,
            "10.0.0.7 - - [10/Oct/2000:13:55:36 +0000] \"POST /upload?x=1 HTTP/1.1\" 201 321 \"-\" \"curl/8 \\\"quoted\\\"\""
        );
    }

    // A client on a Unix socket has no IP address: absent, not made up.
    #[test]
    fn a_peer_without_an_ip_address_logs_none() {
        let mut r = record();
        r.remote = None;
        let mut out = String::new();
        Format::Combined.write(&r, &mut out);
        assert!(
            out.starts_with("- - - [10/Oct/2000:13:55:36 +0000] "),
            "{out}"
        );
        out.clear();
        Format::Json.write(&r, &mut out);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["remote_addr"], serde_json::Value::Null);
    }

    #[test]
    fn json_has_every_field() {
        let mut r = record();
        r.upstream = Some(Upstream {
            addr: "127.0.0.1:8081".into(),
            connect_time: None,
            response_time: Duration::from_millis(1),
            reused: true,
            retries: 1,
        });
        r.close_reason = Some("keep_alive_end");
        let mut out = String::new();
        Format::Json.write(&r, &mut out);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v.as_object().unwrap().len(), VARIABLES.len());
        assert_eq!(v["time"], "2000-10-10T13:55:36.250Z");
        assert_eq!(v["remote_addr"], "10.0.0.7");
        assert_eq!(v["target"], "/upload?x=1");
        assert_eq!(v["request"], "POST /upload?x=1 HTTP/1.1");
        assert_eq!(v["user_agent"], "curl/8 \"quoted\"");
        assert_eq!(v["status"], 201);
        assert_eq!(v["bytes_received"], 1000);
        assert_eq!(v["request_time"], 0.0015);
        assert_eq!(v["host"], "example.com");
        assert_eq!(v["referer"], serde_json::Value::Null);
        assert_eq!(v["connection_id"], 42);
        assert_eq!(v["connection_requests"], 3);
        assert_eq!(v["upstream_addr"], "127.0.0.1:8081");
        assert_eq!(v["upstream_connect_time"], 0.0);
        assert_eq!(v["upstream_response_time"], 0.001);
        assert_eq!(v["upstream_reused"], true);
        assert_eq!(v["retries"], 1);
        assert_eq!(v["close_reason"], "keep_alive_end");
    }

    #[test]
    fn templates() {
        let f: Format = "$$ ${method}x $status $upstream_addr $connection_id/$connection_requests"
            .parse()
            .unwrap();
        let mut out = String::new();
        f.write(&record(), &mut out);
        assert_eq!(out, "$ POSTx 201 - 42/3");
        let e = "$status $nope".parse::<Format>().unwrap_err();
        assert_eq!(e.0, "nope");
        assert!(e
            .to_string()
            .starts_with("unknown access log variable $nope (known: $time, "));
        assert!("${status".parse::<Format>().is_err());
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(11_016), (2000, 2, 29));
        assert_eq!(civil(20_789), (2026, 12, 2));
    }
}
