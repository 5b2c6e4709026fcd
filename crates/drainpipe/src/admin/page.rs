//! The `/status` page. The server writes it whole (the overall state and
//! every table, readable with JavaScript off); its script then fetches
//! `/status.json` every second, writes the tables again in the same form and
//! draws the charts of the last five minutes as inline SVG. Nothing is
//! loaded from anywhere else.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::metrics::Status;

/// The page for `status`.
pub(super) fn render(status: &Status) -> String {
    let mut servers = String::new();
    for (i, r) in status.servers.iter().enumerate() {
        let check = match &r.check {
            Some(c) => format!(
                "{} {} ({} ago)",
                if c.ok { "passed:" } else { "failed:" },
                c.detail,
                ago(status.now - c.at)
            ),
            None => "none".to_string(),
        };
        let _ = write!(
            servers,
            "<tr><td>{group}</td><td id=\"srv{i}-name\">{server}</td>\
             <td id=\"srv{i}-state\" class=\"{state}\">{state}</td>\
             <td id=\"srv{i}-since\" title=\"{since}\">{for_}</td>\
             <td id=\"srv{i}-reason\" class=\"left\">{reason}</td>\
             <td id=\"srv{i}-check\" class=\"left\">{check}</td>\
             <td id=\"srv{i}-open\">{open}</td><td id=\"srv{i}-idle\">{idle}</td>\
             <td id=\"srv{i}-active\">{active}</td><td id=\"srv{i}-requests\">{requests}</td>\
             <td id=\"srv{i}-errors\">{errors}</td><td id=\"srv{i}-rps\">{rps:.1}</td>\
             <td id=\"srv{i}-error-rate\">{rate:.1} %</td>\
             <td id=\"srv{i}-p50\">{p50}</td><td id=\"srv{i}-p99\">{p99}</td>\
             <td id=\"srv{i}-learned\">{learned}</td><td id=\"srv{i}-retired\">{retired}</td></tr>",
            group = esc(&format!("{} / {}", r.proxy, r.group)),
            server = esc(&r.server),
            state = r.state.as_str(),
            since = clock(r.since),
            for_ = ago(status.now - r.since),
            reason = esc(&r.reason),
            check = esc(&check),
            open = r.open,
            idle = r.idle,
            active = r.active,
            requests = r.requests,
            errors = r.errors,
            rps = r.rps,
            rate = r.error_rate * 100.0,
            p50 = ms(r.p50),
            p99 = ms(r.p99),
            learned = r
                .learned_idle_timeout
                .map_or_else(|| "—".to_string(), |t| format!("{t:.2} s")),
            retired = r.retired_early,
        );
    }
    let mut listeners = String::new();
    for l in &status.listeners {
        let k = esc(&l.name);
        listener_row(
            &mut listeners,
            &k,
            &k,
            Figures {
                open: l.open,
                states: &l.states,
                accepted: l.accepted,
                requests: l.requests,
                rps: l.rps,
                p50: l.p50,
                p99: l.p99,
                responses: &l.responses,
            },
        );
        // One row per worker, when there are several: an uneven spread of
        // connections over them shows.
        if l.workers.len() > 1 {
            for w in &l.workers {
                listener_row(
                    &mut listeners,
                    &format!("{k} · worker {}", w.worker),
                    &format!("{k}-w{}", w.worker),
                    Figures {
                        open: w.open,
                        states: &w.states,
                        accepted: w.accepted,
                        requests: w.requests,
                        rps: w.rps,
                        p50: w.p50,
                        p99: w.p99,
                        responses: &w.responses,
                    },
                );
            }
        }
    }
    let mut closed_head = String::from("<tr><th>reason</th>");
    for l in &status.listeners {
        let _ = write!(closed_head, "<th>{}</th>", esc(&l.name));
    }
    closed_head.push_str("</tr>");
    let mut closed = String::new();
    if let Some(first) = status.listeners.first() {
        for reason in first.closed_by.keys() {
            let _ = write!(closed, "<tr><td>{reason}</td>");
            for l in &status.listeners {
                let _ = write!(
                    closed,
                    "<td id=\"{}-closed-{reason}\">{}</td>",
                    esc(&l.name),
                    l.closed_by.get(reason).copied().unwrap_or(0)
                );
            }
            closed.push_str("</tr>");
        }
    }
    let mut proxies = String::new();
    for p in &status.proxies {
        let k = esc(&p.name);
        let _ = write!(
            proxies,
            "<tr><td>{k}</td><td id=\"{k}-opened\">{}</td><td id=\"{k}-reused\">{}</td>\
             <td id=\"{k}-reuse-ratio\">{:.1} %</td><td id=\"{k}-retries\">{}</td>\
             <td id=\"{k}-gateway-errors\">{}</td></tr>",
            p.opened,
            p.reused,
            p.reuse_ratio * 100.0,
            p.retries,
            p.gateway_errors
        );
    }
    PAGE.replace("{{state}}", status.state)
        .replace("{{updated}}", &clock(status.now))
        .replace("{{servers}}", &servers)
        .replace("{{listeners}}", &listeners)
        .replace("{{closed_head}}", &closed_head)
        .replace("{{closed}}", &closed)
        .replace("{{proxies}}", &proxies)
}

/// The figures of one row of the listeners table (a listener's or one of
/// its workers').
struct Figures<'a> {
    open: u64,
    states: &'a BTreeMap<&'static str, u64>,
    accepted: u64,
    requests: u64,
    rps: f64,
    p50: Option<f64>,
    p99: Option<f64>,
    responses: &'a BTreeMap<&'static str, u64>,
}

/// A row of the listeners table, labelled `label` (HTML), its cells' ids
/// prefixed with `k`; the script's `listenerRow` writes the same.
fn listener_row(out: &mut String, label: &str, k: &str, f: Figures<'_>) {
    let per_connection = if f.accepted == 0 {
        0.0
    } else {
        f.requests as f64 / f.accepted as f64
    };
    let _ = write!(
        out,
        "<tr><td>{label}</td><td id=\"{k}-open\">{}</td>",
        f.open
    );
    for (state, n) in ["reading", "writing", "idle", "parked", "lingering"]
        .map(|s| (s, f.states.get(s).copied().unwrap_or(0)))
    {
        let _ = write!(out, "<td id=\"{k}-{state}\">{n}</td>");
    }
    let _ = write!(
        out,
        "<td id=\"{k}-accepted\">{}</td><td id=\"{k}-requests\">{}</td>\
         <td id=\"{k}-per-connection\">{per_connection:.2}</td><td id=\"{k}-rps\">{:.1}</td>\
         <td id=\"{k}-p50\">{}</td><td id=\"{k}-p99\">{}</td>",
        f.accepted,
        f.requests,
        f.rps,
        ms(f.p50),
        ms(f.p99)
    );
    for (class, n) in f.responses {
        let _ = write!(out, "<td id=\"{k}-{class}\">{n}</td>");
    }
    out.push_str("</tr>");
}

/// Text made safe for HTML.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A duration in seconds as milliseconds ("–" when unknown); the script's
/// `ms` writes the same.
fn ms(seconds: Option<f64>) -> String {
    seconds.map_or_else(|| "–".to_string(), |s| format!("{:.2} ms", s * 1e3))
}

/// A time of day, UTC, from seconds since the Unix epoch.
fn clock(unix: f64) -> String {
    let s = unix.max(0.0) as u64 % 86_400;
    format!("{:02}:{:02}:{:02} UTC", s / 3600, s / 60 % 60, s % 60)
}

/// A short duration ("12 s", "3 min 4 s", "2 h 5 min"); the script's `ago`
/// writes the same.
fn ago(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{} h {} min", s / 3600, s / 60 % 60)
    }
}

const PAGE: &str = include_str!("status.html");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(ms(None), "–");
        assert_eq!(ms(Some(0.0123456)), "12.35 ms");
        assert_eq!(clock(86_400.0 * 3.0 + 3723.9), "01:02:03 UTC");
        assert_eq!(ago(59.9), "59 s");
        assert_eq!(ago(184.0), "3 min 4 s");
        assert_eq!(ago(7500.0), "2 h 5 min");
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
